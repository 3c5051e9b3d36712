"""What every teacher tokenizer gives had: token ids, their spans in nucleotides, specials, maskable tokens.

A teacher token is a span of one or more nucleotides (NT 6-mers: 6 or 1, DNABERT-2's BPE: 1 to 32,
single-nucleotide teachers: 1). ``tokenize`` works on nucleotide codes (``had.data.alphabet``: upper
case, every IUPAC letter already N), so lower case never reaches a teacher as ``[UNK]``; what each
family makes of N is written in its module. Special tokens never come out of ``tokenize``: they are
the ``prefix_ids`` / ``suffix_ids`` the teacher's own post-processor puts around a sequence
(NTv2 ``<cls>`` first; DNABERT-2 ``[CLS] ... [SEP]``; HyenaDNA / Caduceus ``... [SEP]``).

    tok = load_tokenizer("teacher-dir")                # had.data.tokenizer_load
    ids, spans = tok.tokenize(alphabet.encode("ACGTN"))   # int64 [n], int32 [n, 2] = (start, length)
    tok.maskable(ids)                                     # bool [n]: tokens the grouping mask may draw
    tok.input_ids(ids)                                    # prefix + ids + suffix, what the teacher reads
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from had.data import alphabet
from had.data.padding import pad_rows

FAMILIES = ("kmer", "bpe", "char")


class TeacherTokenizer:
    """Base of the three families; a subclass sets the attributes below and implements ``tokenize``."""

    family: str  # one of FAMILIES
    source: str  # the folder the files came from (messages)
    vocab: list[str]  # token text by id
    vocab_hash: str  # sha256 identifying the tokenizer files (recorded in caches)
    pad_id: int
    mask_id: int
    unk_id: int
    prefix_ids: np.ndarray  # int64 [p]: specials before the sequence
    suffix_ids: np.ndarray  # int64 [s]: specials after it
    padding_side: str = "right"  # where batch_encode pads (HyenaDNA / Caduceus: left)
    longest_token: int  # most nucleotides one token spans (NTv2 6, DNABERT-2 BPE 32, char 1)
    _maskable: np.ndarray  # bool [vocab_size], see maskable

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @property
    def n_specials(self) -> int:
        return len(self.prefix_ids) + len(self.suffix_ids)

    def fewest_tokens(self, length: int) -> int:
        """A lower bound on the teacher input of a `length`-nt window, specials included."""
        return -(-length // self.longest_token) + self.n_specials

    def tokenize(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Nucleotide codes uint8 [L] (0..4) -> ids int64 [n], spans int32 [n, 2] = (start, length) in nt,
        the spans tiling [0, L) in order; no special tokens."""
        raise NotImplementedError

    def tokenize_batch(self, windows: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """``tokenize`` of every window; a family may do them at once (BPE: in HF's thread pool)."""
        return [self.tokenize(codes) for codes in windows]

    def maskable(self, ids: np.ndarray) -> np.ndarray:
        """bool [...] for ids int [...]: tokens the grouping mask may draw (never N / [UNK] / specials)."""
        return self._maskable[np.asarray(ids)]

    def input_ids(self, ids: np.ndarray) -> np.ndarray:
        """The teacher's input for one sequence: prefix + ids + suffix, int64 [p + n + s]."""
        return np.concatenate([self.prefix_ids, ids, self.suffix_ids]).astype(np.int64)

    def encode(self, seq: str | bytes | np.ndarray) -> np.ndarray:
        """Token ids with the specials, int64 [p + n + s]; text is normalised by alphabet.encode."""
        codes = alphabet.encode(seq) if isinstance(seq, (str, bytes)) else seq
        return self.input_ids(self.tokenize(codes)[0])

    def batch_encode(self, seqs: Sequence[str | bytes | np.ndarray], max_length: int | None = None) -> dict[str, np.ndarray]:
        """Encode and pad a batch on ``padding_side``, like HF's ``tokenizer(seqs, padding=True)``.

        Returns ``input_ids`` and ``attention_mask``, both int64 [B, T], T = the longest encoding;
        with ``max_length`` (HF's truncation) sequence tokens are dropped from the right so that
        every row, specials included, has at most that many tokens.
        """
        if max_length is not None and max_length < self.n_specials + 1:
            raise ValueError(f"max_length must be >= {self.n_specials + 1} (the specials and a token), got {max_length}")
        encoded = []
        for s in seqs:
            ids = self.tokenize(alphabet.encode(s) if isinstance(s, (str, bytes)) else s)[0]
            if max_length is not None:
                ids = ids[: max_length - self.n_specials]
            encoded.append(self.input_ids(ids))
        input_ids, attention_mask = pad_rows(encoded, self.pad_id, self.padding_side)
        return {"input_ids": input_ids, "attention_mask": attention_mask}


def check_codes(codes: np.ndarray) -> np.ndarray:
    """`codes` as an array, ValueError unless it is one sequence of nucleotide codes 0..4."""
    codes = np.asarray(codes)
    if codes.ndim != 1:
        raise ValueError(f"tokenize expects one sequence of codes [L], got shape {codes.shape}")
    if codes.size and codes.max() > alphabet.N:
        raise ValueError("tokenize expects nucleotide codes A C G T N (0..4); MASK/PAD found")
    return codes
