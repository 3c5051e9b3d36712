"""The fine-tuning protocol (Caduceus-compatible): one run = one (task, learning rate, seed).
(`had eval --protocol probe`: the linear probe of `had.evaluation.probe` instead.)

For every task x lr in the grid x seed:
1. Validation split: a random 90/10 split of train drawn from the seed alone (so every lr
   of a seed sees the same split); GUE uses its given dev split instead.
   `max_train_samples` first keeps a fixed random subset of train (same for every run).
2. Full fine-tuning of the pretrained encoder plus a fresh linear head on the mean of its
   outputs over real tokens; every run starts from the same pretrained weights.
3. A fixed number of epochs (NT 20, GB 10, GUE 10; `eval.epochs` overrides), AdamW
   (weight decay on matrices only), learning rate with linear warmup over the first
   `warmup_fraction` of the steps then cosine decay to 0, batches reshuffled each epoch.
4. After each epoch the validation metric is computed; the weights of the best epoch (first
   one on ties) are kept: early stopping without patience.
5. Those weights are scored once on test. The lr reported for a task is then chosen by the
   mean validation metric over seeds (`had.evaluation.report`), never by test.
Sequences longer than `max_length` nucleotides are cut to their first `max_length`; each
batch is padded on the right to its longest member. Metrics: `had.evaluation.metrics`.
A run is deterministic given its (task, lr, seed) and the protocol: runs can be done in any
order, in other processes, or again after a crash, with the same result.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from had.data.benchmarks import BenchmarkTask, Split
from had.errors import HadError
from had.evaluation.backbones import Backbone, SequenceClassifier
from had.evaluation.metrics import metric_for, score
from had.optim import decay_groups
from had.runtime import autocast
from had.schedules import warmup_cosine

DEFAULT_EPOCHS = {"nt": 20, "gb": 10, "gue": 10}


@dataclass(frozen=True)
class Protocol:
    """The settings that define a run's result (stored with every result row)."""

    epochs: int  # 0 for the probe
    kind: str = "finetune"  # finetune | probe (`had.evaluation.probe`)
    batch_size: int = 32
    max_length: int | None = None  # nucleotides; None = no cut
    val_fraction: float = 0.1
    warmup_fraction: float = 0.1
    weight_decay: float = 0.01
    max_train_samples: int | None = None

    @classmethod
    def from_eval_config(cls, cfg, benchmark: str) -> Protocol:
        names = {f.name for f in dataclasses.fields(cls)} - {"epochs", "kind"}
        epochs = 0 if cfg.protocol == "probe" else cfg.epochs or DEFAULT_EPOCHS[benchmark]
        return cls(epochs=epochs, kind=cfg.protocol, **{n: getattr(cfg, n) for n in names})


@dataclass
class Encoded:
    """A split as model input: input_ids, attention_mask int64 [N, T], labels int64 [N]."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, index: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, ...]:
        """Rows `index`, cut to their longest member's length, on `device`."""
        mask = self.attention_mask[index]
        width = int(mask.sum(1).max())
        return (self.input_ids[index, :width].to(device), mask[:, :width].to(device), self.labels[index].to(device))


@dataclass
class PreparedTask:
    """A task tokenized once for a backbone; `val` is None when it comes from a split of train."""

    task: BenchmarkTask
    metric: str
    train: Encoded
    val: Encoded | None
    test: Encoded


def prepare(task: BenchmarkTask, backbone: Backbone, protocol: Protocol) -> PreparedTask:
    train = task.train
    if protocol.max_train_samples is not None and len(train) > protocol.max_train_samples:
        keep = np.sort(np.random.default_rng(0).permutation(len(train))[: protocol.max_train_samples])
        train = Split([train.sequences[i] for i in keep], train.labels[keep], train.source)
    if task.dev is None and len(train) < 2:
        raise HadError(f"{train.source}: {len(train)} training row(s) and no dev split: at least 2 are needed "
                       "to hold out validation rows (eval.max_train_samples)")

    def encode(split: Split) -> Encoded:
        cut = [s[: protocol.max_length] for s in split.sequences] if protocol.max_length else split.sequences
        enc = backbone.encode(cut)
        width = enc["input_ids"].shape[1]
        if backbone.max_tokens is not None and width > backbone.max_tokens:
            raise HadError(f"{split.source}: sequences of {width} tokens, but {backbone.name} takes at most "
                           f"{backbone.max_tokens}: set eval.max_length (nucleotides) to cut them")
        return Encoded(torch.from_numpy(enc["input_ids"]), torch.from_numpy(enc["attention_mask"]),
                       torch.from_numpy(split.labels))

    return PreparedTask(
        task=task, metric=metric_for(task.benchmark, task.name), train=encode(train),
        val=encode(task.dev) if task.dev is not None else None, test=encode(task.test),
    )


