"""The linear-probe protocol: what a frozen encoder's features alone tell about a task.

For every task x seed (no learning-rate grid):
1. The splits of fine-tuning (`finetune.prepare`: `max_train_samples`, `max_length`; the validation
   rows are the seed's random `val_fraction` of train, or GUE's dev split).
2. Features: the frozen encoder's last hidden states, mean-pooled over real tokens
   (attention_mask == 1, the pooling of the fine-tuning head), fp32 [N, hidden]; computed once
   per task and backbone (`task_features`).
3. Standardised with the mean and standard deviation of the training rows.
4. A scikit-learn LogisticRegression (lbfgs, L2) for every C of C_GRID on the training rows;
   the C with the best validation metric is kept (the smallest C on ties: the most regularised).
5. That model's test metric (the same whole-split metric as fine-tuning).
A run is deterministic: its result depends on the features, the seed's split and C_GRID only.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from had.evaluation.backbones import Backbone, mean_pool
from had.evaluation.finetune import Encoded, PreparedTask, train_val_split
from had.evaluation.metrics import score

C_GRID = (1e-3, 1e-2, 1e-1, 1.0, 10.0)  # inverse L2 strength, chosen on validation
MAX_ITER = 2000


@dataclass
class Features:
    """A split's pooled features float32 [N, hidden] and labels int64 [N]."""

    x: np.ndarray
    y: np.ndarray

    def rows(self, index: np.ndarray) -> Features:
        return Features(self.x[index], self.y[index])


@dataclass
class TaskFeatures:
    """A prepared task as frozen-encoder features; `val` is None when it comes from a split of train."""

    name: str
    metric: str
    n_classes: int
    train: Features
    val: Features | None
    test: Features


def task_features(backbone: Backbone, data: PreparedTask, batch_size: int, device: torch.device) -> TaskFeatures:
    encoder = backbone.encoder.to(device).eval()
    try:
        pooled = {name: features(encoder, split, batch_size, device) if split is not None else None
                  for name, split in (("train", data.train), ("val", data.val), ("test", data.test))}
    finally:
        backbone.encoder.to("cpu")  # the backbone stays pristine on CPU (fine-tuning copies it from there)
    return TaskFeatures(data.task.name, data.metric, data.task.n_classes, **pooled)


@torch.no_grad()
def features(encoder: torch.nn.Module, split: Encoded, batch_size: int, device: torch.device) -> Features:
    """Mean-pooled last hidden states of every row of `split`, in order."""
    out = []
    for index in torch.arange(len(split)).split(batch_size):
        input_ids, attention_mask, _ = split.batch(index, device)
        h = encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        out.append(mean_pool(h, attention_mask).float().cpu())
    return Features(torch.cat(out).numpy(), split.labels.numpy())


def probe(data: TaskFeatures, seed: int, val_fraction: float) -> dict:
    """One run of the protocol; returns its result row (`had.evaluation.results.SCHEMA`, lr None)."""
    start = time.perf_counter()
    train, val = data.train, data.val
    if val is None:
        train_rows, val_rows = (r.numpy() for r in train_val_split(len(train.y), val_fraction, seed))
        train, val = train.rows(train_rows), train.rows(val_rows)
    scaler = StandardScaler().fit(train.x)
    x_train, x_val, x_test = (scaler.transform(s.x) for s in (train, val, data.test))
    best_val, best_c, best = -np.inf, None, None
    for c in C_GRID:
        model = LogisticRegression(C=c, max_iter=MAX_ITER).fit(x_train, train.y)
        val_score = score(data.metric, val.y, model.predict(x_val), data.n_classes)
        if val_score > best_val:
            best_val, best_c, best = val_score, c, model
    test_score = score(data.metric, data.test.y, best.predict(x_test), data.n_classes)
    return {
        "task": data.name, "lr": None, "seed": int(seed), "metric": data.metric, "val_metric": float(best_val),
        "test_metric": test_score, "epochs": 0, "best_epoch": 0, "n_train": len(train.y), "n_val": len(val.y),
        "n_test": len(data.test.y), "seconds": time.perf_counter() - start, "probe_c": best_c,
    }
