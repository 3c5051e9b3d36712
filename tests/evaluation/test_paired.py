"""The paired bootstrap over pretraining seeds, against hand computations on small tables."""
import itertools

import numpy as np
import pytest

from had.evaluation.paired import paired_difference, task_means

# {seed: {task: metric}} of two models pretrained with the same seeds
A = {0: {"t1": 0.6, "t2": 0.4}, 1: {"t1": 0.7, "t2": 0.5}, 2: {"t1": 0.5, "t2": 0.5}}
B = {0: {"t1": 0.5, "t2": 0.3}, 1: {"t1": 0.4, "t2": 0.4}, 2: {"t1": 0.55, "t2": 0.45}, 3: {"t1": 0.9, "t2": 0.9}}


def test_three_seeds_by_hand():
    # per seed, tasks averaged: A 0.5, 0.6, 0.5; B 0.4, 0.4, 0.5 (seed 3: B only, unpaired, left out)
    assert task_means(A) == pytest.approx({0: 0.5, 1: 0.6, 2: 0.5})
    diff = paired_difference(task_means(A), task_means(B))
    assert diff.seeds == [0, 1, 2] and diff.diffs == pytest.approx([0.1, 0.2, 0.0])
    assert diff.mean == pytest.approx(0.1)
    # A resample of 3 seeds is all one seed with probability 1/27 = 3.7 % > 2.5 %: the 95 % interval's
    # ends are the smallest and the largest difference, 0.0 and 0.2. Its lower end is not above 0.
    assert (diff.low, diff.high) == pytest.approx((0.0, 0.2))
    assert diff.verdict == "does not hold (interval includes 0)"


def test_two_seeds_by_hand_and_the_verdicts():
    diff = paired_difference({0: 0.5, 1: 0.7}, {0: 0.4, 1: 0.4})  # differences 0.1 and 0.3
    assert (diff.mean, diff.low, diff.high) == pytest.approx((0.2, 0.1, 0.3)) and diff.verdict == "holds"
    assert paired_difference({0: 0.4, 1: 0.4}, {0: 0.5, 1: 0.7}).verdict == "reversed (interval below 0)"
    assert paired_difference({0: 0.9}, {0: 0.1}).verdict.startswith("undetermined")


def test_five_seeds_match_the_exact_bootstrap_distribution():
    d = np.array([0.03, -0.01, 0.05, 0.02, 0.04])
    diff = paired_difference(dict(enumerate(d)), dict(enumerate(np.zeros(5))))
    exact = np.sort([np.mean(c) for c in itertools.product(d, repeat=5)])  # all 5^5 resamples, equally likely
    assert diff.low == pytest.approx(np.quantile(exact, 0.025), abs=2e-3)
    assert diff.high == pytest.approx(np.quantile(exact, 0.975), abs=2e-3)
    assert diff.mean == pytest.approx(d.mean())
    again = paired_difference(dict(enumerate(d)), dict(enumerate(np.zeros(5))))
    assert (again.low, again.high) == (diff.low, diff.high)  # deterministic
