"""Feature dtypes of the cache: fp16, bf16 (stored as uint16 bits) and int8 with a per-token scale.

int8 (per shard): channels are standardised with the shard's own mean and std (outlier
channels would otherwise eat the resolution), then each token row is quantised with a
step of ``INT8_STEP`` x its rms, clipped to [-127, 127]; -128 is the fill value.
Decoding: ``x = q * scale[:, None] * std + mean``.
"""
from __future__ import annotations

import numpy as np
import torch

from had.cache_store.layout import INT8_STEP

FP16_MAX = 65504.0


def encode(x: np.ndarray, dtype: str) -> tuple[np.ndarray, dict[str, np.ndarray], int]:
    """float32 [R, D] -> (stored [R, D], side arrays, count of values out of range).

    Side arrays: for int8, ``scales`` float16 [R], ``chan_mean`` / ``chan_std`` float32 [D].
    Out of range: values beyond the fp16 range (stored as inf) for fp16, 0 otherwise.
    """
    x = np.asarray(x, dtype=np.float32)
    if dtype == "fp16":
        return x.astype(np.float16), {}, int(np.count_nonzero(np.abs(x) > FP16_MAX))
    if dtype == "bf16":
        bits = torch.from_numpy(np.ascontiguousarray(x)).to(torch.bfloat16).view(torch.int16).numpy()
        return bits.view(np.uint16), {}, 0
    mean = x.mean(0, dtype=np.float64).astype(np.float32) if len(x) else np.zeros(x.shape[1], np.float32)
    std = x.std(0, dtype=np.float64).astype(np.float32) if len(x) else np.ones(x.shape[1], np.float32)
    std[~(std > 0)] = 1.0
    z = (x - mean) / std
    # The scale is stored as fp16 (2 B/token), and quantisation uses that rounded value.
    scale = (INT8_STEP * np.sqrt(np.mean(z * z, axis=1))).astype(np.float16)
    scale[~(scale > 0)] = 1.0
    q = np.clip(np.rint(z / scale[:, None].astype(np.float32)), -127, 127).astype(np.int8)
    return q, {"scales": scale, "chan_mean": mean, "chan_std": std}, 0


def decode(stored: np.ndarray, dtype: str, scales=None, chan_mean=None, chan_std=None) -> np.ndarray:
    """Inverse of encode: stored [R, D] (+ side arrays) -> float32 [R, D]."""
    if dtype == "fp16":
        return stored.astype(np.float32)
    if dtype == "bf16":
        return (stored.astype(np.uint32) << 16).view(np.float32)
    return (stored.astype(np.float32) * scales[:, None].astype(np.float32)) * chan_std + chan_mean
