"""The cache's arrays and the byte format of their shard objects (spec: FORMAT.md).

Every array is a Zarr v3 array whose first axis is the item (window-view) axis, sharded
``shard_items`` items per shard object; inside a shard, one inner chunk per item (the
features split into ``token_chunk``-row chunks along the token axis). Shard objects
are standard ``sharding_indexed`` objects: inner chunks (zstd frame + crc32c of the
frame), then an index of (offset, nbytes) uint64 pairs in C order of the inner-chunk
grid, then its crc32c. Both checksums are checked on every read.
We encode and decode them ourselves (``encode_shard``, ``chunk_index``) so a shard is
built from the items it holds, without materialising padding, and a read is one
``pread`` per chunk; zarr-python reads the same objects (tests check it).
"""
from __future__ import annotations

import math
import struct
from dataclasses import asdict, dataclass, fields

import google_crc32c
import numcodecs
import numpy as np

from had.cache_store.features import CODECS
from had.cache_store.item import CacheItem
from had.errors import HadError

FORMAT_VERSION = 2  # 2: a crc32c after every inner chunk
READABLE_VERSIONS = (1, 2)  # 1 differs only in having no chunk crc32c
EMPTY = np.uint64(2**64 - 1)
# Every array a cache may hold: a CacheItem's fields (item.py), then the feature codecs' side arrays.
ARRAY_NAMES = tuple(f.name for f in fields(CacheItem)) + tuple(
    name for codec in CODECS.values() for name in codec.row_side + codec.shard_side)


