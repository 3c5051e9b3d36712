"""Feature dtypes of the cache, one codec object each: fp16, bf16 (stored as uint16 bits) and int8.

    codec = CODECS[layout.feature_dtype]
    stored, side, out_of_range = codec.encode(x)      # float32 [R, D] -> stored [R, D] + side arrays
    x = codec.decode(stored, side)                     # and back, float32 [R, D]

int8 (per shard): channels are standardised with the shard's own mean and std (outlier
channels would otherwise eat the resolution), then each token row is quantised with a
step of ``INT8_STEP`` x its rms, clipped to [-127, 127]; -128 is the fill value.
Decoding: ``x = q * scale[:, None] * std + mean``.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import torch

FP16_MAX = 65504.0
INT8_STEP = 0.15  # int8 quantisation step, in units of the standardised row's rms


class FeatureCodec(ABC):
    """How one feature dtype is stored: the zarr array's dtype and fill value, raw bytes per value,
    and its side arrays (per token row: ``row_side``; per shard, [D] each: ``shard_side``)."""

    name: str
    stored_dtype: str  # numpy dtype of the stored ``features`` array
    fill_value: float | int
    bytes_per_dim: float  # raw, before compression
    logical_dtype: str | None = None  # zarr attribute naming what the stored bits are
    row_side: tuple[str, ...] = ()
    shard_side: tuple[str, ...] = ()

    @abstractmethod
    def encode(self, x: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray], int]:
        """float32 [R, D] -> (stored [R, D], side arrays, count of values out of range)."""

    @abstractmethod
    def decode(self, stored: np.ndarray, side: dict[str, np.ndarray]) -> np.ndarray:
        """Inverse of encode: stored [R, D] (+ side arrays) -> float32 [R, D]."""


class Fp16(FeatureCodec):
    name, stored_dtype, fill_value, bytes_per_dim = "fp16", "float16", float("nan"), 2.0

    def encode(self, x):
        """Out of range: values beyond the fp16 range (stored as inf)."""
        x = np.asarray(x, dtype=np.float32)
        return x.astype(np.float16), {}, int(np.count_nonzero(np.abs(x) > FP16_MAX))

    def decode(self, stored, side):
        return stored.astype(np.float32)


class Bf16(FeatureCodec):
    name, stored_dtype, fill_value, bytes_per_dim = "bf16", "uint16", 0x7FC0, 2.0  # 0x7FC0 = bf16 NaN bits
    logical_dtype = "bfloat16"

    def encode(self, x):
        x = np.asarray(x, dtype=np.float32)
        bits = torch.from_numpy(np.ascontiguousarray(x)).to(torch.bfloat16).view(torch.int16).numpy()
        return bits.view(np.uint16), {}, 0

    def decode(self, stored, side):
        return (stored.astype(np.uint32) << 16).view(np.float32)


class Int8(FeatureCodec):
    name, stored_dtype, fill_value, bytes_per_dim = "int8", "int8", -128, 1.0
    row_side = ("scales",)  # float16 [R]
    shard_side = ("chan_mean", "chan_std")  # float32 [D]

    def encode(self, x):
        x = np.asarray(x, dtype=np.float32)
        mean = x.mean(0, dtype=np.float64).astype(np.float32) if len(x) else np.zeros(x.shape[1], np.float32)
        std = x.std(0, dtype=np.float64).astype(np.float32) if len(x) else np.ones(x.shape[1], np.float32)
        std[~(std > 0)] = 1.0
        z = (x - mean) / std
        # The scale is stored as fp16 (2 B/token), and quantisation uses that rounded value.
        scale = (INT8_STEP * np.sqrt(np.mean(z * z, axis=1))).astype(np.float16)
        scale[~(scale > 0)] = 1.0
        q = np.clip(np.rint(z / scale[:, None].astype(np.float32)), -127, 127).astype(np.int8)
        return q, {"scales": scale, "chan_mean": mean, "chan_std": std}, 0

    def decode(self, stored, side):
        return (stored.astype(np.float32) * side["scales"][:, None].astype(np.float32)) * side["chan_std"] \
            + side["chan_mean"]


CODECS: dict[str, FeatureCodec] = {codec.name: codec for codec in (Fp16(), Bf16(), Int8())}
