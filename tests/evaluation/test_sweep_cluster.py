"""`had eval`'s Dask runs go through the same client as cache-teacher's (had/cluster.py)."""
import pytest

from had.config import EvalConfig
from had.errors import HadError
from had.evaluation import sweep


def test_an_unreachable_scheduler_is_a_one_line_error_and_nothing_is_written(tiny_esm, gue_root, tmp_path,
                                                                             monkeypatch):
    """Before the shared client, eval waited on the scheduler for dask's own 30 s timeout and then
    raised an OSError traceback."""
    monkeypatch.setattr("had.cluster.SCHEDULER_TIMEOUT_S", 1)
    cfg = EvalConfig(model=str(tiny_esm), data_root=str(gue_root), benchmark="gue", lrs=[1e-3], seeds=1, epochs=1,
                     batch_size=16, out=str(tmp_path), device="cpu", tasks=["grp/a"], scheduler="tcp://127.0.0.1:1")
    with pytest.raises(HadError, match=r"^--scheduler tcp://127.0.0.1:1: cannot connect to a Dask scheduler .*; "
                                       "finished runs are kept$"):
        sweep.run_sweep(cfg, tmp_path / "r.parquet")
    assert not (tmp_path / "r.parquet").exists()
