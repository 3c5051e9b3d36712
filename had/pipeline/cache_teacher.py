"""`had cache-teacher`: run the frozen teacher once over a genome into a sharded Zarr cache.

    had cache-teacher --fasta hg38.fa --teacher InstaDeepAI/nucleotide-transformer-v2-500m-multi-species \\
        --trust-remote-code --views 2 --rc --out /data/hg38-cache          # one worker per visible GPU
    had cache-teacher ... --scheduler tcp://host:8786                      # an existing Dask cluster
    had cache-teacher ... --dry-run                                        # the plan, nothing written
    had cache-info /data/hg38-cache                                        # summary + checksum of every shard

On an existing Dask cluster, start one worker process per GPU with two threads and two GPU
slots: each shard task takes one slot, and the two tasks' teacher forwards take turns on the GPU
(one teacher per process, a lock around its forward), so one task's tokenizing and writing
overlap the other's forward:

    dask scheduler --port 8786
    CUDA_VISIBLE_DEVICES=0 dask worker tcp://host:8786 --nthreads 2 --resources GPU=2 --memory-limit 0
    # SLURM (dask-jobqueue): SLURMCluster(processes=1, cores=2, job_cpu=8, memory="64GB",
    #     job_extra_directives=["--gres=gpu:1"], worker_extra_args=["--resources", "GPU=2"])
    # Kubernetes (dask operator): one worker pod per GPU, limits nvidia.com/gpu: 1,
    #     args --nthreads 2 --resources GPU=2

A worker that dies has its shard retried elsewhere (up to 3 deaths per shard, then the run fails).

Items are window-views: item i is window i // V, view i % V, with V = views x (2 with --rc);
views >= `mask.views` hold the reverse complement. A shard is a fixed range of items and one
task: it fetches, tokenizes and masks its windows, runs the teacher in token-count batches,
and writes every array's shard object at once, then its commit record. Re-running the same
command skips committed shards and redoes the rest; `manifest.json` is written last.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import os
import sys
import threading
import time
from dataclasses import dataclass

import numpy as np
import torch
import yaml

from had.cache_store import FORMAT_VERSION, Layout, Storage, read_commit, write_shard
from had.cache_store import manifest as manifest_io
from had.cache_store.writer import cache_attributes, create_store, foreign_names, remove_cache
from had.config import RunConfig, TeacherConfig, config_hash
from had.data import alphabet
from had.data.fasta import FastaFile, WindowTable, fasta_fingerprint, iter_windows
from had.data.masking import grouping_mask
from had.errors import HadError
from had.runtime import resolve_device
from had.teacher import Teacher, absolute_local, load_teacher

PLAN_SAMPLE = 2048  # windows tokenized to estimate token counts in the plan
RAW_BYTES_PER_DIM = {"fp16": 2.0, "bf16": 2.0, "int8": 1.0}
SCHEDULER_TIMEOUT_S = 15  # connecting to --scheduler: long enough for a busy scheduler, short for a typo


@dataclass
class Plan:
    windows: WindowTable
    layout: Layout
    identity: dict  # everything that decides the stored values; compared on resume
    sources: dict  # paths the values came from (not compared: files may move)
    n_views: int
    teacher_tokens: int  # specials included (what the teacher runs on)
    visible_tokens: int  # feature rows stored
    exact: bool  # False: token counts extrapolated from PLAN_SAMPLE windows

    def summary(self) -> dict:
        d = self.layout.teacher_dim
        return {
            "windows": len(self.windows),
            "windows_skipped_n": self.windows.n_skipped_n,
            "short_intervals_skipped": self.windows.n_short,
            "nt_not_covered": self.windows.short_nt + self.windows.uncovered_nt,
            "not_covered": self.windows.coverage(),
            "views": self.n_views,
            "items": self.layout.n_items,
            "shards": self.layout.n_shards,
            "teacher_tokens": self.teacher_tokens,
            "visible_tokens": self.visible_tokens,
            "token_counts": "exact" if self.exact else f"estimated from the forward strand of up to {PLAN_SAMPLE} windows",
            "raw_feature_bytes": {k: int(self.visible_tokens * d * b) for k, b in RAW_BYTES_PER_DIM.items()},
        }


@dataclass
class ShardJob:
    """Everything a worker needs for one shard (small and picklable)."""

    url: str
    layout: Layout
    teacher: dict  # TeacherConfig fields, dtype resolved
    mask: dict  # MaskConfig fields
    fasta: str
    contigs: tuple[str, ...]
    window_id: np.ndarray  # int64 [n_windows of the shard]
    contig: np.ndarray
    start: np.ndarray
    first_window: int  # global index of the shard's first window
    shard: int


def run(cfg: RunConfig, dry_run: bool = False) -> dict:
    """Build (or resume) the cache at cfg.cache.path; with dry_run only print and return the plan."""
    plan = make_plan(cfg)
    storage = Storage(cfg.cache.path)
    if dry_run:
        summary = plan.summary() | _throughput_estimate(cfg, plan)
        try:  # a refusal (existing cache of another config, not a cache, ...) ends the dry run as it would the run
            summary["out"] = f"{_store_action(storage, plan, cfg)} ({cfg.cache.path})"
        finally:
            print(json.dumps(summary, indent=1))
        return summary
    _prepare_store(storage, plan, cfg)
    if storage.exists(manifest_io.MANIFEST):
        print(f"{cfg.cache.path} is already complete (`had cache-info {cfg.cache.path}` to verify it)")
        return manifest_io.load(storage)[0]
    jobs = [_job(cfg, plan, s) for s in range(plan.layout.n_shards) if read_commit(storage, s) is None]
    done = plan.layout.n_shards - len(jobs)
    if done:
        print(f"resuming: {done} of {plan.layout.n_shards} shards already committed")
    try:
        if jobs and (cfg.cache.scheduler or cfg.cache.workers > 1 or (cfg.cache.workers == 0 and _gpu_count() > 1)):
            _run_dask(cfg, plan, jobs)
        elif jobs:
            _run_local(jobs)
    except KeyboardInterrupt:
        done = sum(read_commit(storage, s) is not None for s in range(plan.layout.n_shards))
        print(f"interrupted: {done} of {plan.layout.n_shards} shards committed in {cfg.cache.path}; "
              "re-run the same command to resume", file=sys.stderr)
        raise
    records = [read_commit(storage, s) for s in range(plan.layout.n_shards)]
    missing = [s for s, r in enumerate(records) if r is None]
    if missing:
        raise HadError(f"{cfg.cache.path}: shards {missing[:10]} did not commit; re-run the same command to resume")
    manifest = manifest_io.build(plan.identity | {"sources": plan.sources}, plan.layout, records)
    manifest_io.write(storage, manifest)
    print(f"cache written to {cfg.cache.path}: {plan.layout.n_items} items in {plan.layout.n_shards} shards, "
          f"{manifest['totals']['nbytes'] / 1e6:.1f} MB; not covered: {plan.windows.coverage()}")
    print(f"numerics: {manifest_io.describe_numerics(manifest)}")
    return manifest


def info(path: str, verify: bool = True) -> dict:
    """Print a cache's manifest summary; with verify, re-check every shard's size and crc32c."""
    manifest, layout = manifest_io.load(Storage(path))
    keys = ("format_version", "teacher", "layer", "teacher_dim", "feature_dtype", "window", "n_views", "n_windows", "n_items", "created")
    for key in keys:
        print(f"{key:>14}: {manifest.get(key)}")
    print(f"{'shards':>14}: {layout.n_shards} x {layout.shard_items} items, {manifest['totals']['nbytes'] / 1e6:.1f} MB")
    totals = manifest["totals"]
    # Counted as --dry-run counts them: teacher tokens with each item's specials; visible = stored feature rows.
    specials = manifest.get("tokenizer_specials", 1)  # caches before the tokenizer families: NTv2's CLS
    print(f"{'tokens':>14}: {totals['n_tokens'] + specials * totals['n_items']} teacher (specials included), "
          f"{totals['n_visible']} visible (feature rows)")
    print(f"{'numerics':>14}: {manifest_io.describe_numerics(manifest)}")
    report = {"manifest": manifest}
    if verify:
        report |= manifest_io.verify(path)
        print(f"{'verify':>14}: " + ("ok" if report["ok"] else f"{len(report['bad'])} BAD"))
        for shard, array, reason in report["bad"][:20]:
            print(f"{'':>14}  shard {shard} {array}: {reason}")
        if len(report["bad"]) > 20:
            print(f"{'':>14}  ... and {len(report['bad']) - 20} more")
        if not report["ok"]:
            raise HadError(f"{path}: {len(report['bad'])} shard object(s) failed verification")
    return report


def make_plan(cfg: RunConfig) -> Plan:
    """Validate every input (genome, teacher, layer, window, options) and plan the cache; writes nothing."""
    if cfg.mask.teacher_input not in ("masked", "full"):
        raise HadError(f"mask.teacher_input={cfg.mask.teacher_input!r}: expected masked or full")
    if cfg.mask.views < 1 or cfg.cache.shard_windows < 1:
        raise HadError("mask.views and cache.shard_windows must be >= 1")
    windows = iter_windows(cfg.genome)
    teacher = _teacher(_driver_teacher(cfg))
    teacher.check_layer(cfg.teacher.layer)
    fewest = teacher.tokenizer.fewest_tokens(cfg.genome.window)
    if teacher.max_tokens is not None and fewest > teacher.max_tokens:
        raise HadError(f"genome.window={cfg.genome.window}: at least {fewest} teacher tokens, "
                       f"but {cfg.teacher.model} takes at most {teacher.max_tokens}")
    if len(windows) == 0:
        raise HadError(f"{cfg.genome.bed or cfg.genome.fasta}: no window of {cfg.genome.window} nt passes the filters "
                       f"({windows.coverage()}; {windows.n_skipped_n} of {windows.n_candidates} windows over "
                       "genome.max_n_fraction)")
    n_views = cfg.mask.views * (2 if cfg.mask.reverse_complement else 1)
    layout = Layout(
        n_items=len(windows) * n_views,
        window=cfg.genome.window,
        teacher_dim=teacher.hidden_size,
        feature_dtype=cfg.cache.feature_dtype,
        shard_items=cfg.cache.shard_windows,
        compression_level=cfg.cache.compression_level,
    )
    teacher_tokens, visible, exact, longest = _count_tokens(cfg, windows, teacher, n_views)
    if teacher.max_tokens is not None and longest > teacher.max_tokens:
        raise HadError(f"genome.window={cfg.genome.window}: up to {longest} teacher tokens per window (specials "
                       f"included), but {cfg.teacher.model} takes at most {teacher.max_tokens}; lower genome.window")
    genome = dataclasses.asdict(cfg.genome)
    genome.pop("fasta")
    genome["bed"] = fasta_fingerprint(cfg.genome.bed) if cfg.genome.bed else None
    identity = {
        "format_version": FORMAT_VERSION,
        "teacher": cfg.teacher.model,
        "teacher_config_hash": teacher.config_hash,
        "teacher_fingerprint": teacher.fingerprint,
        "teacher_dtype": _resolved_teacher(cfg)["dtype"],
        "vocab_hash": teacher.tokenizer.vocab_hash,
        "tokenizer_family": teacher.tokenizer.family,
        "tokenizer_specials": teacher.tokenizer.n_specials,
        "layer": cfg.teacher.layer,
        "teacher_dim": teacher.hidden_size,
        "feature_dtype": cfg.cache.feature_dtype,
        "mask": dataclasses.asdict(cfg.mask),
        "n_views": n_views,
        "window": cfg.genome.window,
        "genome": genome | {"fasta_fingerprint": fasta_fingerprint(cfg.genome.fasta), "contig_names": list(windows.contigs)},
        "n_windows": len(windows),
        "n_items": layout.n_items,
        "layout": layout.to_dict(),
    }
    identity = json.loads(json.dumps(identity))  # the form it takes in the store's attributes
    sources = {"fasta": cfg.genome.fasta, "bed": cfg.genome.bed}
    return Plan(windows, layout, identity, sources, n_views, teacher_tokens, visible, exact)


def _store_action(storage: Storage, plan: Plan, cfg: RunConfig) -> str:
    """What the run will do with --out: "new" (absent or empty), "resume" (a cache of this same
    config), "replace" (a had cache to delete first); HadError when it must not be touched.

    Only a had cache is ever deleted: its root zarr.json carries had's attributes (FORMAT.md,
    "Recognising a cache") and it holds nothing but the cache's own files.
    """
    path = cfg.cache.path
    if storage.local and os.path.exists(storage.root) and not os.path.isdir(storage.root):
        raise HadError(f"--out {path} is a file, not a directory: choose a new or empty directory")
    if not storage.list(""):
        return "new"
    attributes = cache_attributes(storage)
    if not {"had", "had_creating"} & set(attributes):
        raise HadError(f"--out {path} exists and is not a had cache (no zarr.json written by had): "
                       "had never deletes it; choose a new or empty directory")
    if "had" in attributes:
        existing = attributes["had"]
        diff = sorted(k for k in set(existing) | set(plan.identity) if existing.get(k) != plan.identity.get(k))
        if not diff:
            return "resume"
        foreign = foreign_names(storage)
        if foreign:
            raise HadError(f"--out {path} holds a cache written with a different config (differs in: {', '.join(diff)}) "
                           f"and other files ({', '.join(foreign[:3])}): had will not delete it; choose another --out")
        if not cfg.cache.overwrite:
            raise HadError(f"--out {path} holds a cache written with a different config (differs in: {', '.join(diff)}); "
                           "choose another --out, or pass --overwrite to replace it")
        return "replace"
    foreign = foreign_names(storage)  # had_creating: creation was interrupted, no shard written yet
    if foreign:
        raise HadError(f"--out {path} holds a half-created had cache and other files ({', '.join(foreign[:3])}): "
                       "had will not delete it; choose another --out")
    return "replace"


def _prepare_store(storage: Storage, plan: Plan, cfg: RunConfig) -> None:
    """Create the store, or check that an existing one was started with the same identity."""
    action = _store_action(storage, plan, cfg)
    if action == "resume":
        storage.remove_partials()
        return
    if action == "replace":
        remove_cache(storage)
    if storage.local:
        try:
            os.makedirs(storage.root, exist_ok=True)
        except OSError as e:
            raise HadError(f"--out {cfg.cache.path}: cannot create the directory ({e.strerror})") from None
    create_store(storage, plan.layout, plan.identity,
                 files={"config.yaml": yaml.safe_dump(cfg.to_dict(), sort_keys=False).encode()})


def _job(cfg: RunConfig, plan: Plan, shard: int) -> ShardJob:
    items = plan.layout.shard_range(shard)
    lo, hi = items.start // plan.n_views, (items.stop - 1) // plan.n_views + 1
    w = plan.windows
    return ShardJob(
        url=cfg.cache.path, layout=plan.layout, teacher=_resolved_teacher(cfg), mask=dataclasses.asdict(cfg.mask),
        fasta=cfg.genome.fasta, contigs=w.contigs, window_id=w.window_id[lo:hi], contig=w.contig[lo:hi],
        start=w.start[lo:hi], first_window=lo, shard=shard,
    )


# --- work on one shard (runs in the driver or in a Dask worker) ---

_TEACHERS: dict[str, Teacher] = {}
_FASTAS: dict[str, FastaFile] = {}
# A Dask GPU worker runs two shard tasks in threads: one teacher per process, loaded once,
# whose forwards take turns (two at once would only compete for the GPU and its memory).
_LOADING, _FORWARD = threading.Lock(), threading.Lock()


def _teacher(tcfg: dict) -> Teacher:
    """The teacher for this config, loaded once per process."""
    key = json.dumps(tcfg, sort_keys=True)
    with _LOADING:
        if key not in _TEACHERS:
            _TEACHERS[key] = load_teacher(tcfg["model"], tcfg["trust_remote_code"], tcfg["dtype"], tcfg["device"],
                                          tcfg["tokenizer"], tcfg["cpu_threads"])
    return _TEACHERS[key]


def _fasta(path: str) -> FastaFile:
    if path not in _FASTAS:
        _FASTAS[path] = FastaFile(path)
    return _FASTAS[path]


def prepare_items(job: ShardJob, teacher: Teacher) -> list[dict]:
    """Fetch, tokenize and mask the shard's window-views; adds the teacher's input ids (with its specials)."""
    fasta, tok, mask = _fasta(job.fasta), teacher.tokenizer, job.mask
    n_views = mask["views"] * (2 if mask["reverse_complement"] else 1)
    views, cached = [], {}
    for i in job.layout.shard_range(job.shard):
        w, view = divmod(i, n_views)
        r = w - job.first_window
        if r not in cached:
            cached = {r: fasta.fetch(job.contigs[job.contig[r]], int(job.start[r]), int(job.start[r]) + job.layout.window)}
        views.append((r, view, alphabet.reverse_complement(cached[r]) if view >= mask["views"] else cached[r]))
    items = []
    for (r, view, codes), (ids, spans) in zip(views, tok.tokenize_batch([codes for _, _, codes in views])):
        if teacher.max_tokens is not None and len(ids) + tok.n_specials > teacher.max_tokens:
            raise HadError(f"window {job.contigs[job.contig[r]]}:{job.start[r]} has {len(ids) + tok.n_specials} "
                           f"teacher tokens, more than {teacher.name} takes ({teacher.max_tokens}); "
                           "lower genome.max_n_fraction or genome.window")
        token_masked, nt_mask = grouping_mask(tok.maskable(ids), spans, len(codes), mask["ratio"], mask["seed"],
                                              int(job.window_id[r]), view, mask["span_tokens"])
        shown = np.where(token_masked, tok.mask_id, ids) if mask["teacher_input"] == "masked" else ids
        items.append({"nucleotides": codes, "nt_mask": nt_mask, "spans": spans, "token_masked": token_masked,
                      "input_ids": tok.input_ids(shown)})
    return items


def batches(lengths: list[int], max_tokens: int) -> list[list[int]]:
    """Group item indices, sorted by length, so each padded batch has at most max_tokens tokens."""
    out, current, width = [], [], 0
    for i in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        if current and max(width, lengths[i]) * (len(current) + 1) > max_tokens:
            out.append(current)
            current, width = [], 0
        current.append(i)
        width = max(width, lengths[i])
    return out + [current] if current else out


def pad_batch(items: list[dict], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad input ids: -> input_ids, attention_mask, both int64 [B, T]. Right even for a teacher whose
    tokenizer pads left (HyenaDNA): its windows all have the same token count, so nothing is padded."""
    width = max(len(item["input_ids"]) for item in items)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(items), width), dtype=torch.long)
    for row, item in enumerate(items):
        ids[row, : len(item["input_ids"])] = torch.from_numpy(item["input_ids"])
        attn[row, : len(item["input_ids"])] = 1
    return ids, attn


