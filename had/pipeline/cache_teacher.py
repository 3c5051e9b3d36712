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

import dataclasses
import json
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch
import yaml

from had import featurize
from had.cache_store import FORMAT_VERSION, Layout, Storage, read_commit
from had.cache_store import manifest as manifest_io
from had.cache_store.features import CODECS
from had.cache_store.lifecycle import prepare_store, store_action
from had.cluster import dask_client, dashboard_note, gpu_count
from had.config import RunConfig, TeacherConfig, config_hash
from had.data.fasta import WindowTable, fasta_fingerprint, iter_windows
from had.data.masking import grouping_mask
from had.errors import HadError
from had.featurize import ShardJob, fasta_file, teacher_for
from had.runtime import resolve_device
from had.teacher import Teacher

PLAN_SAMPLE = 2048  # windows tokenized to estimate token counts in the plan


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
            "raw_feature_bytes": {k: int(self.visible_tokens * d * c.bytes_per_dim) for k, c in CODECS.items()},
        }


def run(cfg: RunConfig, dry_run: bool = False) -> dict:
    """Build (or resume) the cache at cfg.cache.path; with dry_run only print and return the plan."""
    plan = make_plan(cfg)
    storage = Storage(cfg.cache.path)
    if dry_run:
        summary = plan.summary() | _throughput_estimate(cfg, plan)
        try:  # a refusal (existing cache of another config, not a cache, ...) ends the dry run as it would the run
            summary["out"] = f"{store_action(storage, plan.identity, cfg.cache.overwrite)} ({cfg.cache.path})"
        finally:
            print(json.dumps(summary, indent=1))
        return summary
    prepare_store(storage, plan.layout, plan.identity, cfg.cache.overwrite,
                  files={"config.yaml": yaml.safe_dump(cfg.to_dict(), sort_keys=False).encode()})
    if storage.exists(manifest_io.MANIFEST):
        print(f"{cfg.cache.path} is already complete (`had cache-info {cfg.cache.path}` to verify it)")
        return manifest_io.load(storage)[0]
    jobs = [shard_job(cfg, plan, s) for s in range(plan.layout.n_shards) if read_commit(storage, s) is None]
    done = plan.layout.n_shards - len(jobs)
    if done:
        print(f"resuming: {done} of {plan.layout.n_shards} shards already committed")
    try:
        if jobs and (cfg.cache.scheduler or cfg.cache.workers > 1 or (cfg.cache.workers == 0 and gpu_count() > 1)):
            run_cluster(cfg, plan, jobs)
        elif jobs:
            run_local(jobs)
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
    teacher = teacher_for(driver_teacher(cfg))
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
        "teacher_dtype": _resolved_teacher(cfg).dtype,
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


def shard_job(cfg: RunConfig, plan: Plan, shard: int) -> ShardJob:
    """The work of one shard of the plan."""
    items = plan.layout.shard_range(shard)
    lo, hi = items.start // plan.n_views, (items.stop - 1) // plan.n_views + 1
    w = plan.windows
    return ShardJob(
        url=cfg.cache.path, layout=plan.layout, teacher=_resolved_teacher(cfg), mask=cfg.mask,
        fasta=cfg.genome.fasta, contigs=w.contigs, window_id=w.window_id[lo:hi], contig=w.contig[lo:hi],
        start=w.start[lo:hi], first_window=lo, shard=shard,
    )


