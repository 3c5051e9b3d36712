"""What a linear probe reads from each layer of a teacher, beside knowledge-free features.

    PYTHONPATH=. python benchmarks/teacher_layers.py runs/science-syn23 [--teacher DIR ...]

For each task of a `had experiment --data synthetic` run (`data/tasks`) and each teacher (default:
the run's own): the probe protocol of `had eval --protocol probe` (`had.evaluation.probe.probe`,
mean over 3 validation splits) on the mean-pooled hidden states of every layer (0 = embeddings);
beside it the run's random-init student (seed 0) and overlapping k-mer counts (k = 3, 4, 5) of the
raw sequence, which need no pretraining at all. Test metric: MCC for every task (so that rows
compare; `had eval` reports F1 for promoter_tata and splice_sites_donors).
"""
from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
import torch

from had.data.benchmarks import discover_tasks, load_task
from had.evaluation.backbones import load_backbone, mean_pool
from had.evaluation.finetune import Encoded, Protocol, prepare
from had.evaluation.probe import Features, TaskFeatures, probe

SEEDS = (0, 1, 2)


@torch.no_grad()
def layer_features(encoder: torch.nn.Module, split: Encoded) -> list[np.ndarray]:
    """Mean-pooled hidden states of every layer (or the last only, when the encoder gives one), [N, D] each."""
    per_batch = []
    for index in torch.arange(len(split)).split(64):
        input_ids, attention_mask, _ = split.batch(index, torch.device("cpu"))
        out = encoder(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        states = out.hidden_states or (out.last_hidden_state,)
        per_batch.append([mean_pool(h, attention_mask).float() for h in states])
    return [torch.cat(layer).numpy() for layer in zip(*per_batch)]


def kmer_counts(sequences: list[str], k: int) -> np.ndarray:
    """Overlapping k-mer counts float32 [N, 4^k] (k-mers with other letters skipped)."""
    index = {"".join(p): i for i, p in enumerate(itertools.product("ACGT", repeat=k))}
    out = np.zeros((len(sequences), 4**k), dtype=np.float32)
    for row, seq in enumerate(sequences):
        for at in range(len(seq) - k + 1):
            j = index.get(seq[at : at + k].upper())
            if j is not None:
                out[row, j] += 1
    return out


def mean_probe(name: str, n_classes: int, train: Features, test: Features) -> float:
    data = TaskFeatures(name, "mcc", n_classes, train, None, test)
    return float(np.mean([probe(data, seed, 0.1)["test_metric"] for seed in SEEDS]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a `had experiment --data synthetic` output folder")
    parser.add_argument("--teacher", type=Path, nargs="+", default=None, help="default: <run>/teacher")
    args = parser.parse_args()
    root = args.run / "data" / "tasks"
    models = {str(p): p for p in args.teacher or [args.run / "teacher"]}
    models["random init student"] = args.run / "students" / "random_init" / "seed0" / "model"
    for name in discover_tasks("nt", root):
        task = load_task("nt", root, name)
        cells = []
        for label, path in models.items():
            backbone = load_backbone(str(path))
            data = prepare(task, backbone, Protocol(epochs=0, kind="probe"))
            train, test = layer_features(backbone.encoder.eval(), data.train), layer_features(backbone.encoder.eval(), data.test)
            y_train, y_test = data.train.labels.numpy(), data.test.labels.numpy()
            scores = [mean_probe(name, task.n_classes, Features(a, y_train), Features(b, y_test)) for a, b in zip(train, test)]
            cells.append(f"{label}: " + " ".join(f"{s:.3f}" for s in scores))
        y_train, y_test = task.train.labels, task.test.labels
        for k in (3, 4, 5):
            score = mean_probe(name, task.n_classes, Features(kmer_counts(task.train.sequences, k), y_train),
                               Features(kmer_counts(task.test.sequences, k), y_test))
            cells.append(f"{k}-mer counts: {score:.3f}")
        print(f"{name} | " + " | ".join(cells), flush=True)


if __name__ == "__main__":
    main()
