"""`had train`: pretrain the HAD student on a teacher cache (the teacher is never loaded).

One GPU:
    had train --config had-1.1m --cache /data/hg38-cache --out runs/had-1.1m
N GPUs on one machine (DDP; rank 0 logs and checkpoints):
    torchrun --nproc_per_node=N -m had train --config had-1.1m --cache /data/hg38-cache --out runs/had-1.1m
Continue a run exactly where its last checkpoint left it: add `--resume` (refused when the cache or
any setting but the operational `_RESUME_MAY_CHANGE` ones differs from the checkpoint's run).
SIGINT / SIGTERM finish the current step, save a checkpoint and exit, so an interrupted run resumes
without losing work.

Outputs under `--out`: config.yaml (resolved), metrics.jsonl (one line per `log_every` steps),
checkpoints/step-N/ (last `keep_checkpoints`), model/ (a `save_pretrained` directory that
`had eval --model` and `AutoModel.from_pretrained` load after `import had.student`).

The data order is a pure function of (seed, step): every optimizer step reads global-batch slice
`step` of an endless stream of seeded per-epoch permutations, rank r taking its contiguous share.
A checkpoint therefore only needs the step to put the data loader back where it was.
"""
from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
import signal
import sys
import threading
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Sampler

from had.config import RunConfig, changes, config_hash
from had.errors import HadError
from had.schedules import warmup_cosine
from had.student import HadConfig, HadForPretraining, collate_cache_items

LOSS_KEYS = ("loss", "loss_distill", "loss_recon", "loss_mlm")
# Manifest keys that do not decide the cached values (FORMAT.md): a cache moved, or rebuilt with the
# same settings, is the same training data.
_NOT_CACHE_IDENTITY = ("format_version", "created", "sources", "shards", "totals")
# Settings that may change on --resume: they decide how a run is carried out, not what it computes
# (every other genome, mask, train and student value must equal the checkpoint's run).
_RESUME_MAY_CHANGE = (
    "train.out",  # the run's folder, which may have been moved or copied
    "train.resume",  # the flag itself
    "train.num_workers",  # loader processes: the data order is a function of (seed, step) alone
    "train.log_every",  # how often metrics are written, not what is trained
    "train.checkpoint_every",  # when checkpoints are written ...
    "train.keep_checkpoints",  # ... and how many are kept
    "train.device",  # a run may continue on another machine
    "train.compile",  # the same model, compiled or eager
    "train.tensorboard",  # an extra copy of the metrics
)


