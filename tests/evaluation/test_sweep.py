"""Sweeps survive crashes: finished runs are kept, only missing ones re-run, results unchanged."""
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

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


def test_finished_runs_are_reused_only_for_the_same_weights(tiny_esm, gue_root, tmp_path, capsys):
    import shutil

    from had.teacher import build_tiny_teacher

    model = shutil.copytree(tiny_esm, tmp_path / "model")
    cfg = _cfg(model, gue_root, tmp_path, tasks=["grp/a"])
    cfg.seeds = 1
    first = sweep.run_sweep(cfg, tmp_path / "r.parquet")
    assert "reused" not in capsys.readouterr().out
    assert sweep.run_sweep(cfg, tmp_path / "r.parquet") == first
    assert "had eval: 2 finished runs reused" in capsys.readouterr().out
    build_tiny_teacher(model, hidden_size=16, num_layers=1, num_heads=2, seed=1)  # retrained in place
    sweep._backbone.cache_clear()
    with pytest.raises(HadError, match=r"r.parquet holds runs of .*model made from other weights .* another --out"):
        sweep.run_sweep(cfg, tmp_path / "r.parquet")
    assert results.read_results(tmp_path / "r.parquet") == first
    # a file written before fingerprints were recorded still reads; its runs are not taken for this model
    pq.write_table(pq.read_table(tmp_path / "r.parquet").drop_columns(["model_fingerprint"]), tmp_path / "old.parquet")
    assert results.read_results(tmp_path / "old.parquet") == [{**r, "model_fingerprint": None} for r in first]
    with pytest.raises(HadError, match=r"model fingerprint not recorded"):
        sweep.run_sweep(cfg, tmp_path / "old.parquet")


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


def test_scheduler_tasks_carry_absolute_paths(tiny_esm, gue_root, tmp_path, monkeypatch):
    """Workers of an existing cluster run in their own directory: a relative --model and --data-root reach
    them absolute, while the results keep the model as the user named it."""
    from dask.distributed import LocalCluster

    seen = []

    def recording(sweep_, *args):
        seen.append((sweep_.model, sweep_.data_root))
        return run_one(sweep_, *args)

    run_one = sweep._run_one
    monkeypatch.setattr(sweep, "_run_one", recording)
    monkeypatch.chdir(tmp_path)
    model, root = os.path.relpath(tiny_esm), os.path.relpath(gue_root)
    cfg = _cfg(model, root, tmp_path, tasks=["grp/a"])
    cfg.lrs, cfg.seeds = [1e-3], 1
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        cfg.scheduler = cluster.scheduler_address
        rows = sweep.run_sweep(cfg, tmp_path / "dask.parquet")
    assert seen == [(str(tiny_esm), str(gue_root))]
    assert [r["model"] for r in rows] == [model]


_KILLABLE_SWEEP = """
import json, sys, time
import torch
from had.config import EvalConfig
from had.evaluation import sweep
torch.set_num_threads(1)
real = sweep.finetune
def slow(*args):
    row = real(*args)
    time.sleep(0.3)  # leaves time to be killed between runs
    return row
sweep.finetune = slow
sweep.run_sweep(EvalConfig(**json.loads(sys.argv[2])), sys.argv[1])
"""


def test_sweep_killed_by_sigkill_resumes_to_the_uninterrupted_result(tiny_esm, gue_root, tmp_path, monkeypatch):
    cfg = _cfg(tiny_esm, gue_root, tmp_path, tasks=["grp/a"])
    cfg.seeds = 3
    path = tmp_path / "killed.parquet"
    proc = subprocess.Popen([sys.executable, "-c", _KILLABLE_SWEEP, str(path), json.dumps(dataclasses.asdict(cfg))],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if path.exists() and len(results.read_results(path)) >= 2:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the sweep ended (or failed) before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    saved = len(results.read_results(path))
    assert 2 <= saved < 6

    calls = _counting(monkeypatch)
    resumed = sweep.run_sweep(cfg, path)
    assert len(calls) == 6 - saved  # only the missing runs
    straight = sweep.run_sweep(cfg, tmp_path / "straight.parquet")
    assert _without_time(resumed) == _without_time(straight)
