"""Padding a batch of id rows to one width: the student's nucleotide ids, a teacher's token ids.

    input_ids, attention_mask = pad_rows([np.array([5, 1, 2]), np.array([5, 3])], pad_id=0)
    # input_ids [[5, 1, 2], [5, 3, 0]], attention_mask [[1, 1, 1], [1, 1, 0]], both int64 [B, T]
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def pad_rows(rows: Sequence[np.ndarray], pad_id: int, side: str = "right") -> tuple[np.ndarray, np.ndarray]:
    """Rows of ids (any lengths) -> input_ids, attention_mask, both int64 [B, T], T = the longest row;
    ``side`` "left" puts the padding before each row (HF's padding_side)."""
    width = max((len(r) for r in rows), default=0)
    input_ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    attention_mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, r in enumerate(rows):
        cols = slice(width - len(r), width) if side == "left" else slice(0, len(r))
        input_ids[i, cols] = r
        attention_mask[i, cols] = 1
    return input_ids, attention_mask