def compute_features(items: list[dict], teacher: Teacher, layer: int, max_tokens: int) -> None:
    """Run the teacher; sets item["features"] = float32 [n_vis, D], the visible tokens' rows in order."""
    first = len(teacher.tokenizer.prefix_ids)  # row of the first sequence token
    for batch in batches([len(item["input_ids"]) for item in items], max_tokens):
        ids, attn = pad_batch([items[i] for i in batch], teacher.tokenizer.pad_id)
        # pick the visible rows on the device: the host then copies and converts only what is kept
        # (no specials, no padding, no masked tokens), about 85% of the padded batch's rows
        visible = torch.zeros(ids.shape, dtype=torch.bool)
        for row, i in enumerate(batch):
            visible[row, first: first + len(items[i]["spans"])] = torch.from_numpy(~items[i]["token_masked"])
        feats = teacher.features(ids, attn, layer)
        rows = feats[visible.to(feats.device)].float().cpu().numpy()
        counts = visible.sum(1).tolist()
        for i, part in zip(batch, np.split(rows, np.cumsum(counts)[:-1])):
            items[i]["features"] = part


def compute_shard(job: ShardJob) -> dict:
    """Dask task: compute and write one shard; returns its commit record (idempotent)."""
    storage = Storage(job.url)
    record = read_commit(storage, job.shard)
    if record is not None:
        return record
    teacher = _teacher(job.teacher)
    items = prepare_items(job, teacher)
    with _FORWARD:
        compute_features(items, teacher, job.teacher["layer"], job.teacher["max_tokens_per_batch"])
    return _write(storage, job, items, _numerics(teacher, job))


