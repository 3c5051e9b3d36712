"""Teacher-cache benchmark: write efficiency, storage cost and fidelity per dtype, read throughput.

    .venv/bin/python benchmarks/bench_cache.py            # full (writes a >= 1 GB read-test cache)
    .venv/bin/python benchmarks/bench_cache.py --quick    # a few seconds per part
    python benchmarks/bench_cache.py --device cuda --teacher ntv2-500m --parts write --fasta synthetic

1. End-to-end cache-teacher throughput / bare teacher forward throughput on the same
   batches, interleaved in one process (goal >= 0.85); with the mean GPU utilisation on CUDA.
2. Bytes on disk per feature dimension and mean cosine after per-channel standardisation
   against the teacher's fp32 output, for fp16 / bf16 / int8; plus fp16 stored from a
   bf16 teacher (lossless?).
3. Random-access read throughput (windows/s) of CacheReader, in-process and with N
   DataLoader workers, against zarr ``Array[...]`` reads of the same items in the same run.

Teachers: ``tiny`` (hidden 64, 2 layers; the CPU default) or an NTv2-shaped ESM encoder with
random weights (``ntv2-100m``, ``ntv2-500m``; ``--layers`` cuts the depth for CPU smoke runs).
On CUDA part 1 runs with the had-1.1m preset's cache settings (bf16 teacher, 65,536 tokens per
forward, 256 window-views per shard). Prints a Markdown section for benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
import zarr

from had import featurize
from had.cache_store import CacheItem, CacheReader, Layout, Storage, write_shard
from had.cache_store import manifest as manifest_io
from had.cache_store.lifecycle import prepare_store
from had.cache_store.writer import create_store, write_cache
from had.cluster import GPU_SLOTS
from had.config import RunConfig, load_config
from had.pipeline import cache_teacher as ct
from had.teacher import TOKENIZER_DIR, TOKENIZER_FILES, build_tiny_teacher

ROOT = Path(__file__).resolve().parents[1]
FASTA = ROOT / ".." / "shared" / "data" / "real" / "genome" / "chr20_1mb_grch37.fa"
NTV2_REFERENCE = ROOT / ".." / "shared" / "reference" / "ntv2"

# The numbers of the real NTv2 config.json files (shared/reference/ntv2/, which does not travel to
# the GPU machine; ntv2_config checks them against the files wherever those exist).
NTV2_COMMON = {
    "vocab_size": 4107, "num_attention_heads": 16, "max_position_embeddings": 2050, "pad_token_id": 1,
    "mask_token_id": 2, "position_embedding_type": "rotary", "emb_layer_norm_before": False, "token_dropout": False,
    "layer_norm_eps": 1e-12, "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0,
    "tie_word_embeddings": False,
}
NTV2_SHAPES = {
    "ntv2-100m": ("v2-100m-multi-species", {"hidden_size": 512, "num_hidden_layers": 22, "intermediate_size": 2048}),
    "ntv2-500m": ("v2-500m-multi-species", {"hidden_size": 1024, "num_hidden_layers": 29, "intermediate_size": 4096}),
}


def ntv2_config(name: str, layers: int | None = None):
    """A built-in EsmConfig with the cost per token of the named NTv2 model.

    NTv2's own FFN is Linear(h, 2i) -> SwiGLU -> Linear(i, h): 3hi weights. The built-in ESM FFN
    (Linear(h, w) -> GELU -> Linear(w, h)) matches its weights and FLOPs at w = 1.5i.
    """
    from transformers import EsmConfig

    folder, shape = NTV2_SHAPES[name]
    reference = NTV2_REFERENCE / folder / "config.json"
    if reference.is_file():
        real = json.loads(reference.read_text())
        diff = {k: (v, real.get(k)) for k, v in (NTV2_COMMON | shape).items() if real.get(k) != v}
        if diff:
            raise SystemExit(f"{reference} disagrees with NTV2_SHAPES / NTV2_COMMON (ours, file): {diff}")
    shape = shape | {"intermediate_size": shape["intermediate_size"] * 3 // 2}
    if layers:
        shape["num_hidden_layers"] = layers
    return EsmConfig(**NTV2_COMMON, **shape)


def build_teacher(work: Path, name: str, layers: int | None, device: str) -> tuple[Path, str]:
    """Save the named teacher (random weights; NTv2 shapes in bf16) with NTv2's tokenizer files -> (dir, description)."""
    if name == "tiny":
        return build_tiny_teacher(work / "teacher"), "tiny (hidden 64, 2 layers)"
    from transformers import EsmForMaskedLM

    config = ntv2_config(name, layers)
    torch.manual_seed(0)
    with torch.device(device):  # random init of 0.5 B weights is seconds on a GPU, a minute on CPU
        model = EsmForMaskedLM(config).to(torch.bfloat16).eval()
    n_params = sum(p.numel() for p in model.esm.parameters())
    out = work / "teacher"
    model.save_pretrained(out, safe_serialization=True)
    del model
    for file in TOKENIZER_FILES:
        shutil.copyfile(TOKENIZER_DIR / file, out / file)
    return out, (f"{name}-shaped ESM, random weights ({config.num_hidden_layers} layers, hidden "
                 f"{config.hidden_size}, GELU FFN {config.intermediate_size} = SwiGLU FLOPs; "
                 f"{n_params / 1e6:.0f} M encoder parameters)")


