"""Pretrain a small NT-style teacher (6-mer ESM masked LM) on a genome FASTA.

The teacher the reproduction experiments distil: the architecture of `build_tiny_teacher`
(rotary ESM, pre-LN, NTv2's 4107-token vocabulary) scaled up, trained with NT's objective:
15% of the 6-mer tokens of each window are chosen, replaced by the mask token and predicted with
cross-entropy. Optionally (`random_fraction`, `keep_fraction`; BERT's rule is 0.1 and 0.1) some
chosen tokens become a random 6-mer or stay unchanged instead: `had` distils (and the probe reads)
the teacher's final-layer features of *unmasked* tokens, and under mask-only corruption the loss
never reads the final layer at an unmasked position (RESULTS.md, Science, measures both).
Training windows are random N-free crops of the first (1 - val_fraction) of every contig (with
`heldout_contig`: of every contig but the last, which is held out whole); MLM loss and accuracy
are measured on fixed N-free windows tiled over the held-out part, beside two chance levels
(uniform over 6-mers, and always predicting the most frequent training 6-mer) and the loss of
the training 6-mer frequencies without context (the 6-mer marginal), over all masked tokens and
over those inside soft-masked (lower-case: repeat) letters. The result is a `save_pretrained`
directory with the tokenizer files, so `had.teacher.load_teacher` (and `had cache-teacher`,
`had eval`) read it. Training is resumable: every `checkpoint_every` steps the whole state (weights,
optimizer, schedule, data generator, 6-mer counts) goes to `<out_dir>.partial/`, and a run of the same
config and genome started again continues from there, to the same weights as an uninterrupted run.

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
PARTIAL_STATE = "state.pt"  # in <out_dir>.partial/, while training runs
MASK_ONLY = {"random_fraction": 0.0, "keep_fraction": 0.0}  # what a report without these settings did


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
    random_fraction: float = 0.0  # of the chosen tokens: replaced by a random 6-mer ...
    keep_fraction: float = 0.0  # ... or left unchanged (the rest get the mask token; BERT: 0.1 and 0.1)
    val_fraction: float = 0.05  # tail of every contig held out for the MLM accuracy
    heldout_contig: bool = False  # hold out the last contig whole instead (needs >= 2 contigs)
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
    repeat_tokens: int  # held-out masked tokens with most of their letters soft-masked (lower case)
    repeat_loss: float | None  # the teacher's loss on those (None when there are none)
    repeat_unigram_loss: float | None  # ... and the 6-mer marginal's
    heldout: str  # what was held out: "contig <name>" or "tail <fraction> of every contig"
    config: dict
    fasta_fingerprint: str


def pretrain_teacher(fasta: str | Path, out_dir: str | Path, cfg: TeacherPretrainConfig,
                     checkpoint_every: int = 250) -> TeacherPretrainReport:
    """Train an ESM masked LM on `fasta`, save it to `out_dir`, write and return its report.

    A teacher already in `out_dir` whose report has the same config and FASTA fingerprint is reused;
    an interrupted run of the same config and FASTA resumes from its last checkpoint.
    """
    from transformers import EsmForMaskedLM

    if min(cfg.random_fraction, cfg.keep_fraction) < 0 or cfg.random_fraction + cfg.keep_fraction > 1:
        raise HadError(f"teacher random_fraction ({cfg.random_fraction}) and keep_fraction ({cfg.keep_fraction}) "
                       "must be >= 0 and sum to at most 1 (they split the chosen tokens with the mask token)")
    fingerprint = fasta_fingerprint(fasta)
    out_dir = Path(out_dir)
    done = out_dir / REPORT
    old = json.loads(done.read_text()) if done.is_file() else {}
    current = old.keys() == {f.name for f in fields(TeacherPretrainReport)}  # written by this version
    if current and {**MASK_ONLY, **old["config"]} == asdict(cfg) and old["fasta_fingerprint"] == fingerprint:
        print(f"teacher pretraining: reusing {out_dir} (same config and genome)", flush=True)
        return TeacherPretrainReport(**old)
    tok = NTv2Tokenizer.default()
    contigs = [(codes, soft) for codes, soft in _read_soft_masked(fasta)]
    if cfg.heldout_contig and len(contigs) < 2:
        raise HadError(f"{fasta}: heldout_contig needs at least 2 contigs (the last is held out), found {len(contigs)}")
    train_parts, val_parts = _split(contigs, cfg.val_fraction, cfg.window, cfg.heldout_contig)
    starts = [_n_free_starts(p, cfg.window) for p, _ in train_parts]
    val_windows = _tile(val_parts, cfg.window, cfg.val_windows)
    if not sum(s.size for s in starts) or not val_windows:
        held = "a held-out last contig" if cfg.heldout_contig else f"a {cfg.val_fraction:.0%} held-out tail"
        raise HadError(f"{fasta}: contigs too short for N-free teacher windows of {cfg.window} nt with {held}")
    train_parts = [p for p, _ in train_parts]
    rng = np.random.default_rng([cfg.seed, 7])
    val = tok.batch_encode([w for w, _ in val_windows])
    val_ids, val_attn = val["input_ids"], val["attention_mask"]
    val_mask = np.stack([sample_tokens(tok.is_kmer(row), cfg.mask_ratio, np.random.default_rng([cfg.seed, 8, i]))
                         for i, row in enumerate(val_ids)])
    # A window of N-free letters tokenizes into CLS + whole 6-mers (+ a shorter tail token): token j >= 1
    # covers letters 6(j-1) .. 6j; it is "in a repeat" when most of them are lower case.
    val_repeat = np.stack([_token_majority(soft, val_ids.shape[1]) for _, soft in val_windows]) & val_mask

    tmp = save_initialisation(out_dir.with_name(out_dir.name + ".init"), cfg)
    device = resolve_device(cfg.device, "teacher.device")
    model = EsmForMaskedLM.from_pretrained(tmp).to(device).train()
    shutil.rmtree(tmp)
    params = sum(p.numel() for p in model.parameters())
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(cfg.steps, cfg.warmup_fraction))
    print(f"teacher pretraining: {params:,} parameters, {cfg.steps} steps x {cfg.batch_size} windows "
          f"of {cfg.window} nt", flush=True)

    counts = np.zeros(tok.vocab_size, dtype=np.int64)
    losses, logged, first, before = [], [], 0, 0.0
    partial = out_dir.with_name(out_dir.name + ".partial")
    identity = {"config": asdict(cfg), "fasta_fingerprint": fingerprint}
    if (state := _load_partial(partial, identity)) is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        rng.bit_generator.state = state["rng"]
        counts, losses, logged, first, before = (state[k] for k in ("counts", "losses", "logged", "step", "seconds"))
        print(f"teacher pretraining: resuming at step {first} from {partial}", flush=True)
    start = time.perf_counter() - before
    for step in range(first, cfg.steps):
        batch = tok.batch_encode([_crop(train_parts, starts, cfg.window, rng) for _ in range(cfg.batch_size)])
        ids = batch["input_ids"]
        counts += np.bincount(ids[tok.is_kmer(ids)], minlength=tok.vocab_size)
        masked = np.stack([sample_tokens(tok.is_kmer(row), cfg.mask_ratio, rng) for row in ids])
        inputs = corrupt(ids, masked, tok, cfg.random_fraction, cfg.keep_fraction, rng)
        loss = torch.nn.functional.cross_entropy(*_masked_logits(model, inputs, ids, batch["attention_mask"], masked,
                                                                 device))
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
        if (step + 1) % checkpoint_every == 0 and step + 1 < cfg.steps:
            _save_partial(partial, {**identity, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                    "scheduler": scheduler.state_dict(), "rng": rng.bit_generator.state,
                                    "counts": counts, "losses": losses, "logged": logged, "step": step + 1,
                                    "seconds": time.perf_counter() - start})

    model.eval()
    with torch.no_grad():
        nll, hit = _masked_nll(model, val_ids, val_attn, val_mask, tok, device)
    marginal = _marginal_nll(counts, tok.is_kmer(np.arange(tok.vocab_size)), val_ids[val_mask])
    in_repeat = val_repeat[val_mask]
    model.save_pretrained(out_dir, safe_serialization=True)
    for name in TOKENIZER_FILES:
        shutil.copyfile(TOKENIZER_DIR / name, out_dir / name)
    report = TeacherPretrainReport(
        parameters=params, steps=cfg.steps, seconds=time.perf_counter() - start,
        first_loss=logged[0], last_loss=logged[-1], val_loss=float(nll.mean()), val_accuracy=float(hit.mean()),
        chance_uniform=1 / 4096, chance_majority=float(counts.max() / counts.sum()),
        unigram_loss=float(marginal.mean()), repeat_tokens=int(in_repeat.sum()),
        repeat_loss=_mean(nll[in_repeat]), repeat_unigram_loss=_mean(marginal[in_repeat]),
        heldout=f"contig {_names(fasta)[-1]}" if cfg.heldout_contig else f"tail {cfg.val_fraction} of every contig",
        config=asdict(cfg),
        fasta_fingerprint=fingerprint,
    )
    (out_dir / REPORT).write_text(json.dumps(asdict(report), indent=2) + "\n")
    shutil.rmtree(partial, ignore_errors=True)
    print(f"teacher: held-out MLM accuracy {report.val_accuracy:.4f} (chance: uniform {report.chance_uniform:.5f}, "
          f"most frequent 6-mer {report.chance_majority:.4f}), loss {report.val_loss:.3f} (6-mer frequencies "
          f"without context: {report.unigram_loss:.3f}); inside repeats ({report.repeat_tokens} tokens) "
          f"{report.repeat_loss or float('nan'):.3f} (marginal {report.repeat_unigram_loss or float('nan'):.3f}); held out: {report.heldout} "
          f"-> {out_dir}", flush=True)
    return report


def save_initialisation(out_dir: str | Path, cfg: TeacherPretrainConfig) -> Path:
    """Save the weights `pretrain_teacher` starts from with `cfg` (a loadable teacher); returns out_dir."""
    return build_tiny_teacher(out_dir, hidden_size=cfg.hidden_size, num_layers=cfg.num_layers,
                              num_heads=cfg.num_heads, seed=cfg.seed)


def _save_partial(partial: Path, state: dict) -> None:
    """Write the training state atomically: a kill while writing leaves the previous checkpoint."""
    partial.mkdir(parents=True, exist_ok=True)
    tmp = partial / (PARTIAL_STATE + ".tmp")
    torch.save(state, tmp)
    tmp.replace(partial / PARTIAL_STATE)


def _load_partial(partial: Path, identity: dict) -> dict | None:
    """The checkpoint in `partial` if it was written for the same config and FASTA, else None (one written
    for other settings is discarded, and said so: its steps cannot continue this run)."""
    path = partial / PARTIAL_STATE
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=False)
    if all(state[k] == v for k, v in identity.items()):
        return state
    print(f"teacher pretraining: {partial} holds a run of other settings or another genome; starting afresh",
          flush=True)
    shutil.rmtree(partial)
    return None


def _read_soft_masked(fasta: str | Path):
    """(codes uint8 [L], soft mask bool [L]) of every record: `read_fasta`'s codes, and which letters
    are lower case (soft-masked repeats), read from the raw letters."""
    from had.data.fasta import _open

    with _open(Path(fasta)) as f:
        records = f.read().split(b">")[1:]
    for (_, codes), record in zip(read_fasta(fasta), records):
        raw = np.frombuffer(b"".join(record.split(b"\n")[1:]).replace(b"\r", b""), dtype=np.uint8)
        yield codes, (raw >= ord("a")) & (raw <= ord("z"))


def _names(fasta: str | Path) -> list[str]:
    return [name for name, _ in read_fasta(fasta)]


def _split(contigs: list[tuple], val_fraction: float, window: int, heldout_contig: bool) -> tuple[list, list]:
    """(codes, soft mask) pairs cut into training parts and held-out parts (parts shorter than a window
    dropped): the last contig whole when `heldout_contig`, else the tail of every contig."""
    if heldout_contig:
        return [c for c in contigs[:-1] if c[0].size >= window], [c for c in contigs[-1:] if c[0].size >= window]
    train, val = [], []
    for codes, soft in contigs:
        cut = round(codes.size * (1 - val_fraction))
        train += [(codes[:cut], soft[:cut])] if cut >= window else []
        val += [(codes[cut:], soft[cut:])] if codes.size - cut >= window else []
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


def _tile(parts: list[tuple], window: int, limit: int) -> list[tuple]:
    """Non-overlapping N-free (codes, soft mask) windows over the parts, at most `limit` of them."""
    tiles = ((p[s : s + window], m[s : s + window]) for p, m in parts for s in range(0, p.size - window + 1, window))
    return [(w, m) for w, m in tiles if not (w == alphabet.N).any()][:limit]


def _token_majority(soft: np.ndarray, width: int) -> np.ndarray:
    """Soft mask bool [L] of an N-free window -> per token of its encoding (CLS first, right padded
    to `width`) whether most of its letters are soft-masked, bool [width]."""
    out = np.zeros(width, dtype=bool)
    for j, at in enumerate(range(0, soft.size, 6), start=1):
        out[j] = soft[at : at + 6].mean() > 0.5
    return out


def _marginal_nll(counts: np.ndarray, is_kmer: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Cross-entropy per target id [n] of the 6-mer frequencies counts [V] (add-one smoothed over the
    6-mers, is_kmer bool [V]): the loss of a model that learned the marginal and nothing from context."""
    p = (counts + is_kmer) / (counts + is_kmer).sum()
    return -np.log(p[targets])