def _numerics(teacher: Teacher, job: ShardJob) -> dict:
    """What decides a shard's feature bits beyond its identity (FORMAT.md, "Determinism"): the teacher's
    numerics and the batch size in tokens (it sets the padded shapes the kernels see)."""
    return teacher.numerics() | {"batch_tokens": job.teacher["max_tokens_per_batch"]}


def _write(storage: Storage, job: ShardJob, items: list[dict], numerics: dict) -> dict:
    try:
        return write_shard(storage, job.layout, job.shard, items, numerics)
    except OSError as e:
        raise HadError(f"writing shard {job.shard} to {job.url} failed: {e}; committed shards are kept, "
                       "re-run the same command to resume") from e


def _run_local(jobs: list[ShardJob]) -> None:
    """In-process pipeline: prepare shard k+1 and write shard k-1 in threads while the teacher runs shard k.

    On a CPU teacher the forward already uses every core, and the threads only add contention
    (measured: 0.70 vs 0.80 of bare-forward speed on 2 cores), so there the steps run in turn.
    """
    from concurrent.futures import ThreadPoolExecutor

    teacher = _teacher(jobs[0].teacher)
    storage = Storage(jobs[0].url)
    progress = _Progress(sum(len(j.layout.shard_range(j.shard)) for j in jobs), teacher.tokenizer.n_specials)
    if teacher.device.type == "cpu":
        for job in jobs:
            items = prepare_items(job, teacher)
            compute_features(items, teacher, job.teacher["layer"], job.teacher["max_tokens_per_batch"])
            progress.update(_write(storage, job, items, _numerics(teacher, job)))
        progress.close()
        return
    with ThreadPoolExecutor(1) as prep_pool, ThreadPoolExecutor(1) as write_pool:
        pending_prep = prep_pool.submit(prepare_items, jobs[0], teacher)
        pending_write = None
        for k, job in enumerate(jobs):
            items = pending_prep.result()
            if k + 1 < len(jobs):
                pending_prep = prep_pool.submit(prepare_items, jobs[k + 1], teacher)
            compute_features(items, teacher, job.teacher["layer"], job.teacher["max_tokens_per_batch"])
            if pending_write is not None:
                progress.update(pending_write.result())
            pending_write = write_pool.submit(_write, storage, job, items, _numerics(teacher, job))
        progress.update(pending_write.result())
    progress.close()