def train_val_split(n: int, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded random split of range(n): (train rows, val rows), at least one row each."""
    order = torch.from_numpy(np.random.default_rng(seed).permutation(n))
    n_val = min(max(1, round(val_fraction * n)), n - 1)
    return order[n_val:], order[:n_val]


def finetune(backbone: Backbone, data: PreparedTask, lr: float, seed: int, protocol: Protocol,
             device: torch.device) -> dict:
    """One run of the protocol; returns its result row (see `had.evaluation.results.SCHEMA`)."""
    start = time.perf_counter()
    train, val = data.train, data.val
    if val is None:
        train_rows, val_rows = train_val_split(len(train), protocol.val_fraction, seed)
        train, val = _subset(train, train_rows), _subset(train, val_rows)
    torch.manual_seed(seed)  # dropout, if the encoder has any
    order = torch.Generator().manual_seed(seed)
    n_classes = data.task.n_classes
    model = SequenceClassifier(backbone.fresh_encoder(), backbone.hidden_size, n_classes)
    _init_head(model.head, seed)
    model.to(device)
    optimizer = torch.optim.AdamW(decay_groups(model, protocol.weight_decay), lr=lr)
    steps_per_epoch = math.ceil(len(train) / protocol.batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(steps_per_epoch * protocol.epochs, protocol.warmup_fraction))

    best_val, best_epoch, best_state = -math.inf, 0, None
    for epoch in range(1, protocol.epochs + 1):
        model.train()
        for index in torch.randperm(len(train), generator=order).split(protocol.batch_size):
            input_ids, attention_mask, labels = train.batch(index, device)
            with autocast("auto", device):
                logits = model(input_ids, attention_mask)
            loss = F.cross_entropy(logits.float(), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
        val_score = evaluate(model, val, data.metric, n_classes, protocol.batch_size, device)
        if val_score > best_val:
            best_val, best_epoch = val_score, epoch
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    test_score = evaluate(model, data.test, data.metric, n_classes, protocol.batch_size, device)
    return {
        "task": data.task.name, "lr": float(lr), "seed": int(seed), "metric": data.metric,
        "val_metric": best_val, "test_metric": test_score, "epochs": protocol.epochs, "best_epoch": best_epoch,
        "n_train": len(train), "n_val": len(val), "n_test": len(data.test),
        "seconds": time.perf_counter() - start,
    }


@torch.no_grad()
def predict(model: torch.nn.Module, split: Encoded, batch_size: int, device: torch.device) -> np.ndarray:
    """Predicted class of every row of `split`, in order: int64 [N]."""
    model.eval()
    out = []
    for index in torch.arange(len(split)).split(batch_size):
        input_ids, attention_mask, _ = split.batch(index, device)
        with autocast("auto", device):
            out.append(model(input_ids, attention_mask).argmax(-1).cpu())
    return torch.cat(out).numpy()


def evaluate(model: torch.nn.Module, split: Encoded, metric: str, n_classes: int, batch_size: int,
             device: torch.device) -> float:
    """`metric` over the whole split's predictions at once (never a mean over batches)."""
    return score(metric, split.labels.numpy(), predict(model, split, batch_size, device), n_classes)


def _init_head(head: torch.nn.Linear, seed: int) -> None:
    """nn.Linear's default init, drawn from a generator of the run's own: runs sharing a process
    (Dask threads) cannot disturb each other's initialisation through the global RNG."""
    g = torch.Generator().manual_seed(seed)
    bound = 1 / math.sqrt(head.in_features)
    with torch.no_grad():
        head.weight.uniform_(-bound, bound, generator=g)
        head.bias.uniform_(-bound, bound, generator=g)


def _subset(split: Encoded, rows: torch.Tensor) -> Encoded:
    return Encoded(split.input_ids[rows], split.attention_mask[rows], split.labels[rows])

