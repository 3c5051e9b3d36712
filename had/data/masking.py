"""Two-stage (grouping) mask: sample teacher tokens, then mask the nucleotides they cover.

Stage 1 draws ``round(ratio * n_maskable)`` of the window's maskable teacher tokens (at
least one when any exists and ratio > 0) without replacement: NTv2's 6-mers, DNABERT-2's
BPE tokens, a single-nucleotide teacher's A/C/G/T (``TeacherTokenizer.maskable``; never N,
[UNK] or specials, which are not among the ids at all). Stage 2 marks every nucleotide of
a drawn token through its span, whatever its length, so no teacher token is ever half
masked (that leakage is what the grouping scheme prevents).

With ``span_tokens = k > 1`` the draw is over aligned groups of k consecutive tokens
(tokens ``[g*k, (g+1)*k)``, only groups whose k tokens are all maskable): for a
single-nucleotide teacher, contiguous spans of k nt instead of a scattered nucleotide mask.

The draw depends on (seed, window_id, view_id) only, through
``np.random.default_rng([seed, window_id, view_id])``: the same window-view gets
the same mask whatever the batching, worker count, order of calls or resume point.
"""
from __future__ import annotations

import numpy as np


def grouping_mask(
    maskable: np.ndarray,
    spans: np.ndarray,
    length: int,
    ratio: float,
    seed: int,
    window_id: int,
    view_id: int,
    span_tokens: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Mask a window's teacher tokens and map the mask onto its nucleotides.

    Args:
        maskable: bool [n], tokens the mask may draw (``tokenizer.maskable(ids)``).
        spans: (start, length) in nucleotides of each token, int [n, 2].
        length: window length L in nucleotides.
        ratio: fraction of maskable tokens (or token groups) to mask, in [0, 1].
        seed, window_id, view_id: non-negative ints; together they fix the draw.
        span_tokens: tokens per drawn group (1 = single tokens).

    Returns:
        token_masked bool [n] and nt_mask bool [L] (the union of the masked tokens' spans).
    """
    spans = np.asarray(spans)
    maskable = np.asarray(maskable, dtype=bool)
    if len(maskable) != len(spans):
        raise ValueError(f"maskable and spans disagree: {len(maskable)} tokens vs {len(spans)} spans")
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"mask ratio must lie in [0, 1], got {ratio}")
    if span_tokens < 1:
        raise ValueError(f"span_tokens must be >= 1, got {span_tokens}")
    rng = np.random.default_rng([seed, window_id, view_id])
    if span_tokens == 1:
        token_masked = sample_tokens(maskable, ratio, rng)
    else:
        whole = len(maskable) // span_tokens * span_tokens
        groups = maskable[:whole].reshape(-1, span_tokens).all(1)
        token_masked = np.zeros(len(maskable), dtype=bool)
        token_masked[:whole] = np.repeat(sample_tokens(groups, ratio, rng), span_tokens)
    chosen = spans[token_masked].astype(np.int64)
    lens = chosen[:, 1]
    offsets = np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens, lens)  # 0..len-1 within each span
    nt_mask = np.zeros(length, dtype=bool)
    nt_mask[np.repeat(chosen[:, 0], lens) + offsets] = True
    return token_masked, nt_mask


def sample_tokens(maskable: np.ndarray, ratio: float, rng: np.random.Generator) -> np.ndarray:
    """Stage 1: bool [n] with round(ratio * n_maskable) of the maskable positions (>= 1 when any exists
    and ratio > 0) drawn from `rng` without replacement; maskable bool [n]."""
    candidates = np.flatnonzero(maskable)
    count = round(ratio * candidates.size)
    if ratio > 0 and candidates.size:
        count = max(count, 1)
    masked = np.zeros(maskable.shape, dtype=bool)
    masked[candidates[rng.choice(candidates.size, size=count, replace=False)]] = True
    return masked
