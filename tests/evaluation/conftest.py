"""Shared fixtures: a tiny ESM teacher saved like a real checkpoint, and small GUE-layout tasks."""
import csv
from pathlib import Path

import numpy as np
import pytest

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"
REAL_GUE = SHARED / "data" / "real" / "GUE"


@pytest.fixture(scope="session")
def tiny_esm(tmp_path_factory) -> Path:
    """A randomly initialised ESM masked LM + NTv2 tokenizer files (what a real NTv2 dir holds)."""
    from had.teacher import build_tiny_teacher

    return build_tiny_teacher(tmp_path_factory.mktemp("tiny_esm"), hidden_size=16, num_layers=1, num_heads=2)


def write_gue_task(root: Path, name: str, n_train: int, n_eval: int, seed: int, length: int = 36) -> Path:
    """An easy two-class task in the GUE layout: class 1 is GC-rich, class 0 AT-rich."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("dev", n_eval), ("test", n_eval)):
        labels = rng.permutation(np.arange(n) % 2)
        rows = []
        for y in labels:
            p = [0.05, 0.45, 0.45, 0.05] if y else [0.45, 0.05, 0.05, 0.45]
            rows.append(("".join(rng.choice(list("ACGT"), size=length, p=p)), int(y)))
        (root / name).mkdir(parents=True, exist_ok=True)
        with (root / name / f"{split}.csv").open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["sequence", "label"])
            w.writerows(rows)
    return root


@pytest.fixture
def real_gue() -> Path:
    if not REAL_GUE.is_dir():
        pytest.skip(f"{REAL_GUE} absent (the shared real data is not mounted)")
    return REAL_GUE


@pytest.fixture
def gue_root(tmp_path) -> Path:
    """Two small learnable tasks, grp/a and grp/b, in the GUE layout."""
    write_gue_task(tmp_path / "gue", "grp/a", n_train=48, n_eval=24, seed=1)
    return write_gue_task(tmp_path / "gue", "grp/b", n_train=40, n_eval=20, seed=2)
