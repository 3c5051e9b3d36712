"""`had demo` (what `make demo` runs) end to end: both tables, the probe's three models."""
import pytest

from had.config import load_config
from had.evaluation.results import read_results
from had.pipeline import demo


@pytest.mark.slow
def test_demo_ends_with_finetune_and_probe_tables(tmp_path):
    demo.run(load_config("tiny"), tmp_path, seed=0)
    finetune = (tmp_path / "eval" / "compare" / "summary.md").read_text()
    probe = (tmp_path / "probe" / "compare" / "summary.md").read_text()
    assert "| student (student-nt) | teacher (teacher-nt) |" in finetune
    assert "| random_init (random_init-nt) | student (student-nt) | teacher (teacher-nt) |" in probe
    for name in ("random_init", "student", "teacher"):
        rows = read_results(tmp_path / "probe" / f"{name}-nt" / "results.parquet")
        assert rows and all(r["lr"] is None for r in rows)  # probe rows: no learning rate
        assert {r["task"] for r in rows} == set(demo.NT_TASKS)
    assert (tmp_path / "random_init" / "model" / "config.json").is_file()
