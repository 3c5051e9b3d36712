"""Writing one shard: build every array's shard object from its items, put it, then commit.

A shard is written by exactly one task, each array's shard object with a single PUT
(never piece by piece: zarr would re-read and re-encode the whole shard, and two
writers of one shard lose data). The commit record ``_commit/shard-NNNNNN.json`` is
written after all the data and carries the crc32c and size of every object; a shard
without it is not part of the cache.
"""
from __future__ import annotations

import json
import math
from collections.abc import Sequence

import google_crc32c
import numpy as np

from had.cache_store.features import CODECS
from had.cache_store.item import CacheItem
from had.cache_store.layout import ARRAY_NAMES, Layout, create_arrays, encode_shard
from had.cache_store.storage import PARTIAL, Storage
from had.errors import HadError

COMMIT_DIR = "_commit"
# Every top-level name a cache writes (FORMAT.md "Files"); nothing else is ever deleted.
OWN_NAMES = {"zarr.json", "config.yaml", "manifest.json", COMMIT_DIR, *ARRAY_NAMES}


def create_store(storage: Storage, layout: Layout, identity: dict, files: dict[str, bytes] | None = None,
                 overwrite: bool = False) -> None:
    """Create a cache's group and arrays, put ``files`` (e.g. config.yaml), then record ``identity`` (with the
    layout) as the root's ``had`` attribute: last, so its presence means every array exists (FORMAT.md,
    "Recognising a cache"). The manifest must later be built from the same identity (``manifest.build``)."""
    import zarr

    group = zarr.create_group(storage.zarr_store, zarr_format=3, overwrite=overwrite,
                              attributes={"had_creating": True})
    create_arrays(group, layout)
    for key, data in (files or {}).items():
        storage.put(key, data)
    identity = identity | {"layout": layout.to_dict()}
    zarr.open_group(storage.zarr_store, mode="r+", zarr_format=3).attrs.put({"had": identity})


def write_cache(storage: Storage, layout: Layout, identity: dict, items: Sequence[CacheItem],
                overwrite: bool = False) -> list[dict]:
    """A whole cache from in-memory items (items[i] is item i), in this process: create the store, write
    every shard, then the manifest; returns the shards' commit records. `had cache-teacher` writes its
    shards from tasks instead (``had.featurize``); tests and benchmarks build caches with this."""
    from had.cache_store import manifest as manifest_io

    create_store(storage, layout, identity, overwrite=overwrite)
    records = [write_shard(storage, layout, s, [items[i] for i in layout.shard_range(s)])
               for s in range(layout.n_shards)]
    manifest_io.write(storage, manifest_io.build(identity, layout, records))
    return records


def commit_key(shard: int) -> str:
    return f"{COMMIT_DIR}/shard-{shard:06d}.json"


