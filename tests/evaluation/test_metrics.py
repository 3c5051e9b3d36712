"""Metrics: the papers' metric per task, scored by scikit-learn over the whole split."""
import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from had.evaluation.finetune import Encoded, evaluate, predict
from had.evaluation.metrics import metric_for, score


@pytest.mark.parametrize("benchmark, task, metric", [
    ("nt", "H3K4me3", "mcc"), ("nt", "H4ac", "mcc"), ("nt", "enhancers", "mcc"), ("nt", "enhancers_types", "mcc"),
    ("nt", "promoter_tata", "f1"), ("nt", "splice_sites_acceptors", "f1"), ("nt", "splice_sites_donors", "f1"),
    ("nt", "splice_sites_all", "accuracy"), ("gb", "human_enhancers_cohn", "accuracy"),
    ("gb", "demo_human_or_worm", "accuracy"), ("gue", "prom/prom_core_tata", "mcc"),
])
def test_metric_per_task_follows_the_papers(benchmark, task, metric):
    assert metric_for(benchmark, task) == metric


def test_score_is_sklearn_binary_and_macro():
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 2, 200), rng.integers(0, 2, 200)
    assert score("f1", y, p, 2) == f1_score(y, p)
    assert score("mcc", y, p, 2) == matthews_corrcoef(y, p)
    y3, p3 = rng.integers(0, 3, 200), rng.integers(0, 3, 200)
    assert score("f1", y3, p3, 3) == f1_score(y3, p3, average="macro")
    assert score("accuracy", y3, p3, 3) == accuracy_score(y3, p3)


class _FirstTokenClassifier(torch.nn.Module):
    """Predicts class 1 when the first token id is odd: known predictions, no training."""

    def forward(self, input_ids, attention_mask):
        odd = (input_ids[:, 0] % 2).float()
        return torch.stack([1 - odd, odd], dim=-1)


@pytest.mark.parametrize("metric", ["mcc", "f1", "accuracy"])
def test_evaluate_scores_concatenated_predictions_not_batch_means(metric):
    # An unshuffled test set sorted by label: every batch holds one class, so per-batch MCC/F1 are degenerate.
    rng = np.random.default_rng(1)
    labels = np.repeat([0, 1], 40)
    first = np.where(rng.random(80) < 0.8, labels, 1 - labels) + 2 * rng.integers(1, 5, 80)  # 80% right
    ids = torch.from_numpy(np.stack([first, np.full(80, 9)], axis=1))
    split = Encoded(ids, torch.ones_like(ids), torch.from_numpy(labels))
    model, device = _FirstTokenClassifier(), torch.device("cpu")
    preds = predict(model, split, batch_size=16, device=device)
    np.testing.assert_array_equal(preds, first % 2)
    whole = {"mcc": matthews_corrcoef, "f1": f1_score, "accuracy": accuracy_score}[metric](labels, first % 2)
    assert evaluate(model, split, metric, 2, batch_size=16, device=device) == pytest.approx(whole, abs=1e-12)
    batch_mean = np.mean([score(metric, labels[i:i + 16], preds[i:i + 16], 2) for i in range(0, 80, 16)])
    if metric != "accuracy":  # accuracy is a mean of per-example terms: equal batches agree
        assert abs(batch_mean - whole) > 0.05
