"""Teacher pretraining probes behind the Science section of benchmarks/RESULTS.md.

    # seconds per pretraining step of the CPU preset's teacher on a synthetic genome; run it in two
    # checkouts (e.g. a `git worktree` of an older commit) to compare them on the same machine
    PYTHONPATH=. python benchmarks/teacher_probe.py speed --steps 60
    # held-out MLM loss and accuracy of a pretrained teacher inside soft-masked repeats vs elsewhere
    PYTHONPATH=. python benchmarks/teacher_probe.py repeats runs/science-syn0/data/genome.fa runs/science-syn0/teacher
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from had.data import synthetic
from had.data.masking import sample_tokens
from had.data.tokenizer import NTv2Tokenizer
from had.teacher_pretrain import TeacherPretrainConfig, pretrain_teacher


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
    lut = np.full(256, 4, dtype=np.uint8)
    for code, base in enumerate(b"ACGT"):
        lut[base] = lut[base + 32] = code
    rng = np.random.default_rng(0)
    scores: dict[bool, list[tuple[float, bool]]] = {True: [], False: []}
    for text in _contigs(fasta):
        raw = np.frombuffer(text, dtype=np.uint8)
        codes, lower = lut[raw], raw >= ord("a")
        for start in range(round(raw.size * (1 - tail)), raw.size - window + 1, window):
            w = codes[start : start + window]
            if (w == 4).any():
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


def _contigs(fasta: Path) -> list[bytes]:
    """Sequence bytes of every record, case kept (had's reader upper-cases)."""
    records, current = [], []
    for line in fasta.read_bytes().splitlines():
        if line.startswith(b">"):
            records += [b"".join(current)] if current else []
            current = []
        else:
            current.append(line.strip())
    return records + ([b"".join(current)] if current else [])


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
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.probe == "speed":
        speed(args.steps, args.seed)
    else:
        repeats(args.fasta, args.teacher, args.window, args.tail)


if __name__ == "__main__":
    main()
