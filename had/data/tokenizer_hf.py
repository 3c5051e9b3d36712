"""The BPE and single-nucleotide families, read from a Hugging Face ``tokenizer.json``.

Both take ids, specials and padding side from the teacher's own files (``tokenizer.json`` and
``tokenizer_config.json``); nothing about id order is assumed.

- **bpe** (DNABERT-2): the HF fast tokenizer itself splits the sequence, upper case with every
  IUPAC letter as N (``had.data.alphabet``). Its pre-tokenizer (Whitespace) has nothing to split in
  A/C/G/T/N text and is dropped for speed (``load`` refuses any other); a token's span length is the
  length of its text, so spans equal HF's character offsets. A vocabulary without N (DNABERT-2's)
  makes each N its own ``[UNK]`` of one nucleotide, exactly as HF does on that text: the teacher
  sees "unknown base", the student sees N at the same place, and neither is ever masked.
- **char** (HyenaDNA, Caduceus, NTv3 styles): one token per nucleotide, looked up in a table. N
  is the teacher's own ``N`` token when it has one (all three do), else ``[UNK]``; HyenaDNA and
  NTv3 do not upper-case and would give ``[UNK]`` for soft-masked bases, we upper-case first
  (soft-masking is an annotation, not sequence). Only A/C/G/T tokens are maskable.

    tok = load_hf("../shared/reference/dnabert2", "bpe")
    ids, spans = tok.tokenize(alphabet.encode("ACGTACGTTTGACCANN"))
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from had.data import alphabet
from had.data.tokenizer_base import TeacherTokenizer, check_codes
from had.errors import HadError

# tokenizer_config.json keys of the specials had needs, with the names used when a key is absent.
_SPECIALS = {"pad_token": ("[PAD]", "<pad>"), "mask_token": ("[MASK]", "<mask>"), "unk_token": ("[UNK]", "<unk>")}
_NO_SPLIT_PRETOKENIZERS = (None, "Whitespace", "WhitespaceSplit")  # nothing to split in A/C/G/T/N text


class HFTokenizer(TeacherTokenizer):
    """Common part of the bpe and char families: vocabulary, specials and padding from the files."""

    def __init__(self, backend, config: dict, vocab_hash: str, source: str):
        self.source, self.vocab_hash, self._backend = source, vocab_hash, backend
        by_id = {i: t for t, i in backend.get_vocab(with_added_tokens=True).items()}
        self.vocab = [by_id.get(i, "") for i in range(max(by_id) + 1)]
        for key, names in _SPECIALS.items():
            name = _content(config.get(key)) or next((n for n in names if backend.token_to_id(n) is not None), None)
            if name is None or backend.token_to_id(name) is None:
                raise HadError(f"{source}: the tokenizer has no {key} ({' / '.join(names)} or tokenizer_config.json)")
            setattr(self, key.replace("_token", "_id"), backend.token_to_id(name))
        self.padding_side = config.get("padding_side", "right")
        if self.padding_side not in ("left", "right"):
            raise HadError(f"{source}/tokenizer_config.json: padding_side {self.padding_side!r}, expected left or right")
        self.prefix_ids, self.suffix_ids = _specials_around(backend)
        self._maskable = np.array([len(t) > 0 and set(t) <= set("ACGT") for t in self.vocab])
        self.longest_token = max(len(t) for t, m in zip(self.vocab, self._maskable) if m)


class BPETokenizer(HFTokenizer):
    family = "bpe"

    def __init__(self, backend, config: dict, vocab_hash: str, source: str):
        super().__init__(backend, config, vocab_hash, source)
        backend.pre_tokenizer = None
        # span length of each id = its text's length; [UNK] stands for one character (fuse_unk is refused)
        self._length = np.array([len(t) for t in self.vocab], dtype=np.int32)
        self._length[self.unk_id] = 1

    def tokenize(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        text = alphabet.decode(check_codes(codes))
        return self._with_spans(self._backend.encode(text, add_special_tokens=False).ids, len(text))

    def tokenize_batch(self, windows: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        texts = [alphabet.decode(check_codes(codes)) for codes in windows]
        encodings = self._backend.encode_batch_fast(texts, add_special_tokens=False)  # all cores, GIL released
        return [self._with_spans(e.ids, len(t)) for e, t in zip(encodings, texts)]

    def _with_spans(self, ids: list[int], length: int) -> tuple[np.ndarray, np.ndarray]:
        """ids int64 [n] and spans int32 [n, 2] from HF's ids of a `length`-nt window."""
        ids = np.array(ids, dtype=np.int64)
        lengths = self._length[ids]
        ends = np.cumsum(lengths, dtype=np.int32)
        if ends.size and ends[-1] != length:  # a normalizer or added token we did not expect
            raise HadError(f"{self.source}: BPE tokens of a {length}-nt window cover {ends[-1]} nt")
        return ids, np.stack([ends - lengths, lengths], axis=1)


