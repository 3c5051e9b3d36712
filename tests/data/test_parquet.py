"""Parquet reads start no Arrow pool threads: one still alive at exit aborts the process (SIGABRT)."""
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq

from had.data.parquet import read_table

NEW_THREADS_OF_A_READ = """
import os, sys
import pyarrow.parquet as pq
from had.data.parquet import read_table
before = set(os.listdir("/proc/self/task"))
table = read_table(sys.argv[1]) if sys.argv[2] == "had" else pq.read_table(sys.argv[1])
assert table.num_rows == 5000
print(len(set(os.listdir("/proc/self/task")) - before))
"""


def _new_threads(path, reader):
    out = subprocess.run([sys.executable, "-c", NEW_THREADS_OF_A_READ, str(path), reader], check=True,
                         capture_output=True, text=True)
    return int(out.stdout)


def test_read_table_reads_everything_and_starts_no_thread(tmp_path):
    path = tmp_path / "t.parquet"
    table = pa.table({"sequence": [("ACGT" * 40)[: i % 160] for i in range(5000)], "label": [i % 3 for i in range(5000)]})
    pq.write_table(table, path, row_group_size=500)
    assert read_table(path).equals(table)
    assert _new_threads(path, "had") == 0
    assert _new_threads(path, "pyarrow") > 0  # what pyarrow's own read starts: the check above can fail
