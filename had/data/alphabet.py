"""The student's nucleotide alphabet: one token per nucleotide.

Ids: ``A=0 C=1 G=2 T=3 N=4 MASK=5 PAD=6`` (``NUC_VOCAB_SIZE = 7``). Encoding goes
through a 256-entry byte lookup table: lower-case (soft-masked) bases become upper
case and every other byte (IUPAC codes such as R/Y/K, or anything else) becomes N,
so downstream code only ever sees the five nucleotide codes.

    codes = encode("acgTRN")        # uint8 [0 1 2 3 4 4]
    decode(reverse_complement(codes))  # "NNACGT"
"""
from __future__ import annotations

import numpy as np

A, C, G, T, N, MASK, PAD = range(7)
NUC_VOCAB_SIZE = 7
NUCLEOTIDES = "ACGTN"
# Printable form of every id, MASK and PAD included, for decode (debugging, logs).
SYMBOLS = "ACGTN?-"
# Label of a position without a target (padding of the masked-position lists): PyTorch's
# cross-entropy default, shared by the batch builder that writes it and the model that skips it.
IGNORE_INDEX = -100

_ENCODE = np.full(256, N, dtype=np.uint8)
for _code, _base in enumerate("ACGT"):
    _ENCODE[ord(_base)] = _code
    _ENCODE[ord(_base.lower())] = _code

# MASK and PAD are their own complement so a reversed masked view stays well formed.
_COMPLEMENT = np.array([T, G, C, A, N, MASK, PAD], dtype=np.uint8)
_SYMBOL_BYTES = np.frombuffer(SYMBOLS.encode(), dtype=np.uint8)


def encode(seq: str | bytes | bytearray | memoryview | np.ndarray) -> np.ndarray:
    """Map a DNA string (or raw ASCII bytes / a uint8 byte array) to codes, uint8 [len].

    Non-ASCII characters in a ``str`` become N like every other non-ACGT symbol.
    """
    if isinstance(seq, str):
        seq = seq.encode("ascii", errors="replace")
    raw = np.frombuffer(seq, dtype=np.uint8) if not isinstance(seq, np.ndarray) else seq
    if raw.dtype != np.uint8:
        raise TypeError(f"encode expects text or a uint8 byte array, got {raw.dtype}")
    return _ENCODE[raw]


def decode(codes: np.ndarray) -> str:
    """Inverse of encode for codes 0..6 (MASK prints as '?', PAD as '-'), uint8 [L] -> str."""
    codes = np.asarray(codes)
    if codes.size and (codes.min() < 0 or codes.max() >= NUC_VOCAB_SIZE):
        raise ValueError(f"nucleotide codes must lie in [0, {NUC_VOCAB_SIZE}), got {codes.min()}..{codes.max()}")
    return _SYMBOL_BYTES[codes.astype(np.intp, copy=False)].tobytes().decode()


def reverse_complement(codes: np.ndarray) -> np.ndarray:
    """Reverse complement along the last axis, codes [..., L] -> codes [..., L] (N stays N)."""
    return _COMPLEMENT[np.asarray(codes)[..., ::-1]]
