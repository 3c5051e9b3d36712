"""NTv2Tokenizer against transformers' EsmTokenizer built from the real NTv2 files."""
import hashlib
import random

import numpy as np
import pytest
from transformers import EsmTokenizer

from had.data import alphabet
from had.data.masking import grouping_mask
from had.data.tokenizer import DEFAULT_DIR, NTv2Tokenizer


@pytest.fixture(scope="module")
def hf():
    # Built directly: AutoTokenizer on a folder with auto_map wants trust_remote_code in transformers 5.
    return EsmTokenizer(vocab_file=str(DEFAULT_DIR / "vocab.txt"), eos_token=None)


@pytest.fixture(scope="module")
def tok():
    return NTv2Tokenizer.default()


def random_sequences(count: int, seed: int = 0) -> list[str]:
    """Sequences with N runs, lower case and other IUPAC letters, every length mod 6."""
    rng = random.Random(seed)
    seqs = []
    for i in range(count):
        length = 6 * rng.randrange(0, 30) + i % 6
        letters = rng.choice(["ACGT", "ACGTN", "ACGTNacgtn", "ACGTRYKMSWBDHVNacgt", "NNNNA"])
        seqs.append("".join(rng.choice(letters) for _ in range(length)))
    return seqs


def hf_normalised(hf, text: str) -> list[int]:
    return hf(alphabet.decode(alphabet.encode(text)))["input_ids"]


def test_equal_to_hf_on_random_sequences(hf, tok):
    seqs = random_sequences(5000)
    assert {len(s) % 6 for s in seqs} == set(range(6))
    for text in seqs:
        assert tok.encode(text).tolist() == hf_normalised(hf, text), text


def test_spans_tile_the_sequence_and_cover_the_token_text(tok):
    for text in random_sequences(500, seed=1):
        codes = alphabet.encode(text)
        ids, spans = tok.tokenize(codes)
        assert ids.dtype == np.int64 and spans.dtype == np.int32 and spans.shape == (ids.size, 2)
        ends = spans[:, 0] + spans[:, 1]
        assert spans[:1, 0].tolist() in ([], [0]) and np.array_equal(spans[1:, 0], ends[:-1])
        assert (ends[-1] if ids.size else 0) == codes.size
        for tid, (start, length) in zip(ids, spans):
            assert tok.vocab[tid] == alphabet.decode(codes[start : start + length])


def test_equal_to_hf_on_real_chr20_windows(hf, tok, chr20):
    text = chr20.read_text().split("\n", 1)[1].replace("\n", "")
    rng = random.Random(2)
    for _ in range(40):
        start = rng.randrange(len(text) - 1024)
        window = list(text[start : start + 1024])
        for pos in rng.sample(range(1024), 8):  # chr20 has no N: plant a few
            window[pos] = "N"
        window = "".join(window)
        assert tok.encode(window).tolist() == hf(window)["input_ids"]


def test_special_ids_and_kmers_read_from_files(hf, tok):
    assert (tok.cls_id, tok.pad_id, tok.mask_id, tok.unk_id) == (
        hf.cls_token_id, hf.pad_token_id, hf.mask_token_id, hf.unk_token_id)
    assert tok.vocab_size == len(hf) == 4107
    flags = tok.is_kmer(np.arange(tok.vocab_size))
    expected = [len(t) == 6 and set(t) <= set("ACGT") for t in tok.vocab]
    assert flags.tolist() == expected


def test_vocabulary_order_is_not_assumed(tmp_path):
    """A shuffled vocab file gives the same token strings, under the new ids."""
    lines = (DEFAULT_DIR / "vocab.txt").read_text().splitlines()
    random.Random(3).shuffle(lines)
    (tmp_path / "vocab.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "special_tokens_map.json").write_bytes((DEFAULT_DIR / "special_tokens_map.json").read_bytes())
    shuffled, tok = NTv2Tokenizer.from_dir(tmp_path), NTv2Tokenizer.default()
    assert shuffled.vocab_hash != tok.vocab_hash
    hf = EsmTokenizer(vocab_file=str(tmp_path / "vocab.txt"), eos_token=None)
    for text in random_sequences(200, seed=4):
        assert shuffled.encode(text).tolist() == hf_normalised(hf, text)
        assert [shuffled.vocab[i] for i in shuffled.encode(text)] == [tok.vocab[i] for i in tok.encode(text)]


def test_batch_encode_matches_hf_padding(hf, tok):
    seqs = [alphabet.decode(alphabet.encode(s)) for s in random_sequences(64, seed=5)]
    ours = tok.batch_encode(seqs)
    theirs = hf(seqs, padding=True)
    assert ours["input_ids"].tolist() == theirs["input_ids"]
    assert ours["attention_mask"].tolist() == theirs["attention_mask"]
    cut = tok.batch_encode(seqs, max_length=5)
    theirs = hf(seqs, padding=True, truncation=True, max_length=5)
    assert cut["input_ids"].tolist() == theirs["input_ids"]
    assert cut["attention_mask"].tolist() == theirs["attention_mask"]


def test_shipped_files_are_the_real_ntv2_files(ntv2_dir):
    for name in ("vocab.txt", "special_tokens_map.json", "tokenizer_config.json"):
        assert (DEFAULT_DIR / name).read_bytes() == (ntv2_dir / name).read_bytes(), name


def test_rejects_non_nucleotide_codes(tok):
    with pytest.raises(ValueError, match="MASK/PAD"):
        tok.tokenize(np.array([0, alphabet.MASK], dtype=np.uint8))


def test_ids_spans_masks_and_inputs_bitwise_identical_to_before_the_tokenizer_families(tok, chr20):
    """sha256 of the k-mer path's outputs over 3000 chr20 windows (every length 1..1099, N runs), two
    views each, recorded with had at 5dbdfc8, before the teacher-agnostic tokenizers: the NT fast path
    and the grouping mask must not change by a bit."""
    text = chr20.read_text().split("\n", 1)[1].replace("\n", "")
    rng = np.random.default_rng(0)
    h = hashlib.sha256()
    for i in range(3000):
        length = int(rng.integers(1, 1100))
        start = int(rng.integers(0, len(text) - length))
        codes = alphabet.encode(text[start:start + length]).copy()
        for _ in range(int(rng.integers(0, 4))):
            s = int(rng.integers(0, length))
            codes[s:s + int(rng.integers(1, 20))] = alphabet.N
        ids, spans = tok.tokenize(codes)
        for view in (0, 1):
            masked, nt = grouping_mask(tok.maskable(ids), spans, codes.size, 0.15, 7, i, view)
            shown = tok.input_ids(np.where(masked, tok.mask_id, ids))
            for a in (ids, spans, masked, nt, shown):
                h.update(np.ascontiguousarray(a).tobytes())
    assert h.hexdigest() == "ee3f599405553e60451039ba0b3092ff020d5c2070c8689389b24348d617b96a"
