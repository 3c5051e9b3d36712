"""The teacher-feature cache: a sharded Zarr v3 store (format: FORMAT.md) of ``CacheItem``s (item.py).

Writing (``had.pipeline.cache_teacher``): ``lifecycle.prepare_store`` creates the arrays once in the
driver, ``write_shard`` runs once per shard from one task, ``manifest.write`` last.
Reading: ``CacheReader(path)[i]``; ``verify(path)`` re-checks every shard's crc32c.
"""
from had.cache_store.item import CacheItem
from had.cache_store.layout import FORMAT_VERSION, Layout
from had.cache_store.manifest import verify
from had.cache_store.reader import CacheReader
from had.cache_store.storage import Storage
from had.cache_store.writer import read_commit, write_shard

__all__ = ["FORMAT_VERSION", "CacheItem", "CacheReader", "Layout", "Storage", "read_commit", "verify", "write_shard"]
