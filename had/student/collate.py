"""Turn cache items (`had.cache_store.CacheItem`) into the padded batch `HadForPretraining` takes.

Runs in DataLoader workers, so it is plain numpy until the final `torch.from_numpy`.

    batch = collate_cache_items([reader[i] for i in range(8)])
    out = model(**batch)
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from had.data.alphabet import IGNORE_INDEX, MASK, PAD

if TYPE_CHECKING:  # the model package does not load the cache store
    from had.cache_store.item import CacheItem


def covered_positions(spans: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """spans int [n, 2] of (start, length) -> (token index, nucleotide position), one pair per covered nt."""
    starts, lens = spans[:, 0].astype(np.int64), spans[:, 1].astype(np.int64)
    token = np.repeat(np.arange(len(spans)), lens)
    offset = np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens, lens)
    return token, np.repeat(starts, lens) + offset


def collate_cache_items(items: list[CacheItem]) -> dict[str, torch.Tensor]:
    """Pad B cache items into tensors.

    Returns
        input_ids int64 (B, L): nucleotide codes, MASK at masked nucleotides, PAD after the end
        attention_mask int64 (B, L): 1 = real nucleotide
        nt_mask bool (B, L): masked nucleotides
        nt_token int64 (B, L): index of the visible teacher token covering the nucleotide, -1 if none
        targets float32 (B, N, D): teacher features of the visible tokens (N = most in the batch)
        target_mask bool (B, N): real rows of targets
        masked_positions int64 (B, M), masked_labels int64 (B, M): the masked nucleotides and their
            codes (M = most in the batch; padding rows point at position 0 with label -100)
    """
    B = len(items)
    L = max(len(it.nucleotides) for it in items)
    N = max(len(it.features) for it in items)
    M = max(int(it.nt_mask.sum()) for it in items)
    D = items[0].features.shape[1]

    input_ids = np.full((B, L), PAD, dtype=np.int64)
    attention_mask = np.zeros((B, L), dtype=np.int64)
    nt_mask = np.zeros((B, L), dtype=bool)
    nt_token = np.full((B, L), -1, dtype=np.int64)
    targets = np.zeros((B, N, D), dtype=np.float32)
    target_mask = np.zeros((B, N), dtype=bool)
    masked_positions = np.zeros((B, M), dtype=np.int64)
    masked_labels = np.full((B, M), IGNORE_INDEX, dtype=np.int64)

    for b, it in enumerate(items):
        nuc, mask = it.nucleotides, it.nt_mask
        n_l, n_vis = len(nuc), len(it.features)
        input_ids[b, :n_l] = np.where(mask, MASK, nuc)
        attention_mask[b, :n_l] = 1
        nt_mask[b, :n_l] = mask
        token, pos = covered_positions(it.spans[~it.token_masked])
        nt_token[b, pos] = token
        targets[b, :n_vis] = it.features
        target_mask[b, :n_vis] = True
        where = np.flatnonzero(mask)
        masked_positions[b, : len(where)] = where
        masked_labels[b, : len(where)] = nuc[where]

    arrays = dict(
        input_ids=input_ids, attention_mask=attention_mask, nt_mask=nt_mask, nt_token=nt_token,
        targets=targets, target_mask=target_mask, masked_positions=masked_positions, masked_labels=masked_labels,
    )
    return {k: torch.from_numpy(v) for k, v in arrays.items()}
