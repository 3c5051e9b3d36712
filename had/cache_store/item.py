"""The cache item: one window-view, as featurisation builds it, the writer stores it, the reader returns it
and `had.student.collate` batches it. This class is the schema; FORMAT.md gives the arrays it is stored in
(padded to the window, the features in token chunks).

The teacher's input ids are not part of it: they are teacher-specific (its specials, its mask id where
teacher_input is masked), live only until the forward, and are never stored (`had.featurize` keeps them
beside the items).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class CacheItem:
    """n = teacher tokens of the window-view (specials excluded), n_vis = (~token_masked).sum()."""

    nucleotides: np.ndarray  # uint8 [L]: alphabet codes (RC views hold the RC sequence)
    nt_mask: np.ndarray  # bool [L]: True = masked nucleotide
    spans: np.ndarray  # int32 [n, 2]: (start, length) of every teacher token, any length
    token_masked: np.ndarray  # bool [n]: the stage-1 mask over teacher tokens
    features: np.ndarray | None = None  # float32 [n_vis, D]: the visible tokens' features in token order;
    # None only between featurisation's preparing and its forward
