"""`had train` throughput: nucleotides per second and the fraction of step time spent waiting for data.

    .venv/bin/python benchmarks/bench_train.py                                   # CPU, tiny student, on-disk cache
    python benchmarks/bench_train.py --device cuda --preset had-1.1m             # GPU: 1024 x 1024 nt, bf16, Triton
    python benchmarks/bench_train.py --device cuda --preset had-1.1m --source memory   # no zarr needed
    python benchmarks/bench_train.py --device cuda --preset had-1.1m --compile --items 10240 --pool 512 --cold

It runs the real `had.pipeline.train.run` (DataLoader workers, collate, autocast, accumulation,
AdamW) and reads its metrics.jsonl, dropping the first `--warmup` log windows (Triton compilation,
worker start-up). Items are synthetic windows tokenized by the real NTv2 tokenizer and masked by
the real grouping mask, with random teacher features of the preset's width. `--source disk` writes
them to a real cache (had.cache_store) in a temp dir (item i is pool item i % pool, every item its own
chunks on disk; `--cold` then evicts the files from the page cache, and with `--items` >= steps x batch
every read is a first read from the disk); `--source memory` serves a pool of items from RAM, so its
data wait is collate + host-to-device only, not storage reads.
Prints a Markdown block for benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from had.cache_store import CacheItem
from had.config import MaskConfig, load_config
from had.data.tokenizer import NTv2Tokenizer
from had.featurize import masked_item
from had.pipeline import train

PRESETS = {
    # student kwargs, window, teacher dim, global batch, micro batch
    "tiny": (dict(d_model=32, n_gdn_layers=2, n_heads=2, head_dim=16, mlp_hidden=64, attn_heads=2,
                  decoder_heads=2), 256, 64, 16, 16),
    "had-1.1m": (dict(), 1024, 1024, 1024, 256),
}


class SyntheticItems:
    """`pool` synthetic window-views, served as item i % pool (the CacheReader interface)."""

    def __init__(self, n_items: int, pool: int, window: int, teacher_dim: int, seed: int = 0):
        tok = NTv2Tokenizer.default()
        rng = np.random.default_rng(seed)
        self.items = []
        for i in range(pool):
            nuc = rng.integers(0, 4, window).astype(np.uint8)
            nuc[rng.random(window) < 0.01] = 4
            ids, spans = tok.tokenize(nuc)
            item = masked_item(nuc, ids, spans, tok, MaskConfig(ratio=0.15, seed=seed), i, 0)
            item.features = rng.standard_normal((int((~item.token_masked).sum()), teacher_dim), dtype=np.float32)
            self.items.append(item)
        self.n = n_items
        self.manifest = {"teacher_dim": teacher_dim, "window": window, "vocab_hash": tok.vocab_hash,
                         "teacher": "synthetic", "layer": -1, "feature_dtype": "fp32", "n_items": n_items}

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> CacheItem:
        return self.items[i % len(self.items)]


_WRITER_ITEMS: SyntheticItems | None = None  # set in each writer process (inherited through fork)


def _init_writer(items: SyntheticItems) -> None:
    global _WRITER_ITEMS
    _WRITER_ITEMS = items


def _write_shard(path: str, layout, shard: int) -> dict:
    from had.cache_store import Storage, write_shard

    return write_shard(Storage(path), layout, shard, [_WRITER_ITEMS[i] for i in layout.shard_range(shard)])


def write_disk_cache(path: Path, items: SyntheticItems, shard_items: int = 64, procs: int = 1) -> str:
    """Write the items as an fp16 cache, one shard per task on `procs` forked processes."""
    from had.cache_store import Layout, Storage
    from had.cache_store import manifest as manifest_io
    from had.cache_store.writer import create_store

    m = items.manifest
    layout = Layout(n_items=len(items), window=m["window"], teacher_dim=m["teacher_dim"], feature_dtype="fp16",
                    shard_items=shard_items)
    identity = {**m, "feature_dtype": "fp16", "layout": layout.to_dict()}
    storage = Storage(str(path))
    create_store(storage, layout, identity)
    tasks = [(str(path), layout, s) for s in range(layout.n_shards)]
    # fork before the GPU is touched: the children inherit the items instead of unpickling them per task
    with multiprocessing.get_context("fork").Pool(procs, _init_writer, (items,)) as pool:
        records = pool.starmap(_write_shard, tasks)
    manifest_io.write(storage, manifest_io.build(identity, layout, records))
    return str(path)


def evict_page_cache(path: Path) -> None:
    """Flush every file under path and drop it from the OS page cache, so the next reads hit the disk."""
    for file in path.rglob("*"):
        if file.is_file():
            fd = os.open(file, os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=list(PRESETS), default="tiny")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--source", choices=["disk", "memory"], default="disk")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--log-every", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=2, help="log windows dropped before averaging")
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--micro-batch-size", type=int)
    ap.add_argument("--items", type=int, default=512, help="window-views in the cache")
    ap.add_argument("--pool", type=int, default=None,
                    help="distinct synthetic items (default: 256 for memory, --items for disk)")
    ap.add_argument("--cold", action="store_true", help="disk: evict the written cache from the page cache")
    ap.add_argument("--write-procs", type=int, default=os.cpu_count(), help="disk: processes writing the cache")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--gdn-impl", default="auto")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (CPU)")
    ap.add_argument("--profile", type=int, default=0, metavar="N", help="print the N costliest ops (torch.profiler)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    student, window, teacher_dim, batch, micro = PRESETS[args.preset]
    batch, micro = args.batch_size or batch, args.micro_batch_size or micro
    workers = args.workers if args.workers is not None else (8 if args.device == "cuda" else 1)
    pool = min(args.pool or (256 if args.source == "memory" else args.items), args.items)
    t0 = time.perf_counter()
    items = SyntheticItems(args.items, pool, window, teacher_dim)
    with tempfile.TemporaryDirectory() as tmp:
        reader = None
        cache_path = "memory"
        if args.source == "disk":
            from had.cache_store import CacheReader

            cache_path = write_disk_cache(Path(tmp) / "cache", items, procs=args.write_procs)
            if args.cold:
                evict_page_cache(Path(cache_path))
            reader = CacheReader(cache_path)
        else:
            reader = items
        print(f"data ready in {time.perf_counter() - t0:.1f}s", flush=True)
        cfg = load_config("had-1.1m", {
            "genome.window": window, "cache.path": cache_path, "train.out": str(Path(tmp) / "run"),
            "train.steps": args.steps, "train.batch_size": batch, "train.micro_batch_size": micro,
            "train.log_every": args.log_every, "train.checkpoint_every": 10**9, "train.num_workers": workers,
            "train.device": args.device, "train.compile": args.compile,
        })
        cfg.student = {**student, "gdn_impl": args.gdn_impl}
        if args.profile:
            from torch.profiler import ProfilerActivity, profile

            activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if args.device == "cuda" else [])
            with profile(activities=activities) as prof:
                train.run(cfg, reader)
            sort = "self_cuda_time_total" if args.device == "cuda" else "self_cpu_time_total"
            print(prof.key_averages().table(sort_by=sort, row_limit=args.profile, max_name_column_width=60))
        else:
            train.run(cfg, reader)
        rows = [json.loads(x) for x in (Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()]
    kept = rows[args.warmup:] or rows
    nt_s = statistics.mean(r["nt_per_s"] for r in kept)
    wait = statistics.mean(r["data_wait"] for r in kept)
    dev = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU ({platform.processor() or 'x86-64'}, {torch.get_num_threads()} threads)"
    source = {"memory": "memory", "disk": f"disk ({args.items} items, {pool} distinct{', cold' if args.cold else ''})"}
    print("\n| device | preset | source | batch x window | micro | workers | compile | nt/s | data wait | final loss |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(f"| {dev} | {args.preset} | {source[args.source]} | {batch} x {window} | {micro} | {workers} | "
          f"{'yes' if args.compile else 'no'} | {nt_s:,.0f} | {wait:.1%} | {rows[-1]['loss']:.3f} |")
    print(f"(mean over log windows {len(rows) - len(kept) + 1}..{len(rows)} of {args.log_every} steps; "
          f"torch {torch.__version__})")


if __name__ == "__main__":
    main()