class CharTokenizer(HFTokenizer):
    family = "char"

    def __init__(self, backend, config: dict, vocab_hash: str, source: str):
        super().__init__(backend, config, vocab_hash, source)
        # ids of the five codes A C G T N (N: [UNK] when the vocabulary has no N)
        singles = [backend.token_to_id(b) for b in alphabet.NUCLEOTIDES]
        self._single_ids = np.array([self.unk_id if i is None else i for i in singles], dtype=np.int64)

    def tokenize(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        codes = check_codes(codes)
        spans = np.ones((codes.size, 2), dtype=np.int32)
        spans[:, 0] = np.arange(codes.size, dtype=np.int32)
        return self._single_ids[codes], spans


def load_hf(folder: Path, family: str, vocab_hash: str) -> HFTokenizer:
    """The bpe or char tokenizer of `folder` (tokenizer.json, optional tokenizer_config.json); HadError
    for a tokenizer whose spans would not be nucleotides (normalizer, splitting pre-tokenizer, ...)."""
    from tokenizers import Tokenizer

    spec = read_json(folder / "tokenizer.json")
    config = read_json(folder / "tokenizer_config.json") if (folder / "tokenizer_config.json").is_file() else {}
    model, where = spec.get("model", {}), f"{folder}/tokenizer.json"
    if spec.get("normalizer") is not None:
        raise HadError(f"{where}: a normalizer ({spec['normalizer'].get('type')}) changes the text; not supported")
    if family == "bpe":  # checked before HF parses the file: it panics on some of these
        affixes = model.get("continuing_subword_prefix") or model.get("end_of_word_suffix")
        if model.get("type") != "BPE" or model.get("fuse_unk") or model.get("dropout") or affixes:
            raise HadError(f"{where}: family bpe needs a BPE model without fuse_unk, dropout or subword affixes "
                           f"(found {model.get('type')}); set teacher.tokenizer to the right family")
        pre = (spec.get("pre_tokenizer") or {}).get("type")
        if pre not in _NO_SPLIT_PRETOKENIZERS:
            raise HadError(f"{where}: pre-tokenizer {pre} is not supported for DNA (expected none or Whitespace)")
    try:
        backend = Tokenizer.from_file(str(folder / "tokenizer.json"))
    except Exception as e:
        raise HadError(f"{where}: the HF tokenizers library cannot read it ({e})") from None
    if family == "bpe":
        return BPETokenizer(backend, config, vocab_hash, str(folder))
    tok = CharTokenizer(backend, config, vocab_hash, str(folder))
    probe = backend.encode("ACGTN", add_special_tokens=False)
    if probe.ids != tok._single_ids.tolist():
        raise HadError(f"{where}: does not split ACGTN into one token per nucleotide ({probe.tokens}); "
                       "set teacher.tokenizer to the right family")
    return tok


def hf_family(folder: Path) -> str | None:
    """bpe or char for the tokenizer.json of `folder` (char: A, C, G, T are tokens and no token joins
    two nucleotides); None for other models (WordPiece, Unigram, k-mer WordLevel): not supported."""
    model = read_json(folder / "tokenizer.json").get("model", {})
    vocab = model.get("vocab")
    tokens = set(vocab if isinstance(vocab, dict) else ())
    if set("ACGT") <= tokens and not any(len(t) > 1 and set(t) <= set("ACGTN") for t in tokens):
        return "char"
    return "bpe" if model.get("type") == "BPE" else None


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise HadError(f"{path}: not valid JSON: {e}") from None


def _content(value) -> str | None:
    """A special token in tokenizer_config.json: a string or an AddedToken dict {"content": ...}."""
    return value.get("content") if isinstance(value, dict) else value


def _specials_around(backend) -> tuple[np.ndarray, np.ndarray]:
    """The special ids the post-processor puts before and after a sequence, from encoding one 'A'."""
    enc = backend.encode("A", add_special_tokens=True)
    first = enc.special_tokens_mask.index(0)
    return np.array(enc.ids[:first], dtype=np.int64), np.array(enc.ids[first + 1:], dtype=np.int64)