class _Progress:
    def __init__(self, total_items: int, specials: int):
        from tqdm.auto import tqdm

        # Into a log file (not a terminal) every update is a line: one a minute, not one a second.
        self.bar = tqdm(total=total_items, unit="window", desc="cache-teacher",
                        mininterval=1.0 if sys.stderr.isatty() else 60.0)
        self.t0, self.tokens, self.specials = time.perf_counter(), 0, specials

    def update(self, record: dict) -> None:
        self.tokens += record["n_tokens"] + self.specials * record["n_items"]
        elapsed = max(time.perf_counter() - self.t0, 1e-9)
        self.bar.update(record["n_items"])
        # refresh=False: a redraw here would bypass mininterval (one line per shard in a log file)
        self.bar.set_postfix(windows_s=f"{self.bar.n / elapsed:.1f}", tokens_s=f"{self.tokens / elapsed:.0f}",
                             refresh=False)

    def close(self) -> None:
        self.bar.close()


def _run_dask(cfg: RunConfig, plan: Plan, jobs: list[ShardJob]) -> None:
    """One task per shard on an existing scheduler, or a LocalCluster (one worker per GPU, or N CPU workers)."""
    import dask
    from distributed import Client, LocalCluster, as_completed

    gpus = _gpu_count()
    # A shard whose task kills its worker this many times fails the run instead of killing workers forever.
    dask.config.set({"distributed.scheduler.allowed-failures": 3})
    if cfg.cache.scheduler:
        try:
            client, cluster = Client(cfg.cache.scheduler, timeout=SCHEDULER_TIMEOUT_S), None
        except (OSError, ValueError) as e:  # OSError includes the connect timeout
            raise HadError(f"--scheduler {cfg.cache.scheduler}: cannot connect to a Dask scheduler ({e}); "
                           "committed shards are kept") from None
        workers = client.scheduler_info()["workers"].values()
        use_gpu = any("GPU" in w.get("resources", {}) for w in workers)
    elif cfg.cache.workers == 0 and gpus:
        cluster, use_gpu = _GPUCluster(range(gpus)), True
        client = Client(cluster)
    else:
        cluster = LocalCluster(n_workers=cfg.cache.workers or 1, threads_per_worker=1, processes=True,
                               dashboard_address=":0", memory_limit=0)
        client, use_gpu = Client(cluster), False
    try:
        import bokeh  # noqa: F401

        print(f"Dask dashboard: {client.dashboard_link}")
    except ImportError:
        pass
    tag = config_hash(plan.identity)[:8]
    jobs = [_for_workers(j) for j in jobs]
    futures = client.map(compute_shard, jobs, key=[f"shard-{j.shard:06d}-{tag}" for j in jobs],
                         resources={"GPU": 1} if use_gpu else None, retries=1)
    progress = _Progress(sum(len(j.layout.shard_range(j.shard)) for j in jobs), plan.identity["tokenizer_specials"])
    try:
        pending = as_completed(futures)
        del futures  # hold each future only until it completes (lost results would be recomputed)
        for future in pending:
            progress.update(future.result())
            future.release()
    finally:
        progress.close()
        client.close()
        if cluster is not None:
            cluster.close()


