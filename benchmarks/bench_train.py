"""`had train` throughput: nucleotides per second and the fraction of step time spent waiting for data.

    .venv/bin/python benchmarks/bench_train.py                                   # CPU, tiny student, on-disk cache
    python benchmarks/bench_train.py --device cuda --preset had-1.1m             # GPU: 1024 x 1024 nt, bf16, Triton
    python benchmarks/bench_train.py --device cuda --preset had-1.1m --source memory   # no zarr needed

It runs the real `had.pipeline.train.run` (DataLoader workers, collate, autocast, accumulation,
AdamW) and reads its metrics.jsonl, dropping the first `--warmup` log windows (Triton compilation,
worker start-up). Items are synthetic windows tokenized by the real NTv2 tokenizer and masked by
the real grouping mask, with random teacher features of the preset's width. `--source disk` writes
them to a real cache (had.cache_store) in a temp dir; `--source memory` serves a pool of items
from RAM, so its data wait is collate + host-to-device only, not storage reads.
Prints a Markdown block for benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from had.config import load_config
from had.data.masking import grouping_mask
from had.data.tokenizer import NTv2Tokenizer
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
            token_masked, nt_mask = grouping_mask(ids, spans, window, 0.15, seed, i, 0)
            feats = rng.standard_normal((int((~token_masked).sum()), teacher_dim), dtype=np.float32)
            self.items.append({"nucleotides": nuc, "nt_mask": nt_mask, "spans": spans,
                               "token_masked": token_masked, "features": feats})
        self.n = n_items
        self.manifest = {"teacher_dim": teacher_dim, "window": window, "vocab_hash": tok.vocab_hash,
                         "teacher": "synthetic", "layer": -1, "feature_dtype": "fp32", "n_items": n_items}

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        return self.items[i % len(self.items)]


def write_disk_cache(path: Path, items: SyntheticItems, shard_items: int = 64) -> str:
    import zarr

    from had.cache_store import Layout, Storage, write_shard
    from had.cache_store import manifest as manifest_io
    from had.cache_store.layout import create_arrays

    m = items.manifest
    layout = Layout(n_items=len(items), window=m["window"], teacher_dim=m["teacher_dim"], feature_dtype="fp16",
                    shard_items=shard_items)
    identity = {**m, "feature_dtype": "fp16", "layout": layout.to_dict()}
    storage = Storage(str(path))
    create_arrays(zarr.create_group(storage.zarr_store, zarr_format=3, attributes={"had": identity}), layout)
    records = [write_shard(storage, layout, s, [items[i] for i in layout.shard_range(s)]) for s in range(layout.n_shards)]
    manifest_io.write(storage, manifest_io.build(identity, layout, records))
    return str(path)


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
    ap.add_argument("--pool", type=int, default=256, help="distinct synthetic items (memory source)")
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
    pool = min(args.pool, args.items) if args.source == "memory" else args.items
    t0 = time.perf_counter()
    items = SyntheticItems(args.items, pool, window, teacher_dim)
    with tempfile.TemporaryDirectory() as tmp:
        reader = None
        cache_path = "memory"
        if args.source == "disk":
            from had.cache_store import CacheReader

            cache_path = write_disk_cache(Path(tmp) / "cache", items)
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
    print(f"\n| device | preset | source | batch x window | micro | workers | nt/s | data wait | final loss |")
    print(f"|---|---|---|---|---|---|---|---|---|")
    print(f"| {dev} | {args.preset} | {args.source} | {batch} x {window} | {micro} | {workers} | "
          f"{nt_s:,.0f} | {wait:.1%} | {rows[-1]['loss']:.3f} |")
    print(f"(mean over log windows {len(rows) - len(kept) + 1}..{len(rows)} of {args.log_every} steps; "
          f"torch {torch.__version__})")


if __name__ == "__main__":
    main()