@dataclass
class Dist:
    rank: int = 0
    local_rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def run(cfg: RunConfig, reader=None) -> Path:
    """Train; return the final model directory (<out>/model).

    `reader` replaces `CacheReader(cfg.cache.path)` with any object that has `len`, `[i]` -> cache
    item and `.manifest` (benchmarks feed in-memory items through it); its manifest is checked alike.
    """
    tc = cfg.train
    out = Path(tc.out)
    if out.exists() and not out.is_dir():
        raise HadError(f"train.out (--out) {out} is an existing file, not a run directory")
    dd = _init_distributed(use_cuda=torch.cuda.is_available() and tc.device != "cpu")
    device = _device(tc.device, dd)
    reader = _check_cache(cfg, reader if reader is not None else _open_cache(cfg.cache.path))
    cfg = _cache_window(cfg, reader.manifest, dd)
    model_cfg = _student_config(cfg, reader.manifest)
    accum = _accumulation(tc, dd)
    ckpt_root = out / "checkpoints"
    identity = _run_identity(cfg, reader.manifest, model_cfg)

    torch.manual_seed(tc.seed)
    model = HadForPretraining(model_cfg).to(device)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "embed" not in n]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2 or "embed" in n]  # norms, biases, gates, embeddings
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": tc.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=tc.lr, betas=tuple(tc.betas), fused=device.type == "cuda",
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(tc.steps, tc.warmup_fraction))

    start_step = 0
    latest = _latest_checkpoint(ckpt_root)
    if latest is not None and not tc.resume:
        raise HadError(f"{out} already holds checkpoints ({latest.name}); pass --resume to continue it "
                       f"or choose another --out")
    if latest is not None:  # every check passes before anything in `out` is rewritten
        start_step = _load_checkpoint(latest, model, optimizer, scheduler, identity, device)
    if dd.main:
        if latest is None and tc.resume:
            print(f"had train: no checkpoint in {out}: starting from step 0", flush=True)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise HadError(f"train.out (--out) {out}: cannot create it ({e.strerror})") from None
        resolved = RunConfig(**{**cfg.__dict__, "student": model_cfg.own_dict()})
        resolved.save(out / "config.yaml")
        _truncate_metrics(out / "metrics.jsonl", start_step)

    net = model
    if tc.compile:
        net = torch.compile(net)
    if dd.world > 1:
        net = torch.nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)

    sampler = StepBatchSampler(len(reader), tc.batch_size, tc.micro_batch_size, dd.rank, dd.world,
                               tc.seed, start_step, tc.steps)
    loader = DataLoader(
        reader, batch_sampler=sampler, collate_fn=collate_cache_items, num_workers=tc.num_workers,
        pin_memory=device.type == "cuda", prefetch_factor=4 if tc.num_workers else None,
        persistent_workers=tc.num_workers > 0, worker_init_fn=_ignore_stop_signals,
    )
    autocast = _autocast(tc.precision, device)
    logger = MetricsLogger(out, tc.tensorboard) if dd.main else None
    if dd.main:
        print(f"had train: {sum(p.numel() for p in model.had.parameters()):,} encoder parameters "
              f"({model.param_counts()}); {len(reader):,} window-views; steps {start_step}->{tc.steps}, "
              f"global batch {tc.batch_size} = {dd.world} rank(s) x {accum} x {tc.micro_batch_size}", flush=True)

    window = _Window()
    # First step (1-based) whose loss was not finite, tc.steps + 1 while none: kept on the device and
    # read only where the loop synchronises anyway (logging, checkpoints), not once per step.
    bad_step = torch.full((), tc.steps + 1, device=device)
    with _StopSignals() as stop, _batches(loader) as batches:
        for step in range(start_step, tc.steps):
            sums = torch.zeros(len(LOSS_KEYS), device=device)
            for micro in range(accum):
                t0 = time.perf_counter()
                batch = next(batches)
                window.wait += time.perf_counter() - t0
                window.nt += int(batch["attention_mask"].sum()) * dd.world
                batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
                sync = nullcontext() if dd.world == 1 or micro == accum - 1 else net.no_sync()
                with sync, autocast:
                    res = net(**batch)
                    (res.loss / accum).backward()
                sums += torch.stack([getattr(res, k).detach().float() if getattr(res, k) is not None
                                     else torch.zeros((), device=device) for k in LOSS_KEYS]) / accum
            bad_step = torch.where(torch.isfinite(sums[0]), bad_step, bad_step.clamp(max=step + 1))
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
            lr = scheduler.get_last_lr()[0]
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)

            done = step + 1
            log_now = done % tc.log_every == 0 or done == tc.steps
            save_now = done % tc.checkpoint_every == 0 or done == tc.steps
            stopping = done < tc.steps and stop.agreed(dd, log_now, device)
            if log_now or save_now or stopping:  # never log or save past a non-finite loss
                _check_finite(bad_step, dd, tc.steps, ckpt_root)
            if log_now:
                if dd.world > 1:
                    dist.all_reduce(sums, op=dist.ReduceOp.AVG)
                if logger:
                    losses = dict(zip(LOSS_KEYS, sums.tolist()))
                    record = {"step": done, **{k: v for k, v in losses.items() if _has_branch(model_cfg, k)},
                              "lr": lr, "grad_norm": float(grad_norm), **window.rates()}
                    logger.log(record, tc.steps)
                window = _Window()
            if dd.main and (save_now or stopping):
                _save_checkpoint(ckpt_root / f"step-{done}", model, optimizer, scheduler, done, cfg, model_cfg,
                                 identity)
                _prune_checkpoints(ckpt_root, tc.keep_checkpoints)
            if stopping:
                _exit_interrupted(stop.signum, done, ckpt_root / f"step-{done}", logger, dd)

    if dd.main:
        model.save_pretrained(out / "model")
        logger.close()
        print(f"had train: model -> {out / 'model'}  metrics -> {out / 'metrics.jsonl'}  "
              f"checkpoints -> {ckpt_root}", flush=True)
    if dd.world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return out / "model"