def _for_workers(job: ShardJob) -> ShardJob:
    """The job with its local paths absolute: a worker of an existing cluster runs in its own directory."""
    teacher = job.teacher | {"model": absolute_local(job.teacher["model"])}
    return dataclasses.replace(job, url=absolute_local(job.url), fasta=absolute_local(job.fasta), teacher=teacher)


def _gpu_count() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


GPU_SLOTS = 2  # shard tasks per GPU worker: one on the GPU while the other tokenizes or writes


class _GPUCluster:
    """LocalCluster with one worker process per GPU (pinned by CUDA_VISIBLE_DEVICES), GPU_SLOTS threads."""

    def __new__(cls, gpus):
        from distributed import LocalCluster

        class GPUCluster(LocalCluster):
            def __init__(self, gpus):
                self._gpus = list(gpus)
                super().__init__(n_workers=0, processes=True, threads_per_worker=GPU_SLOTS,
                                 dashboard_address=":0", memory_limit=0)
                self.scale(len(self._gpus))

            def new_worker_spec(self):
                name = min(set(self._gpus) - set(self.worker_spec))
                spec = copy.deepcopy(self.new_spec)
                spec["options"].update(env={"CUDA_VISIBLE_DEVICES": str(name)}, resources={"GPU": GPU_SLOTS},
                                       name=name)
                return {name: spec}

        return GPUCluster(gpus)


