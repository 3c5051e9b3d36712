"""Teacher-cache benchmark: write efficiency, storage cost and fidelity per dtype, read throughput.

    .venv/bin/python benchmarks/bench_cache.py            # full (writes a >= 1 GB read-test cache)
    .venv/bin/python benchmarks/bench_cache.py --quick    # a few seconds per part

1. End-to-end cache-teacher throughput / bare teacher forward throughput on the same
   batches, interleaved in one process (goal >= 0.85).
2. Bytes on disk per feature dimension and mean cosine after per-channel standardisation
   against the teacher's fp32 output, for fp16 / bf16 / int8; plus fp16 stored from a
   bf16 teacher (lossless?).
3. Random-access read throughput (windows/s) of CacheReader, in-process and with N
   DataLoader workers, against zarr ``Array[...]`` reads of the same items in the same run.
Prints a Markdown section for benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import zarr

from had.cache_store import CacheReader, Layout, Storage, write_shard
from had.cache_store import manifest as manifest_io
from had.cache_store.layout import create_arrays
from had.config import load_config
from had.pipeline import cache_teacher as ct
from had.teacher import build_tiny_teacher

ROOT = Path(__file__).resolve().parents[1]
FASTA = ROOT / ".." / "shared" / "data" / "real" / "genome" / "chr20_1mb_grch37.fa"


def std_cos(ref: np.ndarray, got: np.ndarray) -> float:
    """Mean row cosine after standardising every channel with the reference's mean and std."""
    mu, sd = ref.mean(0), ref.std(0) + 1e-12
    a, b = (ref - mu) / sd, (got - mu) / sd
    return float(np.mean(np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-30)))


