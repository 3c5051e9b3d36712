"""Grouping mask: checked against the contract re-derived from scratch (spans, rng draw)."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from had.data import alphabet
from had.data.masking import grouping_mask
from had.data.tokenizer import NTv2Tokenizer

TOK = NTv2Tokenizer.default()


def window(seed: int, length: int, n_rate: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 4, length).astype(np.uint8)
    codes[rng.random(length) < n_rate] = alphabet.N
    return codes


windows = st.builds(window, st.integers(0, 2**31), st.integers(0, 400), st.sampled_from([0.0, 0.01, 0.1, 0.5]))


@settings(max_examples=200, deadline=None)
@given(codes=windows, ratio=st.floats(0.0, 1.0), seed=st.integers(0, 2**32), window_id=st.integers(0, 10**9),
       view_id=st.integers(0, 7))
def test_mask_groups_whole_kmers_at_the_requested_ratio(codes, ratio, seed, window_id, view_id):
    ids, spans = TOK.tokenize(codes)
    token_masked, nt_mask = grouping_mask(TOK.maskable(ids), spans, codes.size, ratio, seed, window_id, view_id)
    assert token_masked.shape == ids.shape and nt_mask.shape == codes.shape

    kmer = TOK.is_kmer(ids)
    assert not (token_masked & ~kmer).any()  # only 6-mers (never N, singles, or CLS, which is absent)
    n_kmers = int(kmer.sum())
    expected = max(round(ratio * n_kmers), 1) if ratio > 0 and n_kmers else 0
    assert token_masked.sum() == expected

    covered = np.zeros(codes.size, dtype=bool)
    for (start, length), masked in zip(spans, token_masked):
        token_nts = nt_mask[start : start + length]
        assert token_nts.all() or not token_nts.any()  # never half a token
        assert token_nts.all() == masked
        covered[start : start + length] = True
    assert covered.all()


def test_mask_is_a_function_of_seed_window_and_view_only():
    codes = window(0, 1024, 0.01)
    ids, spans = TOK.tokenize(codes)
    keys = [(s, w, v) for s in (0, 1) for w in (0, 1, 12345) for v in (0, 1, 2)]
    first = {k: grouping_mask(TOK.maskable(ids), spans, codes.size, 0.15, *k) for k in keys}
    for k in reversed(keys):  # another call order, interleaved with other draws
        grouping_mask(TOK.maskable(ids), spans, codes.size, 0.5, 99, 7, 3)
        again = grouping_mask(TOK.maskable(ids), spans, codes.size, 0.15, *k)
        assert all(np.array_equal(a, b) for a, b in zip(first[k], again))
    distinct = {first[k][0].tobytes() for k in keys}
    assert len(distinct) == len(keys)


def test_mask_draw_follows_the_contract_rng():
    codes = window(1, 512, 0.02)
    ids, spans = TOK.tokenize(codes)
    token_masked, _ = grouping_mask(TOK.maskable(ids), spans, codes.size, 0.15, 3, 41, 2)
    kmers = np.flatnonzero(TOK.is_kmer(ids))
    rng = np.random.default_rng([3, 41, 2])
    expected = kmers[rng.choice(kmers.size, size=round(0.15 * kmers.size), replace=False)]
    assert np.array_equal(np.flatnonzero(token_masked), np.sort(expected))


def test_all_n_window_masks_nothing():
    codes = np.full(64, alphabet.N, dtype=np.uint8)
    ids, spans = TOK.tokenize(codes)
    token_masked, nt_mask = grouping_mask(TOK.maskable(ids), spans, codes.size, 0.15, 0, 0, 0)
    assert not token_masked.any() and not nt_mask.any()