def _mean(x: np.ndarray) -> float | None:
    return float(x.mean()) if x.size else None


def corrupt(ids: np.ndarray, chosen: np.ndarray, tok: NTv2Tokenizer, random_fraction: float, keep_fraction: float,
            rng: np.random.Generator) -> np.ndarray:
    """The model's input for MLM targets ids int64 [B, T] at the chosen positions bool [B, T]: each chosen
    token becomes a random 6-mer with probability random_fraction, stays itself with keep_fraction,
    and is the mask token otherwise; int64 [B, T]. Draws nothing from rng for mask-only corruption."""
    inputs = np.where(chosen, tok.mask_id, ids)
    if random_fraction == keep_fraction == 0:
        return inputs
    kmers = np.flatnonzero(tok.is_kmer(np.arange(tok.vocab_size)))
    fate = rng.random(ids.shape)
    swap = chosen & (fate < random_fraction)
    inputs[swap] = rng.choice(kmers, size=int(swap.sum()))
    keep = chosen & (fate >= random_fraction) & (fate < random_fraction + keep_fraction)
    inputs[keep] = ids[keep]
    return inputs


def _masked_logits(model, inputs: np.ndarray, ids: np.ndarray, attention_mask: np.ndarray, scored: np.ndarray,
                   device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits [n, V], targets [n]) at the scored positions, in row-major order; inputs (what the model
    reads), ids (the targets), attention_mask int64 [B, T], scored bool [B, T]."""
    scored_t = torch.from_numpy(scored).to(device)
    hidden = model.esm(input_ids=torch.from_numpy(inputs).to(device),
                       attention_mask=torch.from_numpy(attention_mask).to(device)).last_hidden_state
    return model.lm_head(hidden[scored_t]).float(), torch.from_numpy(ids).to(device)[scored_t]  # projection where scored


def _masked_nll(model, ids, attention_mask, masked, tok, device, batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Per masked token (row-major), every chosen token masked: cross-entropy float [n] and whether the
    argmax is right bool [n]; ids, attention_mask int64 [B, T], masked bool [B, T]."""
    nll, hit = [], []
    inputs = np.where(masked, tok.mask_id, ids)
    for at in range(0, len(ids), batch):
        part = slice(at, at + batch)
        logits, target = _masked_logits(model, inputs[part], ids[part], attention_mask[part], masked[part], device)
        nll.append(torch.nn.functional.cross_entropy(logits, target, reduction="none").cpu().numpy())
        hit.append((logits.argmax(-1) == target).cpu().numpy())
    return np.concatenate(nll), np.concatenate(hit)


