"""NTv2's teacher tokenizer, vectorised and exact to Hugging Face's ``EsmTokenizer``.

NTv2 splits DNA like this: N is always its own token and cuts the sequence into
runs; every N-free run is cut into non-overlapping 6-mers from the left and its
leftover (< 6 nt) into single-nucleotide tokens; ``encode`` prepends CLS and never
appends EOS. The vocabulary and special ids are read from the teacher's own
``vocab.txt`` and ``special_tokens_map.json``; nothing about their order is assumed.

Normalisation (our choice, see ../shared/reference/ntv2/README.md): input goes
through ``had.data.alphabet.encode`` first, i.e. upper case, and every non-ACGT
letter becomes N. The HF tokenizer itself is case-sensitive and would turn such
runs into ``<unk>``; on upper-case ACGTN text the two agree token for token.

    tok = NTv2Tokenizer.default()
    ids, spans = tok.tokenize(alphabet.encode("ATTCCGATTCCGNAT"))
    # ids   = [369, 369, 4106, 4102, 4103]      (no CLS)
    # spans = [[0, 6], [6, 6], [12, 1], [13, 1], [14, 1]]   (start, length) in nt
    tok.encode("ATTCCGATTCCGNAT")  # [3, 369, 369, 4106, 4102, 4103]
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

import numpy as np

from had.data import alphabet
from had.errors import HadError

KMER = 6
DEFAULT_DIR = Path(__file__).parent / "ntv2_tokenizer"
_POWERS = 4 ** np.arange(KMER - 1, -1, -1, dtype=np.int64)  # base-4 weights, first base most significant


class NTv2Tokenizer:
    """Teacher tokenizer built from an NTv2 tokenizer folder (vocab.txt + special_tokens_map.json)."""

    def __init__(self, vocab: list[str], specials: dict[str, str], vocab_bytes: bytes, source: str):
        self.vocab = vocab
        self.source = source
        self._vocab_bytes = vocab_bytes
        index = {token: i for i, token in enumerate(vocab)}
        if len(index) != len(vocab):
            raise HadError(f"{source}/vocab.txt: duplicate tokens")

        def lookup(token: str, what: str) -> int:
            if token not in index:
                raise HadError(f"{source}/vocab.txt: no token '{token}' ({what})")
            return index[token]

        self.cls_id = lookup(specials.get("cls_token", "<cls>"), "cls_token")
        self.pad_id = lookup(specials.get("pad_token", "<pad>"), "pad_token")
        self.mask_id = lookup(specials.get("mask_token", "<mask>"), "mask_token")
        self.unk_id = lookup(specials.get("unk_token", "<unk>"), "unk_token")
        # kmer_ids[c] = vocab id of the 6-mer whose base-4 code (A=0 C=1 G=2 T=3) is c.
        kmers = np.stack(np.meshgrid(*[np.arange(4)] * KMER, indexing="ij"), -1).reshape(-1, KMER)
        self._kmer_ids = np.array(
            [lookup("".join("ACGT"[b] for b in kmer), "6-mer") for kmer in kmers], dtype=np.int64
        )
        # single_ids[code] for the alphabet codes A C G T N.
        self._single_ids = np.array([lookup(b, "single nucleotide") for b in alphabet.NUCLEOTIDES], dtype=np.int64)
        self._is_kmer = np.zeros(len(vocab), dtype=bool)
        self._is_kmer[self._kmer_ids] = True

    @classmethod
    def from_dir(cls, path: str | Path) -> NTv2Tokenizer:
        """Load from a folder holding NTv2's vocab.txt and special_tokens_map.json."""
        path = Path(path)
        vocab_file, specials_file = path / "vocab.txt", path / "special_tokens_map.json"
        if not vocab_file.is_file():
            raise HadError(f"teacher tokenizer: {vocab_file} not found")
        vocab_bytes = vocab_file.read_bytes()
        vocab = [line.strip() for line in vocab_bytes.decode().splitlines()]
        specials = {}
        if specials_file.is_file():
            try:
                raw = json.loads(specials_file.read_text())
            except json.JSONDecodeError as e:
                raise HadError(f"{specials_file}: not valid JSON: {e}") from None
            # Entries are either plain strings or AddedToken dicts {"content": ...}.
            specials = {k: v["content"] if isinstance(v, dict) else v for k, v in raw.items()}
        return cls(vocab, specials, vocab_bytes, str(path))

    @classmethod
    def default(cls) -> NTv2Tokenizer:
        """The NTv2 tokenizer files shipped with had (identical to the multi-species v2 models')."""
        return cls.from_dir(DEFAULT_DIR)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @cached_property
    def vocab_hash(self) -> str:
        """sha256 of vocab.txt: identifies the token ids a cache was written with."""
        return hashlib.sha256(self._vocab_bytes).hexdigest()

    def is_kmer(self, ids: np.ndarray) -> np.ndarray:
        """True for 6-mer tokens, ids int [...] -> bool [...]."""
        return self._is_kmer[np.asarray(ids)]

    def tokenize(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Split nucleotide codes uint8 [L] (values 0..4) into teacher tokens, without CLS.

        Returns ids int64 [n] and spans int32 [n, 2] = (start, length) in nucleotides;
        the spans tile [0, L) in order.
        """
        codes = np.asarray(codes)
        if codes.ndim != 1:
            raise ValueError(f"tokenize expects one sequence of codes [L], got shape {codes.shape}")
        if codes.size and codes.max() > alphabet.N:
            raise ValueError("tokenize expects nucleotide codes A C G T N (0..4); MASK/PAD found")
        length = codes.size
        pos = np.arange(length, dtype=np.int64)
        is_n = codes == alphabet.N
        # For every position: where its N-free run starts and ends (an N is a run of its own).
        run_start = np.maximum.accumulate(np.where(is_n, pos + 1, 0))
        run_end = np.minimum.accumulate(np.where(is_n, pos, length)[::-1])[::-1]
        offset = pos - run_start
        kmer_part = (run_end - run_start) // KMER * KMER
        in_kmer = ~is_n & (offset < kmer_part)
        starts = np.flatnonzero(~in_kmer | (offset % KMER == 0))
        kmer_start = in_kmer[starts]

        ids = self._single_ids[codes[starts]]
        kmer_pos = starts[kmer_start]
        kmer_codes = codes[kmer_pos[:, None] + np.arange(KMER)].astype(np.int64) @ _POWERS
        ids[kmer_start] = self._kmer_ids[kmer_codes]
        spans = np.stack([starts, np.where(kmer_start, KMER, 1)], axis=1).astype(np.int32)
        return ids, spans

    def encode(self, seq: str | bytes | np.ndarray) -> np.ndarray:
        """Token ids with CLS prepended, int64 [1 + n]; text is normalised by alphabet.encode."""
        codes = alphabet.encode(seq) if isinstance(seq, (str, bytes)) else seq
        ids, _ = self.tokenize(codes)
        return np.concatenate([[self.cls_id], ids]).astype(np.int64)

    def batch_encode(self, seqs: Sequence[str | bytes | np.ndarray], max_length: int | None = None) -> dict[str, np.ndarray]:
        """Encode and right-pad a batch, like HF's ``tokenizer(seqs, padding=True)``.

        Returns ``input_ids`` and ``attention_mask``, both int64 [B, T], T = the longest
        encoding (CLS included); with ``max_length`` every row is cut to at most that
        many tokens (CLS kept, tokens dropped from the right).
        """
        encoded = [self.encode(s) for s in seqs]
        if max_length is not None:
            if max_length < 1:
                raise ValueError(f"max_length must be >= 1, got {max_length}")
            encoded = [e[:max_length] for e in encoded]
        width = max((e.size for e in encoded), default=0)
        input_ids = np.full((len(encoded), width), self.pad_id, dtype=np.int64)
        attention_mask = np.zeros((len(encoded), width), dtype=np.int64)
        for row, e in enumerate(encoded):
            input_ids[row, : e.size] = e
            attention_mask[row, : e.size] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask}