def synthetic_fasta(path: Path, n_windows: int, window: int = 1024, seed: int = 0) -> Path:
    """One contig of uniform random ACGT, n_windows windows long (for machines without shared/)."""
    codes = np.random.default_rng(seed).integers(0, 4, n_windows * window)
    seq = np.frombuffer(b"ACGT", dtype=np.uint8)[codes].tobytes()
    path.write_bytes(b">synthetic\n" + b"\n".join(seq[i: i + 60] for i in range(0, len(seq), 60)) + b"\n")
    return path


class GpuUtilisation:
    """Mean NVML GPU utilisation (% of time a kernel ran) sampled every 50 ms inside the block; None off CUDA."""

    def __init__(self, device: torch.device):
        self.device, self.samples = device, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.wait(0.05):
            self.samples.append(torch.cuda.utilization(self.device))

    def __enter__(self):
        if self.device.type == "cuda":
            try:
                torch.cuda.utilization(self.device)  # needs pynvml (nvidia-ml-py)
                self._thread.start()
            except Exception as e:  # noqa: BLE001  (no pynvml / NVML: no number rather than no benchmark)
                print(f"GPU utilisation not sampled: {e}", file=sys.stderr)
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    @property
    def mean(self) -> float | None:
        return statistics.mean(self.samples) if self.samples else None


def std_cos(ref: np.ndarray, got: np.ndarray) -> float:
    """Mean row cosine after standardising every channel with the reference's mean and std."""
    mu, sd = ref.mean(0), ref.std(0) + 1e-12
    a, b = (ref - mu) / sd, (got - mu) / sd
    return float(np.mean(np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-30)))


def write_config(work: Path, teacher_dir: Path, fasta: Path, device: str) -> RunConfig:
    """The cache-teacher config part 1 runs: the had-1.1m preset's on CUDA, small batches on CPU."""
    paths = {"genome.fasta": str(fasta), "teacher.model": str(teacher_dir), "cache.path": str(work / "e2e")}
    if device == "cpu":  # 2 shared cores: smaller forwards and shards keep the pipeline's steps short
        return load_config("tiny", paths | {
            "genome.window": 1024, "teacher.max_tokens_per_batch": 16384, "mask.reverse_complement": True,
            "cache.shard_windows": 64})
    return load_config("had-1.1m", paths | {"teacher.device": device})


