"""Sweeps survive crashes: finished runs are kept, only missing ones re-run, results unchanged."""
import pyarrow.parquet as pq
import pytest

from had.config import EvalConfig
from had.errors import HadError
from had.evaluation import results, sweep
from had.evaluation.finetune import finetune as real_finetune


def _cfg(model, root, out, **kw) -> EvalConfig:
    return EvalConfig(model=str(model), data_root=str(root), benchmark="gue", lrs=[1e-3, 3e-3], seeds=2,
                      epochs=1, batch_size=16, out=str(out), device="cpu", **kw)


def _without_time(rows):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def _counting(monkeypatch, fail_at=None):
    calls = []

    def finetune(*args):
        calls.append(args[1].task.name)
        if len(calls) == fail_at:
            raise RuntimeError("injected crash")
        return real_finetune(*args)

    monkeypatch.setattr(sweep, "finetune", finetune)
    return calls


def test_crashed_sweep_resumes_only_missing_runs_with_identical_results(tiny_esm, gue_root, tmp_path, monkeypatch):
    cfg = _cfg(tiny_esm, gue_root, tmp_path, tasks=["grp/b", "grp/a"])
    cfg.seeds = 1
    straight = sweep.run_sweep(cfg, tmp_path / "straight.parquet")
    assert [(r["task"], r["lr"]) for r in straight] == [(t, lr) for t in cfg.tasks for lr in cfg.lrs]

    path = tmp_path / "crashed.parquet"
    calls = _counting(monkeypatch, fail_at=3)  # crashes in the first run of the second task
    with pytest.raises(RuntimeError, match="injected crash"):
        sweep.run_sweep(cfg, path)
    assert len(results.read_results(path)) == 2  # every finished run was saved before the crash

    calls.clear()
    resumed = sweep.run_sweep(cfg, path)
    assert calls == ["grp/a", "grp/a"]  # only the runs missing from the file
    assert _without_time(resumed) == _without_time(straight)
    on_disk = sorted(results.read_results(path), key=results.run_key)
    assert _without_time(on_disk) == _without_time(sorted(straight, key=results.run_key))

    calls.clear()
    sweep.run_sweep(cfg, path)
    assert calls == []  # a finished sweep does nothing


def test_a_crash_while_writing_never_corrupts_the_results(tmp_path, monkeypatch):
    path = tmp_path / "results.parquet"
    row = {name: None for name in results.SCHEMA.names} | {"model": "m", "task": "t", "lr": 1e-3, "seed": 0}
    results.append_results(path, [row])

    def torn_write(table, where, **kw):
        with open(where, "wb") as f:
            f.write(b"PAR1 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(results.pq, "write_table", torn_write)
    with pytest.raises(OSError, match="disk full"):
        results.append_results(path, [row | {"seed": 1}])
    assert results.read_results(path) == [row]
    assert pq.read_table(path).num_rows == 1


def test_different_protocol_in_the_same_file_is_refused(tiny_esm, gue_root, tmp_path):
    cfg = _cfg(tiny_esm, gue_root, tmp_path, tasks=["grp/b"])
    cfg.seeds = 1
    sweep.run_sweep(cfg, tmp_path / "r.parquet")
    cfg.epochs = 2
    with pytest.raises(HadError, match=r"r.parquet holds runs .* epochs=1 \(now 2\)"):
        sweep.run_sweep(cfg, tmp_path / "r.parquet")


def test_unknown_task_is_refused_before_any_run(tiny_esm, gue_root, tmp_path):
    with pytest.raises(HadError, match=r"eval.tasks: no task \['grp/zz'\] .*tasks found: grp/a, grp/b"):
        sweep.run_sweep(_cfg(tiny_esm, gue_root, tmp_path, tasks=["grp/a", "grp/zz"]), tmp_path / "r.parquet")
    assert not (tmp_path / "r.parquet").exists()


def test_dask_workers_give_the_in_process_results(tiny_esm, gue_root, tmp_path):
    from dask.distributed import LocalCluster

    cfg = _cfg(tiny_esm, gue_root, tmp_path, tasks=["grp/a"])
    local = sweep.run_sweep(cfg, tmp_path / "local.parquet")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        cfg.scheduler = cluster.scheduler_address
        spread = sweep.run_sweep(cfg, tmp_path / "dask.parquet")
    assert [results.run_key(r) for r in spread] == [results.run_key(r) for r in local]
    for a, b in zip(spread, local):
        assert a["test_metric"] == pytest.approx(b["test_metric"], abs=1e-6)
        assert a["val_metric"] == pytest.approx(b["val_metric"], abs=1e-6)
