"""Reading a parquet file: one read of its bytes, decoded on the calling thread.

- One read: `pq.read_table(path)` may open a path more than once (footer, then pages), and a writer's
  `os.replace` in between hands it pages of a new file under the old footer (`had eval` results are
  appended that way while another process reads them).
- No Arrow threads: our parquet files (benchmark splits, results) are small, so threads buy nothing,
  and an Arrow pool thread still alive at interpreter exit aborts the process with SIGABRT after its
  work is done (apache/arrow#34314; seen in CI). Decoding an in-memory buffer with use_threads=False
  starts no thread, where `pq.read_table` starts some even with use_threads=False.
"""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def read_table(path: str | Path) -> pa.Table:
    """The whole table of the parquet file at `path`."""
    return pq.ParquetFile(pa.BufferReader(Path(path).read_bytes())).read(use_threads=False)