def bench_write(cfg: RunConfig, n_windows: int, repeats: int) -> dict:
    """Part 1: end-to-end (prepare + forward + write, pipelined) vs the bare forward on the same batches.

    Four timings per repeat, interleaved: the bare forward (padded batches already on the device),
    ``compute_features`` (forward + copy to host + visible-row selection), ``run_local`` (what
    ``had cache-teacher`` runs with one device: prepare and write in threads around the forward),
    and ``run_cluster`` on one in-process Dask worker with ``GPU_SLOTS`` threads and GPU slots (what
    each GPU worker of a multi-GPU or ``--scheduler`` run does; the teacher already loaded).
    """
    plan = ct.make_plan(cfg)
    n_items = min(plan.layout.n_items, plan.n_views * n_windows)
    plan = dataclasses.replace(plan, layout=dataclasses.replace(plan.layout, n_items=n_items))
    teacher = featurize.teacher_for(ct.driver_teacher(cfg))
    layer, max_tokens = cfg.teacher.layer, cfg.teacher.max_tokens_per_batch
    jobs = [ct.shard_job(cfg, plan, s) for s in range(plan.layout.n_shards)]
    prepared = [featurize.prepare_items(job, teacher) for job in jobs]
    padded = [featurize.pad_batch([ids[i] for i in batch], teacher.tokenizer.pad_id)
              for _, ids in prepared for batch in featurize.batches([len(row) for row in ids], max_tokens)]
    padded = [(ids.to(teacher.device), attn.to(teacher.device)) for ids, attn in padded]
    tokens = sum(len(row) for _, ids in prepared for row in ids)
    sync = torch.cuda.synchronize if teacher.device.type == "cuda" else (lambda: None)

    def forward() -> None:
        for ids, attn in padded:
            teacher.features(ids, attn, layer)
        sync()

    def features() -> None:
        for items, ids in prepared:
            featurize.compute_features(items, ids, teacher, layer, max_tokens)

    def end_to_end() -> None:
        ct.run_local(jobs)

    def end_to_end_dask() -> None:
        ct.run_cluster(dask_cfg, plan, jobs)

    from distributed import LocalCluster

    cluster = LocalCluster(n_workers=1, threads_per_worker=GPU_SLOTS, processes=False,
                           resources={"GPU": GPU_SLOTS}, dashboard_address=":0")
    dask_cfg = dataclasses.replace(cfg, cache=dataclasses.replace(cfg.cache, scheduler=cluster.scheduler_address))

    def timed(fn) -> tuple[float, float | None]:
        with GpuUtilisation(teacher.device) as util:
            t0 = time.perf_counter()
            fn()
            seconds = time.perf_counter() - t0
        return seconds, util.mean

    forward(), features()  # warm-up: kernel selection, allocator growth
    runs = {"forward": [], "features": [], "e2e": [], "e2e_dask": []}
    util = {"forward": [], "e2e": []}
    print(f"part 1: {n_items} window-views, {tokens} teacher tokens in {len(padded)} forwards", flush=True)
    for r in range(repeats):
        for name, fn in (("forward", forward), ("features", features), ("e2e", end_to_end),
                         ("e2e_dask", end_to_end_dask)):
            if name.startswith("e2e"):
                shutil.rmtree(cfg.cache.path, ignore_errors=True)
                prepare_store(Storage(cfg.cache.path), plan.layout, plan.identity, cfg.cache.overwrite)
            seconds, busy = timed(fn)
            runs[name].append(seconds)
            if name in util and busy is not None:
                util[name].append(busy)
        # as it goes: a run cut off by a time cap still leaves its numbers
        print(f"repeat {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in runs.items())
              + f", ratio {runs['forward'][-1] / runs['e2e'][-1]:.2f}"
              + f" (dask {runs['forward'][-1] / runs['e2e_dask'][-1]:.2f})"
              + "".join(f", GPU util {k} {v[-1]:.0f} %" for k, v in util.items() if v), flush=True)
    cluster.close()
    ratios = [f / e for f, e in zip(runs["forward"], runs["e2e"])]
    dask_ratios = [f / e for f, e in zip(runs["forward"], runs["e2e_dask"])]
    # Where the time goes, step by step in one pass (less sensitive to other jobs on the machine).
    steps = {"prepare": 0.0, "features": 0.0, "write": 0.0}
    storage = Storage(cfg.cache.path)
    for job in jobs:
        t0 = time.perf_counter()
        items, ids = featurize.prepare_items(job, teacher)
        t1 = time.perf_counter()
        featurize.compute_features(items, ids, teacher, layer, max_tokens)
        t2 = time.perf_counter()
        write_shard(storage, job.layout, job.shard, items)
        steps["prepare"] += t1 - t0
        steps["features"] += t2 - t1
        steps["write"] += time.perf_counter() - t2
    seconds = {k: statistics.median(v) for k, v in runs.items()}
    return {"items": n_items, "tokens": tokens, "forwards": len(padded), "shards": len(jobs),
            "device": str(teacher.device), "teacher_dtype": str(teacher.dtype).removeprefix("torch."),
            "max_tokens_per_batch": max_tokens, "shard_windows": plan.layout.shard_items,
            **{f"{k}_tok_s": tokens / v for k, v in seconds.items()}, "e2e_windows_s": n_items / seconds["e2e"],
            "ratio": statistics.median(ratios), "ratios": ratios, "dask_ratio": statistics.median(dask_ratios),
            "dask_ratios": dask_ratios, "steps": steps,
            "gpu_util": {k: statistics.mean(v) if v else None for k, v in util.items()}}


