"""`results.parquet`: one row per fine-tuning run, appended as each run finishes.

Every append rewrites the file into a temporary sibling and `os.replace`s it over the old
one, so a crash at any moment leaves either the old or the new complete file, never a torn
one. A sweep is a few hundred rows: rewriting is cheaper than any append format's recovery.
"""
from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from had.data.parquet import read_table
from had.errors import HadError

SCHEMA = pa.schema([
    ("model", pa.string()),  # what eval.model named: a directory or a hub id
    ("model_fingerprint", pa.string()),  # sha256 of the model's config and weights (Backbone.fingerprint)
    ("benchmark", pa.string()),  # nt | gb | gue
    ("nt_version", pa.string()),  # original | revised (NT only, else null)
    ("task", pa.string()),
    ("lr", pa.float64()),  # null for the probe
    ("seed", pa.int64()),
    ("metric", pa.string()),  # mcc | f1 | accuracy
    ("val_metric", pa.float64()),  # best epoch's validation score
    ("test_metric", pa.float64()),  # test score of the best epoch's weights
    ("epochs", pa.int64()),
    ("best_epoch", pa.int64()),
    ("n_train", pa.int64()),
    ("n_val", pa.int64()),
    ("n_test", pa.int64()),
    ("seconds", pa.float64()),  # wall time of the run
    ("protocol", pa.string()),  # JSON of the Protocol the run used
    ("probe_c", pa.float64()),  # the probe's regularisation C chosen on validation (null for fine-tuning)
])
RUN_KEY = ("model", "benchmark", "nt_version", "task", "lr", "seed")
ADDED_LATER = {"model_fingerprint", "probe_c"}  # columns older files lack: read as None


def read_results(path: str | Path) -> list[dict]:
    """Rows of a results file; [] when it does not exist yet."""
    path = Path(path)
    if not path.is_file():
        return []
    try:
        table = read_table(path)  # one read of the file: a whole file even while a writer replaces it
    except Exception as e:  # pyarrow raises several types for a damaged file
        raise HadError(f"{path}: not a readable results file: {e}") from None
    missing = set(SCHEMA.names) - set(table.column_names)
    if missing - ADDED_LATER:
        raise HadError(f"{path}: not a `had eval` results file (missing columns {sorted(missing)})")
    return [{name: row.get(name) for name in SCHEMA.names} for row in table.to_pylist()]


def append_results(path: str | Path, rows: list[dict]) -> None:
    """Atomically replace `path` with its rows plus `rows`."""
    path = Path(path)
    table = pa.Table.from_pylist(read_results(path) + rows, schema=SCHEMA)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def run_key(row: dict) -> tuple:
    return tuple(row[k] for k in RUN_KEY)
