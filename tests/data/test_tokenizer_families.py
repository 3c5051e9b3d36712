"""The three teacher tokenizer families against the teachers' own HF tokenizers.

References: the real DNABERT-2 files read by transformers' PreTrainedTokenizerFast, single-nucleotide
tokenizers built from ../shared/reference/char_tokenizers.md (tests/dna_teachers.py), the real NTv2
files; ours must give the same ids and the HF character offsets as spans, on text normalised the
documented way (upper case, IUPAC -> N), for random and real chr20 windows of every length.
"""
import hashlib
import json
import random

import numpy as np
import pytest
from dna_teachers import char_tokenizer
from transformers import PreTrainedTokenizerFast

from had.data import alphabet
from had.data.masking import grouping_mask
from had.data.tokenizer import NTv2Tokenizer
from had.data.tokenizer_load import detect_family, load_tokenizer
from had.errors import HadError


def random_sequences(count: int, seed: int) -> list[str]:
    """N runs, lower case, other IUPAC letters, every length 0..300."""
    rng = random.Random(seed)
    alphabets = ["ACGT", "ACGTN", "ACGTNacgtn", "ACGTRYKMSWBDHVNacgt", "NNNNA", "AAAAAAAC"]
    return ["".join(rng.choice(letters) for _ in range(i % 301)) for i, letters in
            ((i, rng.choice(alphabets)) for i in range(count))]


def chr20_windows(chr20, count: int, seed: int) -> list[str]:
    """Real windows of random length up to 1100 nt, with planted N runs and soft-masked stretches."""
    text = chr20.read_text().split("\n", 1)[1].replace("\n", "")
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        length = rng.randrange(1, 1100)
        start = rng.randrange(len(text) - length)
        w = list(text[start:start + length])
        for _ in range(rng.randrange(3)):
            s, n = rng.randrange(length), rng.randrange(1, 30)
            w[s:s + n] = "N" * len(w[s:s + n])
            s = rng.randrange(length)
            w[s:s + 40] = [c.lower() for c in w[s:s + 40]]
        out.append("".join(w))
    return out


def normalised(text: str) -> str:
    return text.upper().translate({ord(c): "N" for c in "RYKMSWBDHV"})


def assert_equal_to_hf(tok, hf, texts):
    for text in texts:
        codes = alphabet.encode(text)
        ids, spans = tok.tokenize(codes)
        theirs = hf(normalised(text), add_special_tokens=False, return_offsets_mapping=True)
        assert ids.tolist() == theirs["input_ids"], text
        assert [(s, s + n) for s, n in spans.tolist()] == theirs["offset_mapping"], text
        assert tok.encode(text).tolist() == hf(normalised(text))["input_ids"], text


@pytest.fixture(scope="module")
def char_dirs(tmp_path_factory):
    return {style: tmp_path_factory.mktemp(style) for style in ("hyena", "ntv3")}


@pytest.fixture(scope="module")
def char_hf(char_dirs):
    return {style: char_tokenizer(path, style) for style, path in char_dirs.items()}


def test_dnabert2_equal_to_hf_on_random_and_chr20_windows(dnabert2_dir, chr20):
    hf = PreTrainedTokenizerFast.from_pretrained(dnabert2_dir)
    tok = load_tokenizer(dnabert2_dir)
    assert tok.family == "bpe" and detect_family(dnabert2_dir) == "bpe"
    assert_equal_to_hf(tok, hf, random_sequences(3000, seed=0) + chr20_windows(chr20, 600, seed=1))


@pytest.mark.parametrize("style", ["hyena", "ntv3"])
def test_char_equal_to_hf_on_random_and_chr20_windows(style, char_dirs, char_hf, chr20):
    tok = load_tokenizer(char_dirs[style])
    assert tok.family == "char"
    assert_equal_to_hf(tok, char_hf[style], random_sequences(2000, seed=2) + chr20_windows(chr20, 300, seed=3))


def test_ntv2_folder_is_the_kmer_family(ntv2_dir):
    tok = load_tokenizer(ntv2_dir)
    assert isinstance(tok, NTv2Tokenizer) and tok.family == "kmer"
    assert tok.vocab_hash == hashlib.sha256((ntv2_dir / "vocab.txt").read_bytes()).hexdigest()


def test_specials_mask_pad_and_padding_side_are_the_hf_tokenizers(dnabert2_dir, char_dirs, char_hf):
    hfs = {dnabert2_dir: PreTrainedTokenizerFast.from_pretrained(dnabert2_dir)}
    hfs |= {char_dirs[s]: char_hf[s] for s in char_dirs}
    for folder, hf in hfs.items():
        tok = load_tokenizer(folder)
        assert (tok.mask_id, tok.pad_id, tok.unk_id) == (hf.mask_token_id, hf.pad_token_id, hf.unk_token_id)
        assert tok.padding_side == hf.padding_side
        seqs = [normalised(s) for s in random_sequences(40, seed=4)]
        ours, theirs = tok.batch_encode(seqs), hf(seqs, padding=True)
        assert ours["input_ids"].tolist() == theirs["input_ids"] and ours["attention_mask"].tolist() == theirs["attention_mask"]
        cut, theirs = tok.batch_encode(seqs, max_length=9), hf(seqs, padding=True, truncation=True, max_length=9)
        assert cut["input_ids"].tolist() == theirs["input_ids"]