def bench_dtypes(work: Path, teacher_dir: Path, fasta: Path, n_windows: int) -> list[dict]:
    """Part 2: bytes/dim and standardised cosine of each stored dtype vs the fp32 teacher output."""
    rows = []
    cfg = load_config("tiny", {
        "genome.fasta": str(fasta), "genome.window": 1024, "teacher.model": str(teacher_dir),
        "teacher.max_tokens_per_batch": 16384, "mask.reverse_complement": False, "cache.shard_windows": 64,
    })
    plan = ct.make_plan(cfg)
    plan = dataclasses.replace(plan, layout=dataclasses.replace(plan.layout, n_items=min(plan.layout.n_items, n_windows)))
    for teacher_dtype in ("fp32", "bf16"):
        cfg.teacher.dtype = teacher_dtype
        teacher = featurize.teacher_for(ct.driver_teacher(cfg))
        prepared = [featurize.prepare_items(ct.shard_job(cfg, plan, s), teacher) for s in range(plan.layout.n_shards)]
        items = [it for shard_items, _ in prepared for it in shard_items]
        featurize.compute_features(items, [row for _, ids in prepared for row in ids], teacher, -1,
                                   cfg.teacher.max_tokens_per_batch)
        if teacher_dtype == "fp32":
            reference = np.concatenate([it.features for it in items])
        stored_dtypes = ("fp16", "bf16", "int8") if teacher_dtype == "fp32" else ("fp16",)
        for dtype in stored_dtypes:
            layout = dataclasses.replace(plan.layout, feature_dtype=dtype)
            path = work / f"dtype-{teacher_dtype}-{dtype}"
            records = write_cache(Storage(str(path)), layout, {"n_items": layout.n_items}, items, overwrite=True)
            reader = CacheReader(str(path))
            got = np.concatenate([reader[i].features for i in range(len(reader))])
            computed = np.concatenate([it.features for it in items])
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
    create_store(storage, layout, {"n_items": n_items}, overwrite=True)
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
            items.append(CacheItem(rng.integers(0, 4, 1024).astype(np.uint8),
                                   np.array(np.repeat(masked[:170], 6).tolist() + [False] * 4, bool),
                                   spans, masked, feats.to(torch.bfloat16).float().numpy()))
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
        return CacheItem(g["nucleotides"][i], g["nt_mask"][i], spans[:n], masked,
                         g["features"][i, : n - int(masked.sum())].astype(np.float32))


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
        assert all(np.array_equal(v, getattr(b, k)) for k, v in vars(a).items())
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
    parser.add_argument("--device", default="cpu", help="teacher device of part 1: cpu | cuda[:i]")
    parser.add_argument("--teacher", choices=["tiny", *NTV2_SHAPES], default="tiny")
    parser.add_argument("--layers", type=int, default=None, help="cut an NTv2 shape to this many layers (smoke runs)")
    parser.add_argument("--parts", default="write,dtypes,read", help="comma-separated subset of write, dtypes, read")
    parser.add_argument("--windows", type=int, default=None,
                        help="genome windows of part 1, two window-views each (default 512, --quick 128)")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repeats of part 1")
    parser.add_argument("--fasta", default=None,
                        help="genome FASTA or 'synthetic' (default: shared/ chr20 1 Mb where present, else synthetic)")
    parser.add_argument("--json", default=None, help="also write the measurements to this file")
    parser.add_argument("--work", default=None, help="scratch directory (default: a temp dir, removed)")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    if not parts <= {"write", "dtypes", "read"}:
        raise SystemExit(f"--parts {args.parts}: expected a comma-separated subset of write, dtypes, read")
    n_write = args.windows or (128 if args.quick else 512)
    n_dtypes = 64 if args.quick else 256
    work = Path(args.work or tempfile.mkdtemp(prefix="bench_cache_"))
    work.mkdir(parents=True, exist_ok=True)
    synthetic = args.fasta == "synthetic" or (args.fasta is None and not FASTA.is_file())
    fasta = synthetic_fasta(work / "synthetic.fa", max(n_write, n_dtypes)) if synthetic else Path(args.fasta or FASTA)
    t0 = time.perf_counter()
    teacher_dir, teacher = build_teacher(work, args.teacher, args.layers, args.device)
    print(f"teacher built in {time.perf_counter() - t0:.1f}s: {teacher}", flush=True)
    results = {"command": " ".join(["benchmarks/bench_cache.py", *sys.argv[1:]]), "teacher": teacher,
               "genome": "synthetic (uniform ACGT)" if synthetic else str(fasta)}
    if "write" in parts:
        cfg = write_config(work, teacher_dir, fasta, args.device)
        results["write"] = bench_write(cfg, n_write, args.repeats)
    if "dtypes" in parts:
        results["dtypes"] = bench_dtypes(work, teacher_dir, fasta, n_dtypes)
    if "read" in parts:
        results["read"] = bench_read(work, n_items=256 if args.quick else 4352, n_reads=300 if args.quick else 2000,
                                     dim=1024)
    if not args.work:
        shutil.rmtree(work)

    if args.device.startswith("cuda"):
        import transformers
        import triton

        machine = (f"{torch.cuda.get_device_name(args.device)}, torch {torch.__version__}, triton {triton.__version__}, "
                   f"transformers {transformers.__version__}, zarr {zarr.__version__}, {os.cpu_count()} CPU cores")
    else:
        machine = (f"{platform.node()}: {os.cpu_count()} CPU cores, torch {torch.__version__}, zarr {zarr.__version__}, "
                   f"load average {os.getloadavg()[0]:.1f} at the end (machine shared with other jobs: absolute "
                   "numbers are noisy)")
    results["machine"] = machine
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    print(f"## Teacher cache\n\n{time.strftime('%Y-%m-%d')}, `python {results['command']}`, {machine}.\n")
    if "write" in results:
        print_write(results["write"], teacher, results["genome"], args.repeats)
    if "dtypes" in results:
        print_dtypes(results["dtypes"])
    if "read" in results:
        print_read(results["read"])