def bench_write(work: Path, teacher_dir: Path, n_windows: int, repeats: int) -> dict:
    """Part 1: end-to-end (prepare + forward + write, pipelined) vs bare forward on the same batches."""
    cfg = load_config("tiny", {
        "genome.fasta": str(FASTA), "genome.window": 1024, "teacher.model": str(teacher_dir),
        "teacher.max_tokens_per_batch": 16384, "mask.reverse_complement": True, "cache.shard_windows": 64,
        "cache.path": str(work / "e2e"),
    })
    plan = ct.make_plan(cfg)
    n_items = min(plan.layout.n_items, 2 * n_windows)
    plan = dataclasses.replace(plan, layout=dataclasses.replace(plan.layout, n_items=n_items))
    teacher = ct._teacher(ct._driver_teacher(cfg))
    jobs = [ct._job(cfg, plan, s) for s in range(plan.layout.n_shards)]
    prepared = [ct.prepare_items(job, teacher) for job in jobs]
    tokens = sum(len(it["input_ids"]) for items in prepared for it in items)
    bare, e2e, ratios = [], [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for items in prepared:
            ct.compute_features(items, teacher, -1, cfg.teacher.max_tokens_per_batch)
        bare.append(time.perf_counter() - t0)
        shutil.rmtree(work / "e2e", ignore_errors=True)
        ct._prepare_store(Storage(cfg.cache.path), plan, cfg)
        t0 = time.perf_counter()
        ct._run_local(jobs)
        e2e.append(time.perf_counter() - t0)
        ratios.append(bare[-1] / e2e[-1])
    # Where the time goes, step by step in one pass (less sensitive to other jobs on the machine).
    steps = {"prepare": 0.0, "forward": 0.0, "write": 0.0}
    storage = Storage(cfg.cache.path)
    for job in jobs:
        t0 = time.perf_counter()
        items = ct.prepare_items(job, teacher)
        t1 = time.perf_counter()
        ct.compute_features(items, teacher, -1, cfg.teacher.max_tokens_per_batch)
        t2 = time.perf_counter()
        write_shard(storage, job.layout, job.shard, items)
        steps["prepare"] += t1 - t0
        steps["forward"] += t2 - t1
        steps["write"] += time.perf_counter() - t2
    b, e = statistics.median(bare), statistics.median(e2e)
    return {"items": n_items, "tokens": tokens, "bare_tok_s": tokens / b, "e2e_tok_s": tokens / e,
            "e2e_windows_s": n_items / e, "ratio": statistics.median(ratios), "ratios": ratios, "steps": steps,
            "teacher": "tiny (hidden 64, 2 layers)"}


def bench_dtypes(work: Path, teacher_dir: Path, n_windows: int) -> list[dict]:
    """Part 2: bytes/dim and standardised cosine of each stored dtype vs the fp32 teacher output."""
    rows = []
    cfg = load_config("tiny", {
        "genome.fasta": str(FASTA), "genome.window": 1024, "teacher.model": str(teacher_dir),
        "teacher.max_tokens_per_batch": 16384, "mask.reverse_complement": False, "cache.shard_windows": 64,
    })
    plan = ct.make_plan(cfg)
    plan = dataclasses.replace(plan, layout=dataclasses.replace(plan.layout, n_items=min(plan.layout.n_items, n_windows)))
    for teacher_dtype in ("fp32", "bf16"):
        cfg.teacher.dtype = teacher_dtype
        teacher = ct._teacher(ct._driver_teacher(cfg))
        items = [it for s in range(plan.layout.n_shards)
                 for it in ct.prepare_items(ct._job(cfg, plan, s), teacher)]
        ct.compute_features(items, teacher, -1, cfg.teacher.max_tokens_per_batch)
        if teacher_dtype == "fp32":
            reference = np.concatenate([it["features"] for it in items])
        stored_dtypes = ("fp16", "bf16", "int8") if teacher_dtype == "fp32" else ("fp16",)
        for dtype in stored_dtypes:
            layout = dataclasses.replace(plan.layout, feature_dtype=dtype)
            path = work / f"dtype-{teacher_dtype}-{dtype}"
            storage = Storage(str(path))
            create_arrays(zarr.create_group(storage.zarr_store, zarr_format=3, overwrite=True), layout)
            records = [write_shard(storage, layout, s, [items[i] for i in layout.shard_range(s)])
                       for s in range(layout.n_shards)]
            manifest_io.write(storage, manifest_io.build({"n_items": layout.n_items}, layout, records))
            reader = CacheReader(str(path))
            got = np.concatenate([reader[i]["features"] for i in range(len(reader))])
            computed = np.concatenate([it["features"] for it in items])
            nbytes = sum(r["objects"][k]["nbytes"] for r in records for k in r["objects"]
                         if k in ("features", "scales", "chan_mean", "chan_std"))
            rows.append({
                "teacher": teacher_dtype, "stored": dtype, "B_per_dim": nbytes / got.size,
                "std_cos_vs_fp32": std_cos(reference, got),
                "changed": float(np.mean(got != computed)),
                "max_abs_err": float(np.max(np.abs(got - computed))),
            })
    return rows


def _synthetic_cache(path: Path, n_items: int, dim: int, rng) -> None:
    """A cache shaped like NTv2-500M's on 1024-nt windows: ~148 visible of ~174 tokens, bf16-valued features."""
    layout = Layout(n_items=n_items, window=1024, teacher_dim=dim, shard_items=256)
    storage = Storage(str(path))
    create_arrays(zarr.create_group(storage.zarr_store, zarr_format=3, overwrite=True), layout)
    channel_scale = np.exp(rng.normal(0, 0.5, dim)).astype(np.float32)
    records = []
    for s in range(layout.n_shards):
        items = []
        for _ in layout.shard_range(s):
            spans = np.stack([np.r_[np.arange(0, 1020, 6), 1020, 1021, 1022, 1023],
                              np.r_[np.full(170, 6), 1, 1, 1, 1]], 1).astype(np.int32)
            masked = np.zeros(174, bool)
            masked[rng.choice(170, 26, replace=False)] = True
            feats = torch.from_numpy(rng.normal(size=(148, dim)).astype(np.float32) * channel_scale)
            items.append({"nucleotides": rng.integers(0, 4, 1024).astype(np.uint8),
                          "nt_mask": np.repeat(masked[:170], 6).tolist() + [False] * 4,
                          "spans": spans, "token_masked": masked,
                          "features": feats.to(torch.bfloat16).float().numpy()})
            items[-1]["nt_mask"] = np.array(items[-1]["nt_mask"], bool)
        records.append(write_shard(storage, layout, s, items))
    manifest_io.write(storage, manifest_io.build({"n_items": n_items}, layout, records))


class _ZarrItems(torch.utils.data.Dataset):
    """The same items through zarr-python's Array[...] (one call per array per item)."""

    def __init__(self, path: str):
        self.path, self.group = path, None

    def __len__(self):
        return len(CacheReader(self.path))

    def __getitem__(self, i):
        if self.group is None:
            self.group = zarr.open_group(self.path, mode="r", zarr_format=3)
        g = self.group
        spans = g["spans"][i]
        n = int((spans[:, 1] > 0).sum())
        masked = g["token_masked"][i, :n]
        return {"nucleotides": g["nucleotides"][i], "nt_mask": g["nt_mask"][i], "spans": spans[:n],
                "token_masked": masked, "features": g["features"][i, : n - int(masked.sum())].astype(np.float32)}


def bench_read(work: Path, n_items: int, n_reads: int, dim: int) -> dict:
    """Part 3: random-access windows/s, direct reader vs zarr Array[...], in-process and DataLoader workers."""
    rng = np.random.default_rng(0)
    path = work / "read"
    _synthetic_cache(path, n_items, dim, rng)
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    order = rng.permutation(n_items)[:n_reads]
    direct, plain = CacheReader(str(path)), _ZarrItems(str(path))
    for i in order[:8]:  # equal items: the benchmark compares like with like
        a, b = direct[int(i)], plain[int(i)]
        assert all(np.array_equal(a[k], b[k]) for k in a)
    out = {"cache_GB": size / 1e9, "items": n_items, "dim": dim}
    for name, ds in (("direct", direct), ("zarr", plain)):
        t0 = time.perf_counter()
        for i in order:
            ds[int(i)]
        out[f"{name}_w0"] = n_reads / (time.perf_counter() - t0)
        for workers in (1, 2):
            loader = torch.utils.data.DataLoader(
                ds, batch_size=None, sampler=order.tolist(), num_workers=workers,
                multiprocessing_context="fork", prefetch_factor=8, collate_fn=lambda x: x)
            t0 = time.perf_counter()
            for _ in loader:
                pass
            out[f"{name}_w{workers}"] = n_reads / (time.perf_counter() - t0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (seconds)")
    parser.add_argument("--work", default=None, help="scratch directory (default: a temp dir, removed)")
    args = parser.parse_args()
    if not FASTA.is_file():
        raise SystemExit(f"needs {FASTA}")
    work = Path(args.work or tempfile.mkdtemp(prefix="bench_cache_"))
    work.mkdir(parents=True, exist_ok=True)
    teacher_dir = build_tiny_teacher(work / "teacher")
    write = bench_write(work, teacher_dir, n_windows=128 if args.quick else 512, repeats=5)
    dtypes = bench_dtypes(work, teacher_dir, n_windows=64 if args.quick else 256)
    read = bench_read(work, n_items=256 if args.quick else 4352, n_reads=300 if args.quick else 2000, dim=1024)
    if not args.work:
        shutil.rmtree(work)

    print(f"## Teacher cache\n\n{time.strftime('%Y-%m-%d')}, `.venv/bin/python benchmarks/bench_cache.py"
          f"{' --quick' if args.quick else ''}`, {platform.node()}: {os.cpu_count()} CPU cores, "
          f"torch {torch.__version__}, zarr {zarr.__version__}, load average {os.getloadavg()[0]:.1f} at the end "
          f"(machine shared with other jobs: absolute numbers are noisy).\n")
    print(f"**Write efficiency** ({write['teacher']}, {write['items']} window-views of 1024 nt, "
          f"{write['tokens']} teacher tokens, median of 5 interleaved pairs): bare forward "
          f"{write['bare_tok_s']:.0f} tok/s, end-to-end {write['e2e_tok_s']:.0f} tok/s "
          f"({write['e2e_windows_s']:.0f} windows/s); ratio **{write['ratio']:.2f}** (goal >= 0.85; per run: "
          f"{', '.join(f'{r:.2f}' for r in write['ratios'])}). One pass step by step: "
          + ", ".join(f"{k} {v:.2f} s" for k, v in write["steps"].items())
          + f" -> forward share {write['steps']['forward'] / sum(write['steps'].values()):.2f}.\n")
    print("**Storage and fidelity** (tiny random-init teacher: its features are not NTv2-like; std cos = "
          "mean cosine after per-channel standardisation vs the fp32 teacher output):\n")
    print("| teacher dtype | stored | B/dim on disk | std cos vs fp32 | values changed vs what the teacher "
          "computed | max abs change |")
    print("|---|---|---|---|---|---|")
    for r in dtypes:
        print(f"| {r['teacher']} | {r['stored']} | {r['B_per_dim']:.3f} | {r['std_cos_vs_fp32']:.6f} | "
              f"{r['changed']:.2e} | {r['max_abs_err']:.1e} |")
    print(f"\n**Read throughput** (synthetic NTv2-500M-shaped cache: {read['items']} windows x ~148 visible "
          f"tokens x {read['dim']} dims, bf16-valued fp16, {read['cache_GB']:.2f} GB on disk; random order; "
          "windows/s):\n")
    print("| reader | in-process | 1 DataLoader worker | 2 DataLoader workers |")
    print("|---|---|---|---|")
    for name, label in (("direct", "CacheReader (pread + zstd)"), ("zarr", "zarr Array[...] per array")):
        print(f"| {label} | {read[f'{name}_w0']:.0f} | {read[f'{name}_w1']:.0f} | {read[f'{name}_w2']:.0f} |")


if __name__ == "__main__":
    main()