class StepBatchSampler(Sampler):
    """Micro-batches of item indices for optimizer steps [start_step, steps), deterministic in the seed.

    The global stream is the concatenation of per-epoch permutations (np.random.default_rng([seed,
    epoch])); step s takes stream[s*G : (s+1)*G], rank r its r-th contiguous share, split into
    micro-batches. Independent of worker count and of where a run was resumed.
    """

    def __init__(self, n_items: int, global_batch: int, micro: int, rank: int, world: int,
                 seed: int, start_step: int, steps: int):
        self.n, self.g, self.micro, self.rank, self.world = n_items, global_batch, micro, rank, world
        self.seed, self.start, self.steps = seed, start_step, steps
        self._epoch, self._perm = -1, None

    def __len__(self) -> int:
        return (self.steps - self.start) * (self.g // self.world // self.micro)

    def __iter__(self):
        share = self.g // self.world
        for step in range(self.start, self.steps):
            begin = step * self.g + self.rank * share
            idx = self._stream(begin, begin + share)
            for m in range(0, share, self.micro):
                yield idx[m : m + self.micro].tolist()

    def _stream(self, begin: int, end: int) -> np.ndarray:
        parts = []
        while begin < end:
            epoch, offset = divmod(begin, self.n)
            if epoch != self._epoch:
                self._epoch, self._perm = epoch, np.random.default_rng([self.seed, epoch]).permutation(self.n)
            take = min(end - begin, self.n - offset)
            parts.append(self._perm[offset : offset + take])
            begin += take
        return np.concatenate(parts)


class MetricsLogger:
    """JSONL always (one object per line), a progress line on stdout, TensorBoard on request."""

    def __init__(self, out: Path, tensorboard: bool):
        self.file = (out / "metrics.jsonl").open("a")
        self.t0 = time.perf_counter()
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise HadError("train.tensorboard: the tensorboard package is not installed "
                               "(pip install tensorboard) or turn the option off") from None
            self.tb = SummaryWriter(str(out / "tensorboard"))

    def log(self, record: dict, steps: int) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.tb:
            for k, v in record.items():
                if k != "step":
                    self.tb.add_scalar(k, v, record["step"])
        branches = " ".join(f"{k.removeprefix('loss_')} {record[k]:.4f}" for k in LOSS_KEYS[1:] if k in record)
        print(f"step {record['step']}/{steps} loss {record['loss']:.4f} ({branches}) lr {record['lr']:.2e} "
              f"gnorm {record['grad_norm']:.3f} {record['nt_per_s']:,.0f} nt/s wait {record['data_wait']:.1%} "
              f"[{time.perf_counter() - self.t0:.0f}s]", flush=True)

    def close(self) -> None:
        self.file.close()
        if self.tb:
            self.tb.close()


class _StopSignals:
    """SIGINT / SIGTERM ask the loop to stop after the current step (a second signal stops at once).

    Set only from the main thread (Python allows no other); the previous handlers come back on exit.
    """

    def __init__(self):
        self.signum: int | None = None
        self._previous: dict = {}

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)
                              if signal.getsignal(s) is not signal.SIG_IGN}  # e.g. `nohup`: keep ignoring
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:  # asked twice: do not wait for the step to end
            previous = self._previous[signum]
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
            signal.raise_signal(signum)
        self.signum = signum

    def agreed(self, dd: Dist, at_log: bool, device: torch.device) -> bool:
        """Whether every rank stops after this step. DDP ranks agree at log steps only, where they
        synchronise anyway: a signal may reach the ranks during different steps."""
        if dd.world == 1:
            return self.signum is not None
        if not at_log:
            return False
        flag = torch.tensor(self.signum or 0, device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        self.signum = int(flag) or None
        return self.signum is not None


def _ignore_stop_signals(worker_id: int) -> None:
    """DataLoader workers get Ctrl-C (and SLURM's SIGTERM) too; the main process decides when to stop,
    so a worker must not die mid-step. Workers still exit when the main process ends."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


@contextmanager
def _batches(loader: DataLoader):
    """The loader's iterator; its workers are shut down however the loop ends.

    Left to garbage collection, an exception's traceback keeps the iterator alive until interpreter
    exit, where torch no longer shuts workers down and multiprocessing's exit-time join waits forever
    on workers that ignore its SIGTERM (`_ignore_stop_signals`): the error is printed, the process hangs.
    """
    batches = iter(loader)
    try:
        yield batches
    finally:
        if hasattr(batches, "_shutdown_workers"):  # num_workers > 0 (torch's own shutdown, private API)
            batches._shutdown_workers()


def _exit_interrupted(signum: int, step: int, checkpoint: Path, logger, dd: Dist) -> None:
    if logger:
        logger.close()
    if dd.main:
        print(f"had train: stopped by {signal.Signals(signum).name} after step {step}, checkpoint {checkpoint}; "
              f"to continue, run the same command with --resume", file=sys.stderr, flush=True)
    if dd.world > 1:
        dist.destroy_process_group()
    raise SystemExit(128 + signum)


def _check_finite(bad_step: torch.Tensor, dd: Dist, steps: int, ckpt_root: Path) -> None:
    """Stop at the first non-finite loss (all ranks alike): every checkpoint saved so far is before it."""
    if dd.world > 1:
        dist.all_reduce(bad_step, op=dist.ReduceOp.MIN)
    first = int(bad_step)
    if first <= steps:
        last = _latest_checkpoint(ckpt_root)
        raise HadError(f"training loss is not finite (NaN or inf) at step {first}; stopped, last good checkpoint: "
                       f"{last if last else 'none'} (try a lower train.lr, or check the cache with `had cache-info`)")


class _Window:
    """Throughput and data-wait accounting between two log lines."""

    def __init__(self):
        self.t0, self.wait, self.nt = time.perf_counter(), 0.0, 0

    def rates(self) -> dict:
        elapsed = max(time.perf_counter() - self.t0, 1e-9)
        return {"nt_per_s": self.nt / elapsed, "data_wait": self.wait / elapsed}


def _has_branch(model_cfg: HadConfig, key: str) -> bool:
    return {"loss": True, "loss_distill": model_cfg.has_distill, "loss_recon": model_cfg.has_recon,
            "loss_mlm": model_cfg.mlm_only}[key]


def _init_distributed(use_cuda: bool) -> Dist:
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Dist()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if use_cuda else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank)  # before init, or every rank's NCCL communicator lands on GPU 0
    dist.init_process_group(backend)
    return Dist(dist.get_rank(), local_rank, dist.get_world_size())


def _device(option: str, dd: Dist) -> torch.device:
    if option not in ("auto", "cpu", "cuda"):
        raise HadError(f"train.device must be auto, cpu or cuda, got {option!r}")
    if option == "cuda" and not torch.cuda.is_available():
        raise HadError("train.device=cuda but no CUDA device is visible")
    if option == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    torch.cuda.set_device(dd.local_rank)
    return torch.device("cuda", dd.local_rank)


def _autocast(precision: str, device: torch.device):
    if precision not in ("auto", "fp32", "bf16"):
        raise HadError(f"train.precision must be auto, fp32 or bf16, got {precision!r}")
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


def _accumulation(tc, dd: Dist) -> int:
    per_step = tc.micro_batch_size * dd.world
    if tc.batch_size % per_step:
        raise HadError(f"train.batch_size {tc.batch_size} is not a multiple of train.micro_batch_size "
                       f"{tc.micro_batch_size} x {dd.world} rank(s)")
    return tc.batch_size // per_step


def _open_cache(path: str):
    from had.cache_store.reader import CacheReader  # lazily: zarr is not needed to train from memory

    return CacheReader(path)


def _check_cache(cfg: RunConfig, reader):
    """Any teacher's cache trains the student (its spans align the target), if had knows its tokenizer
    family; a cache from before the families holds NTv2 k-mers and must have NTv2's vocabulary."""
    from had.data.tokenizer import NTv2Tokenizer
    from had.data.tokenizer_base import FAMILIES

    man, where = reader.manifest, f"cache {cfg.cache.path}"
    family = man.get("tokenizer_family")
    if family is None and man["vocab_hash"] != NTv2Tokenizer.default().vocab_hash:
        raise HadError(f"{where} was tokenized with another vocabulary (vocab_hash {man['vocab_hash'][:12]}...) "
                       "by a had that knew only NTv2's 6-mers: re-run had cache-teacher")
    if family is not None and family not in FAMILIES:
        raise HadError(f"{where}: teacher tokenizer family {family!r} is unknown to this had ({', '.join(FAMILIES)})")
    if len(reader) == 0:
        raise HadError(f"{where} holds no window-views")
    return reader


def _cache_window(cfg: RunConfig, manifest: dict, dd: Dist) -> RunConfig:
    """genome.window is the cache's: train reads the windows the cache holds (one line when it differs)."""
    if manifest["window"] == cfg.genome.window:
        return cfg
    if dd.main:
        print(f"had train: genome.window {cfg.genome.window} -> {manifest['window']}, the window of cache "
              f"{cfg.cache.path}", flush=True)
    return dataclasses.replace(cfg, genome=dataclasses.replace(cfg.genome, window=manifest["window"]))


def _run_identity(cfg: RunConfig, manifest: dict, model_cfg: HadConfig) -> dict:
    """What a resumed run must share with its checkpoint's: the data (a hash per key of the cache's
    identity) and every genome, mask, train and student setting but `_RESUME_MAY_CHANGE`, by dotted
    key, as plain JSON values (a tuple and the list it was read back as compare equal)."""
    settings = {f"{section}.{k}": v for section in ("genome", "mask", "train")
                for k, v in dataclasses.asdict(getattr(cfg, section)).items()}
    settings |= {f"student.{k}": v for k, v in model_cfg.own_dict().items()}
    run = json.loads(json.dumps({k: v for k, v in settings.items() if k not in _RESUME_MAY_CHANGE}))
    return {"cache": {k: config_hash(v) for k, v in manifest.items() if k not in _NOT_CACHE_IDENTITY}, **run}


def _student_config(cfg: RunConfig, manifest: dict) -> HadConfig:
    """HadConfig from the `student:` section; teacher_dim defaults to the cache's."""
    kwargs = dict(cfg.student)
    kwargs.setdefault("teacher_dim", manifest["teacher_dim"])
    model_cfg = HadConfig.from_kwargs(kwargs)
    if model_cfg.has_distill and model_cfg.teacher_dim != manifest["teacher_dim"]:
        raise HadError(f"cache {cfg.cache.path} holds {manifest['teacher_dim']}-dim features of teacher "
                       f"{manifest.get('teacher', '?')} but student.teacher_dim is {model_cfg.teacher_dim}")
    if model_cfg.use_attention and model_cfg.position == "learned" and manifest["window"] > model_cfg.max_position:
        raise HadError(f"student.max_position {model_cfg.max_position} < cache window {manifest['window']}")
    return model_cfg


def _save_checkpoint(path: Path, model, optimizer, scheduler, step: int, cfg: RunConfig, model_cfg: HadConfig,
                     identity: dict) -> None:
    """Write step-N/ atomically (tmp dir + rename) so a kill never leaves a half checkpoint."""
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    rng = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
           "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "step": step, "samples_seen": step * cfg.train.batch_size, "rng": rng,
                "student": model_cfg.own_dict(), "run": identity}, tmp / "state.pt")
    RunConfig(**{**cfg.__dict__, "student": model_cfg.own_dict()}).save(tmp / "config.yaml")
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)