def print_write(w: dict, teacher: str, genome: str, repeats: int) -> None:
    util = w["gpu_util"]
    busy = "" if util["e2e"] is None else (f" Mean GPU utilisation (NVML): bare forward {util['forward']:.0f} %, "
                                           f"end-to-end {util['e2e']:.0f} %.")
    print(f"**Write efficiency** ({teacher}, {w['device']} {w['teacher_dtype']}; genome {genome}; {w['items']} "
          f"window-views of 1024 nt in {w['shards']} shards of {w['shard_windows']}, {w['tokens']} teacher tokens "
          f"in {w['forwards']} forwards of <= {w['max_tokens_per_batch']} tokens; median of {repeats} interleaved "
          f"repeats): bare forward {w['forward_tok_s']:.0f} tok/s, forward + copy-out {w['features_tok_s']:.0f} "
          f"tok/s, end-to-end {w['e2e_tok_s']:.0f} tok/s ({w['e2e_windows_s']:.0f} windows/s); ratio "
          f"**{w['ratio']:.2f}** (end-to-end / bare forward; goal >= 0.85; per run: "
          f"{', '.join(f'{r:.2f}' for r in w['ratios'])}); on one Dask worker with GPU slots **{w['dask_ratio']:.2f}** "
          f"(per run: {', '.join(f'{r:.2f}' for r in w['dask_ratios'])}).{busy} One pass step by step: "
          + ", ".join(f"{k} {v:.2f} s" for k, v in w["steps"].items())
          + f" -> features share {w['steps']['features'] / sum(w['steps'].values()):.2f}.\n")


def print_dtypes(rows: list[dict]) -> None:
    print("**Storage and fidelity** (random-init teacher: its features are not NTv2-like; std cos = "
          "mean cosine after per-channel standardisation vs the fp32 teacher output):\n")
    print("| teacher dtype | stored | B/dim on disk | std cos vs fp32 | values changed vs what the teacher "
          "computed | max abs change |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['teacher']} | {r['stored']} | {r['B_per_dim']:.3f} | {r['std_cos_vs_fp32']:.6f} | "
              f"{r['changed']:.2e} | {r['max_abs_err']:.1e} |")
    print()


def print_read(read: dict) -> None:
    print(f"**Read throughput** (synthetic NTv2-500M-shaped cache: {read['items']} windows x ~148 visible "
          f"tokens x {read['dim']} dims, bf16-valued fp16, {read['cache_GB']:.2f} GB on disk; random order; "
          "windows/s):\n")
    print("| reader | in-process | 1 DataLoader worker | 2 DataLoader workers |")
    print("|---|---|---|---|")
    for name, label in (("direct", "CacheReader (pread + zstd)"), ("zarr", "zarr Array[...] per array")):
        print(f"| {label} | {read[f'{name}_w0']:.0f} | {read[f'{name}_w1']:.0f} | {read[f'{name}_w2']:.0f} |")


if __name__ == "__main__":
    main()
