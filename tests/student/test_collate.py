"""collate_cache_items and span_mean against per-nucleotide loops over the raw cache items."""
from pathlib import Path

import numpy as np
import pytest
import torch
from fake_cache import FakeCache

from had.cache_store import CacheItem
from had.data.alphabet import MASK, PAD
from had.data.tokenizer_load import load_tokenizer
from had.student import collate_cache_items
from had.student.modeling_had import span_mean


DNABERT2 = Path(__file__).resolve().parents[2] / ".." / "shared" / "reference" / "dnabert2"


@pytest.fixture(params=["kmer", "bpe"])
def tok(request):
    """NTv2 6-mers (spans of 6 and 1), or DNABERT-2's BPE (spans of 1 to 32)."""
    if request.param == "kmer":
        return None
    if not DNABERT2.is_dir():
        pytest.skip(f"{DNABERT2} absent (the shared reference data is not mounted)")
    return load_tokenizer(DNABERT2)


def _ragged_items(tok=None):
    cache = FakeCache(n_items=3, window=50, n_fraction=0.1, seed=3, tok=tok)
    items = [cache[i] for i in range(3)]
    short = cache[1]  # a shorter window: the batch must pad it
    keep = short.spans[:, 0] + short.spans[:, 1] <= 31
    items[1] = CacheItem(short.nucleotides[:31], short.nt_mask[:31], short.spans[keep], short.token_masked[keep],
                         short.features[: int((~short.token_masked[keep]).sum())])
    return items


def test_collate_matches_item_by_item_reading(tok):
    items = _ragged_items(tok)
    batch = collate_cache_items(items)
    for b, it in enumerate(items):
        L = len(it.nucleotides)
        for t in range(batch["input_ids"].shape[1]):
            if t >= L:
                assert batch["input_ids"][b, t] == PAD and batch["attention_mask"][b, t] == 0
                continue
            masked = bool(it.nt_mask[t])
            assert batch["input_ids"][b, t] == (MASK if masked else it.nucleotides[t])
            assert batch["nt_mask"][b, t] == masked
        # visible tokens in order: token j covers spans[j]; targets row j is its feature
        vis = 0
        expected_token = np.full(batch["nt_token"].shape[1], -1)
        for (start, length), masked in zip(it.spans, it.token_masked):
            if not masked:
                expected_token[start : start + length] = vis
                np.testing.assert_array_equal(batch["targets"][b, vis].numpy(), it.features[vis])
                vis += 1
        np.testing.assert_array_equal(batch["nt_token"][b].numpy(), expected_token)
        assert batch["target_mask"][b].sum() == vis == len(it.features)
        labels = batch["masked_labels"][b]
        positions = batch["masked_positions"][b][labels != -100].numpy()
        np.testing.assert_array_equal(positions, np.flatnonzero(it.nt_mask))
        np.testing.assert_array_equal(labels[labels != -100].numpy(), it.nucleotides[positions])


def test_span_mean_matches_loop(tok):
    batch = collate_cache_items(_ragged_items(tok))
    h = torch.randn(*batch["nt_token"].shape, 5, dtype=torch.float64)
    n = batch["targets"].shape[1]
    got = span_mean(h, batch["nt_token"], n)
    for b in range(h.shape[0]):
        for j in range(n):
            where = batch["nt_token"][b] == j
            want = h[b][where].mean(0) if where.any() else torch.zeros(5, dtype=h.dtype)
            torch.testing.assert_close(got[b, j], want)