def write_shard(storage: Storage, layout: Layout, shard: int, items: list[CacheItem],
                numerics: dict | None = None) -> dict:
    """Write shard ``shard`` from its items (in item order, features set) and commit it; returns the commit record.

    ``numerics``: what decided the features' bits (``Teacher.numerics()``), kept in the commit record.
    Items that do not fit the layout are a HadError before anything is written.
    """
    _check_items(storage, layout, shard, items)
    specs = layout.arrays()
    slots = layout.shard_items
    length, rows, chunk_rows = layout.window, layout.feature_rows, layout.token_chunk
    n_vis = [len(item.features) for item in items]
    codec = CODECS[layout.feature_dtype]
    stored, side, overflow = codec.encode(np.concatenate([item.features for item in items]))

    def per_item(fn) -> list[np.ndarray | None]:
        chunks = [fn(item)[None] for item in items]
        return chunks + [None] * (slots - len(chunks))

    def padded_spans(item):
        out = np.full((length, 2), -1, dtype=np.int32)
        out[: len(item.spans)] = item.spans
        return out

    def padded_mask(item):
        out = np.zeros(length, dtype=bool)
        out[: len(item.token_masked)] = item.token_masked
        return out

    def row_chunks(values: np.ndarray, fill) -> list[np.ndarray | None]:
        """Split per-token rows by item into token_chunk-row chunks; chunks past the rows stay empty."""
        per_row_chunks = math.ceil(rows / chunk_rows)
        chunks: list[np.ndarray | None] = [None] * (slots * per_row_chunks)
        start = 0
        for i, n in enumerate(n_vis):
            for j in range(math.ceil(n / chunk_rows)):
                part = values[start + j * chunk_rows: start + min(n, (j + 1) * chunk_rows)]
                chunk = np.full((chunk_rows,) + values.shape[1:], fill, dtype=values.dtype)
                chunk[: len(part)] = part
                chunks[i * per_row_chunks + j] = chunk[None]
            start += n
        return chunks

    chunks = {
        "nucleotides": per_item(lambda item: np.asarray(item.nucleotides, dtype=np.uint8)),
        "nt_mask": per_item(lambda item: np.asarray(item.nt_mask, dtype=bool)),
        "spans": per_item(padded_spans),
        "token_masked": per_item(padded_mask),
        "features": row_chunks(stored, specs["features"].fill_value),
    }
    for name in codec.row_side:
        chunks[name] = row_chunks(side[name], specs[name].fill_value)
    for name in codec.shard_side:
        chunks[name] = [side[name][None]]

    objects = {}
    for name, array_chunks in chunks.items():
        data = encode_shard(array_chunks, layout.compression_level)
        key = specs[name].shard_key(shard)
        storage.put(key, data)
        objects[name] = {"key": key, "nbytes": len(data), "crc32c": google_crc32c.value(data)}
    n_tokens = sum(len(item.spans) for item in items)
    record = {
        "shard": shard,
        "items": [layout.shard_range(shard).start, layout.shard_range(shard).stop],
        "n_items": len(items),
        "n_tokens": n_tokens,
        "n_visible": sum(n_vis),
        "out_of_range": overflow,
        "objects": objects,
    }
    if numerics is not None:
        record["numerics"] = numerics
    storage.put(commit_key(shard), json.dumps(record, sort_keys=True).encode())
    return record


def _check_items(storage: Storage, layout: Layout, shard: int, items: list[CacheItem]) -> None:
    """The items' shapes against the layout: a mismatch would write chunks the reader cannot decode."""
    where = f"{storage.url}: shard {shard}"
    expected = len(layout.shard_range(shard))
    if len(items) != expected:
        raise HadError(f"{where} holds {expected} items, got {len(items)}")
    for i, item in zip(layout.shard_range(shard), items):
        n_vis = int(np.count_nonzero(~item.token_masked))
        if len(item.nucleotides) != layout.window or len(item.nt_mask) != layout.window:
            raise HadError(f"{where}: item {i} has {len(item.nucleotides)} nucleotides, the cache's window is "
                           f"{layout.window}")
        if len(item.spans) != len(item.token_masked) or len(item.spans) > layout.window:
            raise HadError(f"{where}: item {i} has {len(item.spans)} spans and {len(item.token_masked)} token "
                           f"mask values (at most {layout.window}, one per token)")
        if item.features is None or item.features.shape != (n_vis, layout.teacher_dim):
            got = None if item.features is None else item.features.shape
            raise HadError(f"{where}: item {i} has features of shape {got}, expected ({n_vis} visible tokens, "
                           f"teacher_dim {layout.teacher_dim})")


def read_commit(storage: Storage, shard: int) -> dict | None:
    """The shard's commit record, or None when the shard is not (validly) committed."""
    key = commit_key(shard)
    if not storage.exists(key):
        return None
    try:
        record = json.loads(storage.get(key))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return record if record.get("shard") == shard else None


def cache_attributes(storage: Storage) -> dict:
    """The root zarr.json's attributes: a had cache has ``had`` (its identity) or, while its arrays
    are being created, ``had_creating``. {} when there is no readable zarr.json."""
    if not storage.exists("zarr.json"):
        return {}
    try:
        return json.loads(storage.get("zarr.json")).get("attributes") or {}
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError, OSError):
        return {}


def foreign_names(storage: Storage) -> list[str]:
    """Top-level names in the store that no had cache writes (files a user put there)."""
    return [name for name in storage.list("") if name not in OWN_NAMES and not name.endswith(PARTIAL)]


def remove_cache(storage: Storage) -> None:
    """Delete a cache's own objects; refuses when the store is not a cache or holds anything else."""
    if not {"had", "had_creating"} & set(cache_attributes(storage)) or foreign_names(storage):
        raise HadError(f"{storage.url} is not only a had cache: not deleting it")
    for name in storage.list(""):
        storage.remove_tree(name)
