"""pad_rows, the one padding of id rows (student nucleotides, teacher tokens), against torch's pad_sequence."""
import numpy as np
import pytest
import torch
from torch.nn.utils.rnn import pad_sequence

from had.data.padding import pad_rows


@pytest.mark.parametrize("side", ["right", "left"])
def test_pad_rows_equals_pad_sequence(side):
    rng = np.random.default_rng(0)
    rows = [rng.integers(0, 9, n) for n in (5, 1, 7, 7, 3)]
    ids, mask = pad_rows(rows, pad_id=-3, side=side)
    flip = (lambda t: t.flip(-1)) if side == "left" else (lambda t: t)
    want = flip(pad_sequence([flip(torch.from_numpy(r)) for r in rows], batch_first=True, padding_value=-3))
    want_mask = flip(pad_sequence([torch.ones(len(r), dtype=torch.int64) for r in rows], batch_first=True))
    assert ids.dtype == mask.dtype == np.int64
    np.testing.assert_array_equal(ids, want.numpy())
    np.testing.assert_array_equal(mask, want_mask.numpy())


def test_no_rows_is_an_empty_batch():
    ids, mask = pad_rows([], pad_id=0)
    assert ids.shape == mask.shape == (0, 0)
