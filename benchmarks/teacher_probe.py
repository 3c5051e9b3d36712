"""Teacher pretraining probes behind the Science section of benchmarks/RESULTS.md.

    # seconds per pretraining step of the CPU preset's teacher on a synthetic genome; run it in two
    # checkouts (e.g. a `git worktree` of an older commit) to compare them on the same machine
    PYTHONPATH=. python benchmarks/teacher_probe.py speed --steps 60
    # held-out MLM loss and accuracy of a pretrained teacher inside soft-masked repeats vs elsewhere
    PYTHONPATH=. python benchmarks/teacher_probe.py repeats runs/science-syn0/data/genome.fa runs/science-syn0/teacher
    # on the held-out contig of a synthetic `had experiment` run: the teacher's loss at planted motif sites
    # (and at unique DNA) against the 6-mer marginal of the training contigs
    PYTHONPATH=. python benchmarks/teacher_probe.py motifs runs/science-syn27 [--teacher DIR]
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from had.data import alphabet, synthetic
from had.data.masking import sample_tokens
from had.data.tokenizer import NTv2Tokenizer
from had.teacher_pretrain import TeacherPretrainConfig, _read_soft_masked, pretrain_teacher


def speed(steps: int, seed: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        fasta = Path(tmp) / "genome.fa"
        synthetic.write_genome(fasta, seed=seed, n_contigs=2, contig_length=200_000)
        cfg = TeacherPretrainConfig(hidden_size=128, num_layers=4, num_heads=4, window=258, batch_size=64,
                                    steps=steps, lr=1e-3, log_every=max(1, steps // 3))
        report = pretrain_teacher(fasta, Path(tmp) / "teacher", cfg)
    print(f"{report.seconds / steps:.3f} s/step ({steps} steps x {cfg.batch_size} windows of {cfg.window} nt, "
          f"{torch.get_num_threads()} threads)")


def repeats(fasta: Path, teacher_dir: Path, window: int, tail: float) -> None:
    """Masked-6-mer loss/accuracy on N-free windows tiled over the held-out tail of every contig, split by
    whether the masked token lies mostly in lower case (the generator soft-masks its repeats)."""
    from transformers import EsmForMaskedLM

    tok = NTv2Tokenizer.default()
    model = EsmForMaskedLM.from_pretrained(teacher_dir).eval()
    rng = np.random.default_rng(0)
    scores: dict[bool, list[tuple[float, bool]]] = {True: [], False: []}
    for codes, lower in _read_soft_masked(fasta):
        for start in range(round(codes.size * (1 - tail)), codes.size - window + 1, window):
            w = codes[start : start + window]
            if (w == alphabet.N).any():
                continue
            ids, spans = tok.tokenize(w)
            ids = np.concatenate([[tok.cls_id], ids])
            masked = sample_tokens(tok.is_kmer(ids), 0.15, rng)
            with torch.no_grad():
                logits = model(input_ids=torch.from_numpy(np.where(masked, tok.mask_id, ids))[None]).logits[0]
            logp = torch.log_softmax(logits.float(), -1)
            for j in np.flatnonzero(masked):
                a, n = spans[j - 1]
                in_repeat = bool(lower[start + a : start + a + n].mean() > 0.5)
                scores[in_repeat].append((-float(logp[j, ids[j]]), bool(logp[j].argmax() == ids[j])))
    for in_repeat, rows in scores.items():
        loss, hit = np.array(rows).T if rows else (np.zeros(0), np.zeros(0))
        print(f"{'inside repeats' if in_repeat else 'elsewhere':15s} {len(rows):6d} masked tokens, "
              f"loss {loss.mean():.3f}, accuracy {hit.mean():.4f}")


def motifs(run: Path, teacher_dir: Path | None, window: int, per_kind: int) -> None:
    """One masked token over the centre of each planted site of the held-out (last) contig, in a window of
    `window` nt around it at a random offset: the teacher's cross-entropy, the 6-mer marginal's (overlapping
    6-mers of the training contigs, add-one) and the gain (marginal - teacher), nats; unique DNA (random
    tokens outside repeats, gaps and sites) as the control. Sites come from regenerating the run's genome."""
    import json
    import tempfile

    from transformers import EsmForMaskedLM

    settings = json.loads((run / "experiment.json").read_text())
    seed, exp = settings["seed"], settings["experiment"]
    fasta = run / "data" / "genome.fa"
    with tempfile.TemporaryDirectory() as tmp:
        elements = synthetic.write_genome(Path(tmp) / "g.fa", seed, exp["n_contigs"], exp["contig_length"],
                                          repeat_fraction=exp["repeat_fraction"])
        if (Path(tmp) / "g.fa").read_bytes() != fasta.read_bytes():
            raise SystemExit(f"{fasta}: not what this generator writes for seed {seed} (another had version?)")
    contigs = list(_read_soft_masked(fasta))
    codes, soft = contigs[-1]
    held_out = synthetic.contig_name(len(contigs) - 1)
    powers = 4 ** np.arange(5, -1, -1)
    counts = np.ones(4**6)
    for c, _ in contigs[:-1]:
        ok = np.lib.stride_tricks.sliding_window_view(c < 4, 6).all(axis=1)
        kmers = np.lib.stride_tricks.sliding_window_view(np.minimum(c, 3).astype(np.int64), 6) @ powers
        counts += np.bincount(kmers[ok], minlength=4**6)
    marginal = -np.log(counts / counts.sum())

    tok = NTv2Tokenizer.default()
    model = EsmForMaskedLM.from_pretrained(teacher_dir or run / "teacher").eval()
    rng = np.random.default_rng(0)

    def gains(jobs: list[tuple[int, int]]) -> np.ndarray:
        """(window start, token index >= 1) -> rows (teacher nll, marginal nll), float [n, 2]."""
        rows = []
        for start, j in jobs:
            ids = np.concatenate([[tok.cls_id], tok.tokenize(codes[start : start + window])[0]])
            target, ids[j] = ids[j], tok.mask_id
            with torch.no_grad():
                logits = model(input_ids=torch.from_numpy(ids)[None]).logits[0, j]
            kmer = codes[start + 6 * (j - 1) : start + 6 * j].astype(np.int64) @ powers
            rows.append((-float(torch.log_softmax(logits.float(), -1)[target]), marginal[kmer]))
        return np.array(rows)

    def job(centre: int) -> tuple[int, int] | None:
        start = centre - int(rng.integers(60, window - 60))
        ok = 0 <= start and start + window <= codes.size and not (codes[start : start + window] == alphabet.N).any()
        return (start, 1 + (centre - start) // 6) if ok else None

    sites: dict[str, list[tuple[int, int]]] = {}
    for e in elements:
        if e.contig == held_out and e.kind not in ("gene", "enhancer", "gap"):
            sites.setdefault(e.kind, [])
            if len(sites[e.kind]) < per_kind and (j := job((e.start + e.end) // 2)):
                sites[e.kind].append(j)
    busy = np.zeros(codes.size, dtype=bool)
    for e in elements:
        busy[e.start : e.end] |= e.contig == held_out
    unique = []
    while len(unique) < 600:
        centre = int(rng.integers(0, codes.size))
        if not (soft[centre - 6 : centre + 6].any() or busy[centre - 6 : centre + 6].any()) and (j := job(centre)):
            unique.append(j)
    print(f"held-out contig {held_out}; masked-token cross-entropy (nats): teacher, 6-mer marginal, gain")
    for kind, jobs in sorted(sites.items()) + [("unique DNA", unique)]:
        teacher, base = gains(jobs).mean(axis=0)
        print(f"{kind:12s} {len(jobs):4d} tokens  teacher {teacher:.3f}  marginal {base:.3f}  "
              f"gain {base - teacher:+.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="probe", required=True)
    p = sub.add_parser("speed", help="seconds per teacher pretraining step")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--seed", type=int, default=0, help="synthetic genome seed")
    p = sub.add_parser("repeats", help="held-out loss inside repeats vs elsewhere")
    p.add_argument("fasta", type=Path)
    p.add_argument("teacher", type=Path)
    p.add_argument("--window", type=int, default=258)
    p.add_argument("--tail", type=float, default=0.05, help="held-out fraction at the end of every contig")
    p = sub.add_parser("motifs", help="held-out loss at planted motif sites vs the 6-mer marginal")
    p.add_argument("run", type=Path, help="a `had experiment --data synthetic` output folder")
    p.add_argument("--teacher", type=Path, help="another teacher than the run's own")
    p.add_argument("--window", type=int, default=258)
    p.add_argument("--per-kind", type=int, default=300, help="sites measured per motif kind, at most")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.probe == "speed":
        speed(args.steps, args.seed)
    elif args.probe == "repeats":
        repeats(args.fasta, args.teacher, args.window, args.tail)
    else:
        motifs(args.run, args.teacher, args.window, args.per_kind)


if __name__ == "__main__":
    main()
