"""Two-stage (grouping) mask: sample teacher tokens, then mask the nucleotides they cover.

Stage 1 draws ``round(ratio * n_kmers)`` of the 6-mer teacher tokens (at least one
when any exists and ratio > 0) without replacement; single-nucleotide and N tokens
are never masked, and CLS is not among the ids at all. Stage 2 marks every
nucleotide of a drawn token, so no teacher token is ever half masked (that
leakage is what the grouping scheme prevents).

The draw depends on (seed, window_id, view_id) only, through
``np.random.default_rng([seed, window_id, view_id])``: the same window-view gets
the same mask whatever the batching, worker count, order of calls or resume point.
"""
from __future__ import annotations

import numpy as np

from had.data.tokenizer import KMER


def grouping_mask(
    ids: np.ndarray,
    spans: np.ndarray,
    length: int,
    ratio: float,
    seed: int,
    window_id: int,
    view_id: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Mask a window's teacher tokens and map the mask onto its nucleotides.

    Args:
        ids: teacher token ids without CLS, int [n] (as from ``NTv2Tokenizer.tokenize``).
        spans: (start, length) in nucleotides of each token, int [n, 2]; 6-mers have length 6.
        length: window length L in nucleotides.
        ratio: fraction of 6-mer tokens to mask, in [0, 1].
        seed, window_id, view_id: non-negative ints; together they fix the draw.

    Returns:
        token_masked bool [n] and nt_mask bool [L] (the union of the masked tokens' spans).
    """
    spans = np.asarray(spans)
    if len(ids) != len(spans):
        raise ValueError(f"ids and spans disagree: {len(ids)} tokens vs {len(spans)} spans")
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"mask ratio must lie in [0, 1], got {ratio}")
    token_masked = sample_kmers(spans[:, 1] == KMER, ratio, np.random.default_rng([seed, window_id, view_id]))
    chosen = np.flatnonzero(token_masked)
    nt_mask = np.zeros(length, dtype=bool)
    nt_mask[(spans[chosen, 0, None] + np.arange(KMER)).ravel()] = True
    return token_masked, nt_mask


def sample_kmers(is_kmer: np.ndarray, ratio: float, rng: np.random.Generator) -> np.ndarray:
    """Stage 1: bool [n] with round(ratio * n_kmers) of the 6-mer positions (>= 1 when any exists and
    ratio > 0) drawn from `rng` without replacement; is_kmer bool [n]."""
    kmers = np.flatnonzero(is_kmer)
    count = round(ratio * kmers.size)
    if ratio > 0 and kmers.size:
        count = max(count, 1)
    masked = np.zeros(is_kmer.shape, dtype=bool)
    masked[kmers[rng.choice(kmers.size, size=count, replace=False)]] = True
    return masked
