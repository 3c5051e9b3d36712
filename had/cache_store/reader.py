"""Random access to a finished cache by global item (window-view) index.

The reader validates ``manifest.json`` when constructed and opens nothing else until
the first item is read, so it can be built in the parent and used in DataLoader
workers (file descriptors are reopened after a fork). A read is one ``pread`` of each
array's inner chunk, a crc32c check and a zstd decode; shard indexes are cached (their
crc32c is checked once per shard). A damaged chunk or index is a HadError naming the
cache, array and shard.

    reader = CacheReader("cache/")
    item = reader[12]   # nucleotides, nt_mask, spans, token_masked, features
"""
from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np

from had.cache_store.features import CODECS
from had.cache_store import manifest as manifest_io
from had.cache_store.item import CacheItem
from had.cache_store.layout import EMPTY, ArraySpec, chunk_index, decode_chunk, index_nbytes
from had.cache_store.storage import Storage
from had.errors import HadError


class CacheReader:
    def __init__(self, path: str, index_cache: int = 4096):
        self.path = str(path)
        self.storage = Storage(self.path)
        self.manifest, self.layout = manifest_io.load(self.storage)
        self.specs = self.layout.arrays()
        self._checksummed = self.manifest["format_version"] >= 2  # format 1 chunks carry no crc32c
        self._index_cache_size = index_cache
        self._indexes: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()

    def __len__(self) -> int:
        return self.layout.n_items

    def __getitem__(self, i: int) -> CacheItem:
        """Item i (``had.cache_store.item``, the schema); features float32 [n_vis, D]."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"item {i} out of range for a cache of {len(self)} items")
        i %= len(self)
        shard, slot = divmod(i, self.layout.shard_items)
        spans = self._chunk("spans", shard, slot)[0]
        n_tokens = int(np.count_nonzero(spans[:, 1] > 0))
        token_masked = self._chunk("token_masked", shard, slot)[0, :n_tokens]
        n_vis = n_tokens - int(np.count_nonzero(token_masked))
        return CacheItem(
            nucleotides=self._chunk("nucleotides", shard, slot)[0],
            nt_mask=self._chunk("nt_mask", shard, slot)[0],
            spans=spans[:n_tokens],
            token_masked=token_masked,
            features=self._features(shard, slot, n_vis),
        )

    def _features(self, shard: int, slot: int, n_vis: int) -> np.ndarray:
        per_item = math.ceil(self.layout.feature_rows / self.layout.token_chunk)
        count = math.ceil(n_vis / self.layout.token_chunk)

        def rows(name):
            parts = [self._chunk(name, shard, slot * per_item + j)[0] for j in range(count)]
            return np.concatenate(parts)[:n_vis] if parts else np.empty((0,) + self.specs[name].chunk_shape[2:])

        codec = CODECS[self.layout.feature_dtype]
        side = {name: rows(name) for name in codec.row_side}
        side |= {name: self._chunk(name, shard, 0)[0] for name in codec.shard_side}
        return codec.decode(rows("features"), side)

    def _chunk(self, name: str, shard: int, k: int) -> np.ndarray:
        spec = self.specs[name]
        index = self._index(spec, shard)
        offset, nbytes = index[k]
        if offset == EMPTY:
            raise HadError(f"{self.path}: {name} shard {shard} has no chunk {k}: the cache is damaged")
        where = f"{self.path}: {name} shard {shard} ({spec.shard_key(shard)}), chunk {k}"
        return decode_chunk(self.storage.get_range(spec.shard_key(shard), int(offset), int(nbytes)), spec,
                            self._checksummed, where)

    def _index(self, spec: ArraySpec, shard: int) -> np.ndarray:
        key = (spec.name, shard)
        index = self._indexes.get(key)
        if index is None:
            size = index_nbytes(spec)
            try:
                tail = self.storage.get_range(spec.shard_key(shard), -size, size)
            except (OSError, FileNotFoundError) as e:
                raise HadError(f"{self.path}: cannot read {spec.shard_key(shard)} ({e}): the cache is damaged") from None
            where = f"{self.path}: {spec.name} shard {shard} ({spec.shard_key(shard)})"
            index = self._indexes[key] = chunk_index(tail, where)
            if len(self._indexes) > self._index_cache_size:
                self._indexes.popitem(last=False)
        return index

    def __getstate__(self):
        return {"path": self.path, "index_cache": self._index_cache_size}

    def __setstate__(self, state):
        self.__init__(state["path"], state["index_cache"])
