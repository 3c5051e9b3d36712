"""The k-mer family: NTv2's teacher tokenizer, vectorised and exact to Hugging Face's ``EsmTokenizer``.

NTv2 splits DNA like this: N is always its own token and cuts the sequence into
runs; every N-free run is cut into non-overlapping 6-mers from the left and its
leftover (< 6 nt) into single-nucleotide tokens; ``encode`` prepends CLS and never
appends EOS. The vocabulary and special ids are read from the teacher's own
``vocab.txt`` and ``special_tokens_map.json``; nothing about their order is assumed.

Normalisation (our choice): input goes
through ``had.data.alphabet.encode`` first, i.e. upper case, and every non-ACGT
letter becomes N. The HF tokenizer itself is case-sensitive and would turn such
runs into ``<unk>``; on upper-case ACGTN text the two agree token for token. N is the
teacher's own ``N`` token (its features are distilled, as NTv2 itself was trained on N);
only 6-mers are maskable.

    tok = NTv2Tokenizer.default()
    ids, spans = tok.tokenize(alphabet.encode("ATTCCGATTCCGNAT"))
    # ids   = [369, 369, 4106, 4102, 4103]      (no CLS)
    # spans = [[0, 6], [6, 6], [12, 1], [13, 1], [14, 1]]   (start, length) in nt
    tok.encode("ATTCCGATTCCGNAT")  # [3, 369, 369, 4106, 4102, 4103]
"""
from __future__ import annotations

import hashlib
import json
from functools import cached_property
from pathlib import Path

import numpy as np

from had.data import alphabet
from had.data.tokenizer_base import TeacherTokenizer, check_codes
from had.errors import HadError

KMER = 6
DEFAULT_DIR = Path(__file__).parent / "ntv2_tokenizer"
_POWERS = 4 ** np.arange(KMER - 1, -1, -1, dtype=np.int64)  # base-4 weights, first base most significant


class NTv2Tokenizer(TeacherTokenizer):
    """Teacher tokenizer built from an NTv2 tokenizer folder (vocab.txt + special_tokens_map.json)."""

    family = "kmer"
    longest_token = KMER

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
        self._maskable = self._is_kmer
        self.prefix_ids, self.suffix_ids = np.array([self.cls_id], dtype=np.int64), np.zeros(0, dtype=np.int64)

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
        codes = check_codes(codes)
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
