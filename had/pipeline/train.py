"""`had train`: pretrain the HAD student on a teacher cache (the teacher is never loaded).

One GPU:
    had train --config had-1.1m --cache /data/hg38-cache --out runs/had-1.1m
N GPUs on one machine (DDP; rank 0 logs and checkpoints):
    torchrun --nproc_per_node=N -m had train --config had-1.1m --cache /data/hg38-cache --out runs/had-1.1m
Continue a run exactly where its last checkpoint left it: add `--resume` (refused when the cache or
any setting but the operational `had.training.checkpoint.RESUME_MAY_CHANGE` ones differs from the checkpoint's run).
SIGINT / SIGTERM finish the current step, save a checkpoint and exit, so an interrupted run resumes
without losing work.

Outputs under `--out`: config.yaml (resolved), metrics.jsonl (one line per `log_every` steps),
checkpoints/step-N/ (last `keep_checkpoints`), model/ (a `save_pretrained` directory that
`had eval --model` and `AutoModel.from_pretrained` load after `import had.student`).

The data order is a pure function of (seed, step) (`had.training.sampler`), so a checkpoint only
needs the step to put the data loader back where it was.

`run` builds the run (cache checks, student, optimizer, checkpoint to resume) and hands it to
`had.training.loop.Loop`; checkpoints live in `had.training.checkpoint`, the data order in
`had.training.sampler`, metrics.jsonl in `had.training.metrics`.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from had.config import RunConfig
from had.errors import HadError
from had.optim import decay_groups
from had.runtime import autocast
from had.schedules import warmup_cosine
from had.student import HadConfig, HadForPretraining
from had.training import loop
from had.training.checkpoint import Checkpointer, run_identity
from had.training.metrics import MetricsLogger, loss_keys, truncate_metrics
from had.training.sampler import make_loader


def run(cfg: RunConfig, reader=None) -> Path:
    """Train; return the final model directory (<out>/model).

    `reader` replaces `CacheReader(cfg.cache.path)` with any object that has `len`, `[i]` -> cache
    item and `.manifest` (benchmarks feed in-memory items through it); its manifest is checked alike.
    """
    tc = cfg.train
    out = Path(tc.out)
    if out.exists() and not out.is_dir():
        raise HadError(f"train.out (--out) {out} is an existing file, not a run directory")
    dd = loop.init_distributed(use_cuda=torch.cuda.is_available() and tc.device != "cpu")
    device = loop.device(tc.device, dd)
    reader = _check_cache(cfg, reader if reader is not None else _open_cache(cfg.cache.path))
    cfg = _cache_window(cfg, reader.manifest, dd)
    model_cfg = student_config(cfg, reader.manifest)
    accum = loop.accumulation(tc, dd)
    resolved = RunConfig(**{**cfg.__dict__, "student": model_cfg.own_dict()})
    checkpointer = Checkpointer(out / "checkpoints", resolved, run_identity(resolved, reader.manifest))

    model = init_student(model_cfg, tc.seed).to(device)
    optimizer = torch.optim.AdamW(decay_groups(model, tc.weight_decay), lr=tc.lr, betas=tuple(tc.betas),
                                  fused=device.type == "cuda")
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(tc.steps, tc.warmup_fraction))
    start = checkpointer.restore(model, optimizer, scheduler, device)
    if dd.main:
        _prepare_out(out, resolved, start)

    net = loop.wrap(model, tc.compile, dd, device)
    loader = make_loader(reader, tc, dd.rank, dd.world, start, device)
    precision = autocast(tc.precision, device)
    logger = MetricsLogger(out, tc.tensorboard) if dd.main else None
    if dd.main:
        print(f"had train: {sum(p.numel() for p in model.had.parameters()):,} encoder parameters "
              f"({model.param_counts()}); {len(reader):,} window-views; steps {start}->{tc.steps}, "
              f"global batch {tc.batch_size} = {dd.world} rank(s) x {accum} x {tc.micro_batch_size}", flush=True)

    loop.Loop(tc, dd, device, model, net, optimizer, scheduler, loader, accum, precision, loss_keys(model_cfg),
              checkpointer, logger).run(start)

    if dd.main:
        model.save_pretrained(out / "model")
        logger.close()
        print(f"had train: model -> {out / 'model'}  metrics -> {out / 'metrics.jsonl'}  "
              f"checkpoints -> {checkpointer.root}", flush=True)
    if dd.world > 1:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return out / "model"


def _prepare_out(out: Path, resolved: RunConfig, start: int) -> None:
    """The run directory with its resolved config.yaml and metrics.jsonl up to step `start`."""
    if start == 0 and resolved.train.resume:
        print(f"had train: no checkpoint in {out}: starting from step 0", flush=True)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise HadError(f"train.out (--out) {out}: cannot create it ({e.strerror})") from None
    resolved.save(out / "config.yaml")
    truncate_metrics(out / "metrics.jsonl", start)


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


def _cache_window(cfg: RunConfig, manifest: dict, dd: loop.Dist) -> RunConfig:
    """genome.window is the cache's: train reads the windows the cache holds (one line when it differs)."""
    if manifest["window"] == cfg.genome.window:
        return cfg
    if dd.main:
        print(f"had train: genome.window {cfg.genome.window} -> {manifest['window']}, the window of cache "
              f"{cfg.cache.path}", flush=True)
    return dataclasses.replace(cfg, genome=dataclasses.replace(cfg.genome, window=manifest["window"]))


def init_student(model_cfg: HadConfig, seed: int) -> HadForPretraining:
    """The student `had train` starts from with train.seed = seed (built on the CPU, then moved)."""
    torch.manual_seed(seed)
    return HadForPretraining(model_cfg)


def student_config(cfg: RunConfig, manifest: dict) -> HadConfig:
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