def run_local(jobs: list[ShardJob]) -> None:
    """In-process pipeline: prepare shard k+1 and write shard k-1 in threads while the teacher runs shard k.

    On a CPU teacher the forward already uses every core, and the threads only add contention
    (measured: 0.70 vs 0.80 of bare-forward speed on 2 cores), so there the steps run in turn.
    """
    from concurrent.futures import ThreadPoolExecutor

    teacher = teacher_for(jobs[0].teacher)
    storage = Storage(jobs[0].url)
    progress = _Progress(sum(len(j.layout.shard_range(j.shard)) for j in jobs), teacher.tokenizer.n_specials)
    if teacher.device.type == "cpu":
        for job in jobs:
            items, input_ids = featurize.prepare_items(job, teacher)
            featurize.compute_features(items, input_ids, teacher, job.teacher.layer, job.teacher.max_tokens_per_batch)
            progress.update(featurize.write(storage, job, items, featurize.numerics(teacher, job)))
        progress.close()
        return
    with ThreadPoolExecutor(1) as prep_pool, ThreadPoolExecutor(1) as write_pool:
        pending_prep = prep_pool.submit(featurize.prepare_items, jobs[0], teacher)
        pending_write = None
        for k, job in enumerate(jobs):
            items, input_ids = pending_prep.result()
            if k + 1 < len(jobs):
                pending_prep = prep_pool.submit(featurize.prepare_items, jobs[k + 1], teacher)
            featurize.compute_features(items, input_ids, teacher, job.teacher.layer, job.teacher.max_tokens_per_batch)
            if pending_write is not None:
                progress.update(pending_write.result())
            pending_write = write_pool.submit(featurize.write, storage, job, items, featurize.numerics(teacher, job))
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


def run_cluster(cfg: RunConfig, plan: Plan, jobs: list[ShardJob]) -> None:
    """One task per shard on an existing scheduler, or a local cluster (one worker per GPU, or N CPU workers)."""
    from distributed import as_completed

    gpus = gpu_count() if cfg.cache.workers == 0 else 0
    with dask_client(cfg.cache.scheduler, cfg.cache.workers, gpus, kept="committed shards are kept") as (client, use_gpu):
        if note := dashboard_note(client):
            print(note)
        tag = config_hash(plan.identity)[:8]
        jobs = [j.for_workers() for j in jobs]
        futures = client.map(featurize.compute_shard, jobs, key=[f"shard-{j.shard:06d}-{tag}" for j in jobs],
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


# --- plan helpers ---

def _resolved_teacher(cfg: RunConfig) -> TeacherConfig:
    """TeacherConfig fields with device and dtype resolved (they decide the values, so they are recorded)."""
    t: TeacherConfig = cfg.teacher
    local = resolve_device("auto", "teacher.device").type
    device = t.device if t.device != "auto" else ("cuda" if cfg.cache.scheduler else local)  # a cluster's workers have GPUs
    dtype = t.dtype if t.dtype != "auto" else ("bf16" if device.startswith("cuda") else "fp32")
    return dataclasses.replace(t, device=device, dtype=dtype)


def driver_teacher(cfg: RunConfig) -> TeacherConfig:
    """The teacher config the driver validates with: on CPU unless the driver itself has a GPU."""
    tcfg = _resolved_teacher(cfg)
    return tcfg if gpu_count() or tcfg.device == "cpu" else dataclasses.replace(tcfg, device="cpu")


def _count_tokens(cfg: RunConfig, windows: WindowTable, teacher: Teacher, n_views: int) -> tuple[int, int, bool, int]:
    """(teacher tokens incl. specials, visible tokens) over all items, from up to PLAN_SAMPLE windows;
    whether that is exact, and the most tokens of one sampled window (specials included)."""
    fasta, tok = fasta_file(cfg.genome.fasta), teacher.tokenizer
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
    tcfg = driver_teacher(cfg)
    teacher = teacher_for(tcfg)
    n = min(plan.layout.n_items, 32)
    job = shard_job(cfg, dataclasses.replace(plan, layout=dataclasses.replace(plan.layout, n_items=n, shard_items=n)), 0)
    items, input_ids = featurize.prepare_items(job, teacher)
    featurize.compute_features(items[:2], input_ids[:2], teacher, cfg.teacher.layer, tcfg.max_tokens_per_batch)  # warm-up
    t0 = time.perf_counter()
    featurize.compute_features(items, input_ids, teacher, cfg.teacher.layer, tcfg.max_tokens_per_batch)
    if teacher.device.type == "cuda":
        torch.cuda.synchronize()
    rate = sum(len(ids) for ids in input_ids) / (time.perf_counter() - t0)
    return {
        "measured_tokens_per_s": round(rate),
        "measured_on": f"{teacher.device} ({tcfg.dtype})",
        "estimated_device_hours": round(plan.teacher_tokens / rate / 3600, 3),
    }