# --- plan helpers ---

def _resolved_teacher(cfg: RunConfig) -> dict:
    """TeacherConfig fields with device and dtype resolved (they decide the values, so they are recorded)."""
    t: TeacherConfig = cfg.teacher
    local = resolve_device("auto", "teacher.device").type
    device = t.device if t.device != "auto" else ("cuda" if cfg.cache.scheduler else local)  # a cluster's workers have GPUs
    dtype = t.dtype if t.dtype != "auto" else ("bf16" if device.startswith("cuda") else "fp32")
    return dataclasses.asdict(t) | {"device": device, "dtype": dtype}


def _driver_teacher(cfg: RunConfig) -> dict:
    """The teacher config the driver validates with: on CPU unless the driver itself has a GPU."""
    tcfg = _resolved_teacher(cfg)
    return tcfg if _gpu_count() or tcfg["device"] == "cpu" else tcfg | {"device": "cpu"}


def _count_tokens(cfg: RunConfig, windows: WindowTable, teacher: Teacher, n_views: int) -> tuple[int, int, bool, int]:
    """(teacher tokens incl. specials, visible tokens) over all items, from up to PLAN_SAMPLE windows;
    whether that is exact, and the most tokens of one sampled window (specials included)."""
    fasta, tok = _fasta(cfg.genome.fasta), teacher.tokenizer
    sample = np.unique(np.linspace(0, len(windows) - 1, min(PLAN_SAMPLE, len(windows))).astype(np.int64))
    tokens = visible = longest = 0
    for r in sample:
        contig, start, end = windows.locus(int(r))
        ids, spans = tok.tokenize(fasta.fetch(contig, start, end))
        # Token counts are the same for a window and its reverse complement for the k-mer and char families
        # (same N runs); BPE counts of the two strands differ a little, this counts the forward one.
        masked, _ = grouping_mask(tok.maskable(ids), spans, end - start, cfg.mask.ratio, cfg.mask.seed, 0, 0,
                                  cfg.mask.span_tokens)
        tokens += len(ids) + tok.n_specials
        longest = max(longest, len(ids) + tok.n_specials)
        visible += len(ids) - int(masked.sum())
    scale = len(windows) * n_views / len(sample)
    exact = len(sample) == len(windows) and not (tok.family == "bpe" and cfg.mask.reverse_complement)
    return round(tokens * scale), round(visible * scale), exact, longest


def _throughput_estimate(cfg: RunConfig, plan: Plan) -> dict:
    """Time the teacher on a few real batches of this plan to estimate device-hours for the whole run."""
    tcfg = _driver_teacher(cfg)
    teacher = _teacher(tcfg)
    n = min(plan.layout.n_items, 32)
    job = _job(cfg, dataclasses.replace(plan, layout=dataclasses.replace(plan.layout, n_items=n, shard_items=n)), 0)
    items = prepare_items(job, teacher)
    compute_features(items[:2], teacher, cfg.teacher.layer, tcfg["max_tokens_per_batch"])  # warm-up
    t0 = time.perf_counter()
    compute_features(items, teacher, cfg.teacher.layer, tcfg["max_tokens_per_batch"])
    if teacher.device.type == "cuda":
        torch.cuda.synchronize()
    rate = sum(len(item["input_ids"]) for item in items) / (time.perf_counter() - t0)
    return {
        "measured_tokens_per_s": round(rate),
        "measured_on": f"{teacher.device} ({tcfg['dtype']})",
        "estimated_device_hours": round(plan.teacher_tokens / rate / 3600, 3),
    }
