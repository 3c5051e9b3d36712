"""Pretrain a small NT-style teacher (6-mer ESM masked LM) on a genome FASTA.

The teacher the reproduction experiments distil: the architecture of `build_tiny_teacher`
(rotary ESM, pre-LN, NTv2's 4107-token vocabulary) scaled up, trained with NT's objective:
15% of the 6-mer tokens of each window are replaced by the mask token and predicted with
cross-entropy. Training windows are random N-free crops of the first (1 - val_fraction) of
every contig; MLM accuracy is measured on fixed N-free windows tiled over the held-out tail of
every contig, beside two chance levels (uniform over 6-mers, and always predicting the most
frequent training 6-mer). The result is a `save_pretrained` directory with the tokenizer
files, so `had.teacher.load_teacher` (and `had cache-teacher`, `had eval`) read it.

    report = pretrain_teacher("genome.fa", "runs/teacher", TeacherPretrainConfig(steps=300))
    report.val_accuracy, report.chance_majority      # e.g. 0.06 vs 0.004
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch

from had.data import alphabet
from had.data.fasta import fasta_fingerprint, read_fasta
from had.data.masking import sample_tokens
from had.data.tokenizer import DEFAULT_DIR as TOKENIZER_DIR
from had.data.tokenizer import NTv2Tokenizer
from had.errors import HadError
from had.runtime import resolve_device
from had.schedules import warmup_cosine
from had.teacher import TOKENIZER_FILES, build_tiny_teacher

REPORT = "pretrain.json"


@dataclass
class TeacherPretrainConfig:
    """Size and budget of the teacher; the defaults train in ~3 minutes on 2 CPU cores."""

    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    window: int = 510  # nucleotides per training sequence (85 6-mers)
    batch_size: int = 32
    steps: int = 400
    lr: float = 2e-3
    weight_decay: float = 0.01
    warmup_fraction: float = 0.05
    mask_ratio: float = 0.15
    val_fraction: float = 0.05  # tail of every contig held out for the MLM accuracy
    val_windows: int = 256
    log_every: int = 50
    seed: int = 0
    device: str = "cpu"  # auto | cpu | cuda | cuda:<index>


@dataclass
class TeacherPretrainReport:
    """What `pretrain.json` holds: the losses and the held-out MLM accuracy against chance."""

    parameters: int
    steps: int
    seconds: float
    first_loss: float  # mean training loss over the first log window
    last_loss: float  # ... and over the last one
    val_loss: float
    val_accuracy: float  # masked 6-mers predicted exactly, held-out windows
    chance_uniform: float  # 1 / 4096
    chance_majority: float  # frequency of the most common 6-mer in training windows
    unigram_loss: float  # held-out cross-entropy of predicting the training 6-mer frequencies (no context)
    config: dict
    fasta_fingerprint: str


def pretrain_teacher(fasta: str | Path, out_dir: str | Path, cfg: TeacherPretrainConfig) -> TeacherPretrainReport:
    """Train an ESM masked LM on `fasta`, save it to `out_dir`, write and return its report.

    A teacher already in `out_dir` whose report has the same config and FASTA fingerprint is reused.
    """
    from transformers import EsmForMaskedLM

    fingerprint = fasta_fingerprint(fasta)
    done = Path(out_dir) / REPORT
    old = json.loads(done.read_text()) if done.is_file() else {}
    current = old.keys() == {f.name for f in fields(TeacherPretrainReport)}  # written by this version
    if current and old["config"] == asdict(cfg) and old["fasta_fingerprint"] == fingerprint:
        print(f"teacher pretraining: reusing {out_dir} (same config and genome)", flush=True)
        return TeacherPretrainReport(**old)
    tok = NTv2Tokenizer.default()
    contigs = [codes for _, codes in read_fasta(fasta)]
    train_parts, val_parts = _split(contigs, cfg.val_fraction, cfg.window)
    starts = [_n_free_starts(p, cfg.window) for p in train_parts]
    val_windows = _tile(val_parts, cfg.window, cfg.val_windows)
    if not sum(s.size for s in starts) or not val_windows:
        raise HadError(f"{fasta}: contigs too short for N-free teacher windows of {cfg.window} nt "
                       f"with a {cfg.val_fraction:.0%} held-out tail")
    rng = np.random.default_rng([cfg.seed, 7])
    val = tok.batch_encode(val_windows)
    val_ids, val_attn = val["input_ids"], val["attention_mask"]
    val_mask = np.stack([sample_tokens(tok.is_kmer(row), cfg.mask_ratio, np.random.default_rng([cfg.seed, 8, i]))
                         for i, row in enumerate(val_ids)])

    tmp = Path(out_dir).with_name(Path(out_dir).name + ".init")
    build_tiny_teacher(tmp, hidden_size=cfg.hidden_size, num_layers=cfg.num_layers, num_heads=cfg.num_heads,
                       seed=cfg.seed)
    device = resolve_device(cfg.device, "teacher.device")
    model = EsmForMaskedLM.from_pretrained(tmp).to(device).train()
    shutil.rmtree(tmp)
    params = sum(p.numel() for p in model.parameters())
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(cfg.steps, cfg.warmup_fraction))
    print(f"teacher pretraining: {params:,} parameters, {cfg.steps} steps x {cfg.batch_size} windows "
          f"of {cfg.window} nt", flush=True)

    counts = np.zeros(tok.vocab_size, dtype=np.int64)
    losses, logged, start = [], [], time.perf_counter()
    for step in range(cfg.steps):
        batch = tok.batch_encode([_crop(train_parts, starts, cfg.window, rng) for _ in range(cfg.batch_size)])
        ids = batch["input_ids"]
        counts += np.bincount(ids[tok.is_kmer(ids)], minlength=tok.vocab_size)
        masked = np.stack([sample_tokens(tok.is_kmer(row), cfg.mask_ratio, rng) for row in ids])
        loss = _mlm_loss(model, ids, batch["attention_mask"], masked, tok, device)[0]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
        if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
            logged.append(float(np.mean(losses)))
            print(f"teacher step {step + 1}/{cfg.steps} mlm loss {logged[-1]:.3f} "
                  f"[{time.perf_counter() - start:.0f}s]", flush=True)
            losses = []

    model.eval()
    with torch.no_grad():
        val_loss, val_acc = _mlm_loss(model, val_ids, val_attn, val_mask, tok, device)
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir, safe_serialization=True)
    for name in TOKENIZER_FILES:
        shutil.copyfile(TOKENIZER_DIR / name, out_dir / name)
    report = TeacherPretrainReport(
        parameters=params, steps=cfg.steps, seconds=time.perf_counter() - start,
        first_loss=logged[0], last_loss=logged[-1], val_loss=float(val_loss), val_accuracy=float(val_acc),
        chance_uniform=1 / 4096, chance_majority=float(counts.max() / counts.sum()),
        unigram_loss=_unigram_loss(counts, tok.is_kmer(np.arange(tok.vocab_size)), val_ids[val_mask]),
        config=asdict(cfg),
        fasta_fingerprint=fingerprint,
    )
    (out_dir / REPORT).write_text(json.dumps(asdict(report), indent=2) + "\n")
    print(f"teacher: held-out MLM accuracy {report.val_accuracy:.4f} (chance: uniform {report.chance_uniform:.5f}, "
          f"most frequent 6-mer {report.chance_majority:.4f}), loss {report.val_loss:.3f} (6-mer frequencies "
          f"without context: {report.unigram_loss:.3f}) -> {out_dir}", flush=True)
    return report


def _split(contigs: list[np.ndarray], val_fraction: float, window: int) -> tuple[list, list]:
    """Every contig cut into a training head and a held-out tail (parts shorter than a window dropped)."""
    train, val = [], []
    for codes in contigs:
        cut = round(codes.size * (1 - val_fraction))
        train += [codes[:cut]] if cut >= window else []
        val += [codes[cut:]] if codes.size - cut >= window else []
    return train, val


def _n_free_starts(codes: np.ndarray, window: int) -> np.ndarray:
    """Start of every window of codes uint8 [L] without an N, int64 [n].

    N-free windows only: each N is a teacher token of its own, so one window crossing a gap
    would widen (and slow) its whole padded batch up to 6x, for tokens that teach nothing.
    """
    n_before = np.concatenate([[0], np.cumsum(codes == alphabet.N)])
    return np.flatnonzero(n_before[window:] == n_before[:-window])


def _crop(parts: list[np.ndarray], starts: list[np.ndarray], window: int, rng: np.random.Generator) -> np.ndarray:
    """A random N-free window, every one of them equally likely (parts weighted by their count)."""
    counts = np.array([s.size for s in starts], dtype=np.float64)
    k = int(rng.choice(len(parts), p=counts / counts.sum()))
    start = int(starts[k][rng.integers(starts[k].size)])
    return parts[k][start : start + window]


def _tile(parts: list[np.ndarray], window: int, limit: int) -> list[np.ndarray]:
    """Non-overlapping N-free windows over the parts, at most `limit` of them."""
    tiles = (p[s : s + window] for p in parts for s in range(0, p.size - window + 1, window))
    return [w for w in tiles if not (w == alphabet.N).any()][:limit]


def _unigram_loss(counts: np.ndarray, is_kmer: np.ndarray, targets: np.ndarray) -> float:
    """Cross-entropy on target ids [n] of the 6-mer frequencies counts [V] (add-one smoothed over the
    6-mers, is_kmer bool [V]): the loss of a model that learned the marginal and nothing from context."""
    p = (counts + is_kmer) / (counts + is_kmer).sum()
    return float(-np.log(p[targets]).mean())


def _mlm_loss(model, ids: np.ndarray, attention_mask: np.ndarray, masked: np.ndarray, tok: NTv2Tokenizer,
              device: torch.device):
    """Mean cross-entropy and accuracy over the masked tokens; ids, attention_mask int64 [B, T], masked bool [B, T]."""
    ids_t = torch.from_numpy(ids).to(device)
    masked_t = torch.from_numpy(masked).to(device)
    inputs = ids_t.masked_fill(masked_t, tok.mask_id)
    hidden = model.esm(input_ids=inputs, attention_mask=torch.from_numpy(attention_mask).to(device)).last_hidden_state
    logits = model.lm_head(hidden[masked_t])  # [n_masked, V]: the vocabulary projection only where it is scored
    target = ids_t[masked_t]
    loss = torch.nn.functional.cross_entropy(logits.float(), target)
    return loss, (logits.argmax(-1) == target).float().mean()