def _load_checkpoint(path: Path, model, optimizer, scheduler, identity: dict, device) -> int:
    state = torch.load(path / "state.pt", map_location=device, weights_only=False)
    saved = state.get("run")
    if saved is not None:  # checkpoints of a had that recorded fewer settings kept the student's apart
        saved = {**json.loads(json.dumps({f"student.{k}": v for k, v in state["student"].items()})), **saved}
    _check_same_run(path, saved, identity)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    rng = state["rng"]
    torch.set_rng_state(rng["torch"].cpu())
    np.random.set_state(rng["numpy"])
    random.setstate(rng["python"])
    if rng["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in rng["cuda"]])
    print(f"had train: resumed from {path} (step {state['step']})", flush=True)
    return state["step"]


def _check_same_run(path: Path, saved: dict | None, identity: dict) -> None:
    """--resume continues one run exactly: the same cache and settings (`_run_identity`), or a HadError
    naming each difference. A setting the checkpoint did not record (an older had) is not compared."""
    if saved is None:
        raise HadError(f"--resume: {path} was written by a had that did not record the run's cache, seed and "
                       f"batch sizes, so they cannot be checked; start the run again in another --out")
    recorded = [k for k in identity if k != "cache" and k in saved]
    diff = changes({k: saved[k] for k in recorded}, {k: identity[k] for k in recorded})
    cache = sorted(k for k in saved["cache"].keys() | identity["cache"].keys()
                   if saved["cache"].get(k) != identity["cache"].get(k))
    if cache:
        diff.insert(0, f"another cache (its {', '.join(cache)} differ)")
    if diff:
        raise HadError(f"--resume: {path} belongs to a run with {'; '.join(diff)}: resume with the original "
                       f"settings or choose another --out")


def _checkpoints(root: Path) -> list[Path]:
    found = [p for p in root.glob("step-*") if p.is_dir() and p.name[5:].isdigit()]
    return sorted(found, key=lambda p: int(p.name[5:]))


def _latest_checkpoint(root: Path) -> Path | None:
    found = _checkpoints(root)
    return found[-1] if found else None


def _prune_checkpoints(root: Path, keep: int) -> None:
    for old in _checkpoints(root)[: -max(keep, 1)]:
        shutil.rmtree(old)


def _truncate_metrics(path: Path, step: int) -> None:
    """On resume drop lines logged after the checkpoint, so metrics.jsonl reads as one clean run.

    From step 0 (no checkpoint to continue) the file of an earlier attempt is kept aside, not emptied.
    """
    if not path.exists():
        return
    if step == 0:
        if path.stat().st_size:
            aside = next(p for k in range(1, 1 << 20) if not (p := path.with_name(f"metrics.old-{k}.jsonl")).exists())
            path.rename(aside)
            print(f"had train: {path} (an earlier attempt that left no checkpoint) kept as {aside.name}", flush=True)
        return
    lines = [ln for ln in path.read_text().splitlines() if ln and json.loads(ln)["step"] <= step]
    path.write_text("".join(ln + "\n" for ln in lines))