def test_maskable_is_exactly_the_acgt_tokens(dnabert2_dir, char_dirs):
    for folder in (dnabert2_dir, *char_dirs.values()):
        tok = load_tokenizer(folder)
        hf = PreTrainedTokenizerFast.from_pretrained(folder)
        text = hf.convert_ids_to_tokens(list(range(len(hf))))
        assert tok.maskable(np.arange(len(hf))).tolist() == [set(t) <= set("ACGT") for t in text]
        ids, _ = tok.tokenize(alphabet.encode("ACGTNNnacgtRY"))
        assert not tok.maskable(ids[4:6]).any() and not tok.maskable(ids[-2:]).any()  # N, IUPAC


def test_bpe_mask_covers_whole_variable_length_tokens(dnabert2_dir, chr20):
    tok = load_tokenizer(dnabert2_dir)
    for i, text in enumerate(chr20_windows(chr20, 50, seed=5)):
        codes = alphabet.encode(text)
        ids, spans = tok.tokenize(codes)
        masked, nt_mask = grouping_mask(tok.maskable(ids), spans, codes.size, 0.15, 0, i, 0)
        n_maskable = int(tok.maskable(ids).sum())
        assert masked.sum() == (max(round(0.15 * n_maskable), 1) if n_maskable else 0)
        expected = np.zeros(codes.size, bool)
        for (s, n) in spans[masked]:
            expected[s:s + n] = True
        assert np.array_equal(nt_mask, expected) and not (masked & ~tok.maskable(ids)).any()


def test_char_span_masking_masks_contiguous_runs(char_dirs):
    tok = load_tokenizer(char_dirs["hyena"])
    codes = np.random.default_rng(0).integers(0, 4, 600).astype(np.uint8)
    codes[100:103] = alphabet.N
    ids, spans = tok.tokenize(codes)
    masked, nt_mask = grouping_mask(tok.maskable(ids), spans, codes.size, 0.15, 1, 2, 0, span_tokens=6)
    runs = np.flatnonzero(masked).reshape(-1, 6)
    assert (runs[:, 0] % 6 == 0).all() and (np.diff(runs, axis=1) == 1).all()  # aligned runs of 6 nt
    assert len(runs) == round(0.15 * (100 - 1)) and not nt_mask[96:102].any()  # 99 whole groups; N's group never
    assert np.array_equal(nt_mask, masked)


def test_unsupported_tokenizers_are_refused_in_one_line(dnabert2_dir, tmp_path):
    spec = json.loads((dnabert2_dir / "tokenizer.json").read_text())
    cases = {
        "wordpiece": spec | {"model": {"type": "WordPiece", "vocab": {"[UNK]": 0, "ACG": 1}, "unk_token": "[UNK]"}},
        "lowercase": spec | {"normalizer": {"type": "Lowercase"}},
        "fuse_unk": spec | {"model": spec["model"] | {"fuse_unk": True}},
        "subword prefix": spec | {"model": spec["model"] | {"continuing_subword_prefix": "##"}},
        "bytelevel": spec | {"pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                                               "use_regex": True}},
    }
    for name, content in cases.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "tokenizer.json").write_text(json.dumps(content))
        with pytest.raises(HadError) as e:
            load_tokenizer(tmp_path / name)
        assert "\n" not in str(e.value) and str(tmp_path / name) in str(e.value), name
    (tmp_path / "empty").mkdir()
    with pytest.raises(HadError, match="no tokenizer files"):
        load_tokenizer(tmp_path / "empty")
    with pytest.raises(HadError, match="no tokenizer.json"):
        load_tokenizer(NTv2Tokenizer.default().source, family="bpe")
    with pytest.raises(HadError, match="one token per nucleotide"):
        load_tokenizer(dnabert2_dir, family="char")
    with pytest.raises(HadError, match="teacher.tokenizer='wordpiece'"):
        load_tokenizer(dnabert2_dir, family="wordpiece")


def test_tokenize_batch_equals_tokenize_for_every_family(dnabert2_dir, char_dirs, chr20):
    windows = [alphabet.encode(t) for t in chr20_windows(chr20, 100, seed=6) + random_sequences(100, seed=7)]
    for tok in (load_tokenizer(dnabert2_dir), load_tokenizer(char_dirs["hyena"]), NTv2Tokenizer.default()):
        for (ids, spans), codes in zip(tok.tokenize_batch(windows), windows):
            expected_ids, expected_spans = tok.tokenize(codes)
            assert np.array_equal(ids, expected_ids) and np.array_equal(spans, expected_spans)
