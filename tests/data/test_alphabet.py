import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from had.data import alphabet

COMPLEMENT = {"A": "T", "C": "G", "G": "C", "T": "A", "N": "N"}


def reference_encode(text: str) -> list[int]:
    return ["ACGT".index(ch.upper()) if ch.upper() in "ACGT" else alphabet.N for ch in text]


def test_ids_match_contract():
    assert (alphabet.A, alphabet.C, alphabet.G, alphabet.T, alphabet.N) == (0, 1, 2, 3, 4)
    assert (alphabet.MASK, alphabet.PAD, alphabet.NUC_VOCAB_SIZE) == (5, 6, 7)


@given(st.text(alphabet=st.characters(max_codepoint=300), max_size=200))
def test_encode_matches_per_character_rule(text):
    codes = alphabet.encode(text)
    assert codes.dtype == np.uint8
    assert codes.tolist() == reference_encode(text)


def test_encode_accepts_bytes_and_byte_arrays():
    raw = b"acgtRYKMSWBDHVn-."
    expected = alphabet.encode(raw.decode())
    assert np.array_equal(alphabet.encode(raw), expected)
    assert np.array_equal(alphabet.encode(np.frombuffer(raw, dtype=np.uint8)), expected)


@given(st.text(alphabet="ACGTN", max_size=100))
def test_decode_inverts_encode_and_reverse_complement_is_an_involution(text):
    codes = alphabet.encode(text)
    assert alphabet.decode(codes) == text
    rc = alphabet.reverse_complement(codes)
    assert alphabet.decode(rc) == "".join(COMPLEMENT[ch] for ch in reversed(text))
    assert np.array_equal(alphabet.reverse_complement(rc), codes)


def test_reverse_complement_works_on_batches_and_keeps_special_ids():
    batch = np.array([[0, 1, 5, 6], [4, 3, 2, 2]], dtype=np.uint8)
    rc = alphabet.reverse_complement(batch)
    for row, rc_row in zip(batch, rc):
        assert np.array_equal(rc_row, alphabet.reverse_complement(row))
    assert alphabet.decode(rc[0]) == "-?GT"