@dataclass(frozen=True)
class ArraySpec:
    name: str
    shape: tuple[int, ...]
    shard_shape: tuple[int, ...]
    chunk_shape: tuple[int, ...]
    dtype: str
    fill_value: float | int | bool

    @property
    def chunks_per_shard(self) -> tuple[int, ...]:
        return tuple(s // c for s, c in zip(self.shard_shape, self.chunk_shape))

    def shard_key(self, shard: int) -> str:
        return f"{self.name}/c/{shard}" + "/0" * (len(self.shape) - 1)


@dataclass(frozen=True)
class Layout:
    """Shapes of a cache; fixed when the cache is created."""

    n_items: int
    window: int  # L, nucleotides per window-view
    teacher_dim: int  # D
    feature_dtype: str = "fp16"
    shard_items: int = 256
    token_chunk: int = 0  # feature rows per inner chunk; 0 = ceil(L/6) + 16 rounded up to 8
    compression_level: int = 1

    def __post_init__(self):
        if self.feature_dtype not in CODECS:
            raise HadError(f"cache.feature_dtype={self.feature_dtype!r}: expected one of {', '.join(CODECS)}")
        if self.token_chunk == 0:
            # One chunk holds every visible token of an N-free window (<= ceil(L/6) tokens + 5 singles).
            object.__setattr__(self, "token_chunk", (math.ceil(self.window / 6) + 16 + 7) // 8 * 8)

    @property
    def n_shards(self) -> int:
        return math.ceil(self.n_items / self.shard_items)

    @property
    def feature_rows(self) -> int:
        """Padded token axis of the features: a window has at most L tokens."""
        return self.token_chunk * math.ceil(self.window / self.token_chunk)

    def shard_range(self, shard: int) -> range:
        return range(shard * self.shard_items, min((shard + 1) * self.shard_items, self.n_items))

    def arrays(self) -> dict[str, ArraySpec]:
        n, s, length, d, v = self.n_items, self.shard_items, self.window, self.teacher_dim, self.feature_rows
        c, codec = self.token_chunk, CODECS[self.feature_dtype]
        specs = [
            ArraySpec("nucleotides", (n, length), (s, length), (1, length), "uint8", 255),
            ArraySpec("nt_mask", (n, length), (s, length), (1, length), "bool", False),
            ArraySpec("spans", (n, length, 2), (s, length, 2), (1, length, 2), "int32", -1),
            ArraySpec("token_masked", (n, length), (s, length), (1, length), "bool", False),
            ArraySpec("features", (n, v, d), (s, v, d), (1, c, d), codec.stored_dtype, codec.fill_value),
        ]
        # the codec's side arrays: per token row float16 (one value per feature row), per shard float32 [D]
        specs += [ArraySpec(name, (n, v), (s, v), (1, c), "float16", float("nan")) for name in codec.row_side]
        specs += [ArraySpec(name, (self.n_shards, d), (1, d), (1, d), "float32", float("nan"))
                  for name in codec.shard_side]
        return {spec.name: spec for spec in specs}

    def to_dict(self) -> dict:
        return asdict(self)


def create_arrays(group, layout: Layout) -> None:
    """Create every array of the layout in a zarr group (driver only, before any shard is written)."""
    from zarr.codecs import Crc32cCodec, ZstdCodec

    codec = CODECS[layout.feature_dtype]
    for spec in layout.arrays().values():
        group.create_array(
            spec.name,
            shape=spec.shape,
            dtype=spec.dtype,
            chunks=spec.chunk_shape,
            shards=spec.shard_shape,
            compressors=[ZstdCodec(level=layout.compression_level, checksum=False), Crc32cCodec()],
            fill_value=spec.fill_value,
            chunk_key_encoding={"name": "default", "separator": "/"},
            attributes={"logical_dtype": codec.logical_dtype} if spec.name == "features" and codec.logical_dtype else None,
        )


def encode_shard(chunks: list[np.ndarray | None], level: int) -> bytes:
    """A shard object from its inner chunks in C order of the grid (None = empty chunk)."""
    codec = numcodecs.Zstd(level=level)
    index = np.full((len(chunks), 2), EMPTY, dtype="<u8")
    parts, offset = [], 0
    for k, chunk in enumerate(chunks):
        if chunk is None:
            continue
        data = codec.encode(np.ascontiguousarray(chunk, dtype=chunk.dtype.newbyteorder("<")))
        data += struct.pack("<I", google_crc32c.value(data))
        index[k] = offset, len(data)
        offset += len(data)
        parts.append(data)
    index_bytes = index.tobytes()
    return b"".join(parts) + index_bytes + struct.pack("<I", google_crc32c.value(index_bytes))


def index_nbytes(spec: ArraySpec) -> int:
    return 16 * math.prod(spec.chunks_per_shard) + 4


def chunk_index(tail: bytes, where: str) -> np.ndarray:
    """Parse a shard's trailing index bytes -> uint64 [n_chunks, 2] (offset, nbytes); checks its crc32c."""
    body, (crc,) = tail[:-4], struct.unpack("<I", tail[-4:])
    if google_crc32c.value(body) != crc:
        raise HadError(f"{where}: shard index checksum mismatch (torn or corrupt shard); "
                       "the cache is damaged (`had cache-info` lists every bad shard)")
    return np.frombuffer(body, dtype="<u8").reshape(-1, 2)


def decode_chunk(data: bytes, spec: ArraySpec, checksummed: bool, where: str) -> np.ndarray:
    """One inner chunk's bytes -> array of spec.chunk_shape; checksummed: the bytes end in the frame's crc32c."""
    if checksummed:
        data, (crc,) = data[:-4], struct.unpack("<I", data[-4:])
        if google_crc32c.value(data) != crc:
            raise HadError(f"{where}: chunk checksum mismatch; the cache is damaged "
                           "(`had cache-info` lists every bad shard)")
    try:
        raw = numcodecs.Zstd().decode(data)
        return np.frombuffer(raw, dtype=np.dtype(spec.dtype).newbyteorder("<")).reshape(spec.chunk_shape)
    except (RuntimeError, ValueError) as e:  # a damaged format-1 chunk (no crc32c) ends up here
        raise HadError(f"{where}: undecodable chunk ({e}); the cache is damaged") from None
