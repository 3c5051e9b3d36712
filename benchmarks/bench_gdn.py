"""Benchmark the bidirectional gated delta rule: both directions, forward and forward+backward.

    python benchmarks/bench_gdn.py --device cuda --out gdn.json    # GPU: student shapes, bf16
    python benchmarks/bench_gdn.py --device cpu --threads 1        # CPU: smaller shapes, fp32

CUDA compares, in one run: our fused Triton op (chunk x num_warps sweep), our chunked PyTorch path, and
flash-linear-attention's `chunk_gated_delta_rule` called once per direction on flipped inputs (flips of
inputs and outputs included), each with and without CUDA graphs where it applies. CPU compares our chunked
PyTorch path with fla's `naive_chunk_gated_delta_rule`, again once per direction with flips.

Reported per row: median ms, achieved GB/s and the fraction of the memory floor (minimum bytes moved
divided by the device-to-device copy bandwidth measured in the same run), and peak extra memory.
fla is a benchmark-only dependency, imported lazily here and nowhere in `had`.
"""
from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from had.kernels import GDNInputs, bidirectional_gated_delta_rule  # noqa: E402


@dataclass
class Shape:
    B: int
    T: int
    H: int
    K: int
    V: int

    @property
    def name(self) -> str:
        return f"B{self.B}-T{self.T}-H{self.H}-K{self.K}-V{self.V}"


CUDA_SHAPES = [Shape(256, 1024, 4, 32, 32), Shape(64, 1024, 2, 64, 64)]
CPU_SHAPES = [Shape(4, 1024, 4, 32, 32), Shape(2, 1024, 2, 64, 64)]


def min_bytes(s: Shape, mode: str, act: int, gate: int = 4) -> int:
    """HBM floor for both directions: read inputs, write outputs once (gdn_perf.md §4.2, case A)."""
    fwd = act * (2 * s.K + s.V) + 2 * gate + act * s.V
    bwd = act * (2 * s.K + s.V) + act * s.V + 2 * gate + act * (2 * s.K + s.V) + 2 * gate
    per_token_head = fwd + (bwd if mode == "fwd+bwd" else 0)
    return 2 * s.B * s.T * s.H * per_token_head


def make_inputs(s: Shape, dtype, device, seed) -> GDNInputs:
    gen = torch.Generator(device=device).manual_seed(seed)

    def rnd(*shape, dt=dtype):
        return torch.randn(*shape, generator=gen, device=device, dtype=dt)

    q, k, v = rnd(s.B, s.T, s.H, s.K), rnd(s.B, s.T, s.H, s.K), rnd(s.B, s.T, s.H, s.V)
    g = F.logsigmoid(rnd(s.B, s.T, s.H, dt=torch.float32) + 3.0)  # gates in fp32, as the student makes them
    beta = torch.rand(s.B, s.T, s.H, generator=gen, device=device)
    return GDNInputs(*(x.requires_grad_() for x in (q, k, v, g, beta)))


def ours_triton(chunk: int, warps: int):
    from had.kernels.gated_delta.chunk import chunk_bidirectional_gated_delta_rule

    def run(fwd, bwd):
        return chunk_bidirectional_gated_delta_rule(fwd, bwd, fwd.q.shape[-1] ** -0.5, None, True, chunk, warps)

    return run


def ours_torch(fwd, bwd):
    return bidirectional_gated_delta_rule(fwd, bwd, impl="torch")


def fla_x2(fwd, bwd):
    """fla once per direction; the reverse direction flips its five inputs and its output."""
    from fla.ops.gated_delta_rule import chunk_gated_delta_rule

    o_f = chunk_gated_delta_rule(*fwd, use_qk_l2norm_in_kernel=True)[0]
    o_b = chunk_gated_delta_rule(*(x.flip(1) for x in bwd), use_qk_l2norm_in_kernel=True)[0]
    return o_f, o_b.flip(1)


def fla_naive_x2(fwd, bwd):
    """fla's PyTorch chunked reference (no in-kernel l2norm: normalised here, inside the timing)."""
    from fla.ops.gated_delta_rule import naive_chunk_gated_delta_rule

    def one(q, k, v, g, beta):
        return naive_chunk_gated_delta_rule(F.normalize(q, dim=-1), F.normalize(k, dim=-1), v, g, beta)[0]

    return one(*fwd), one(*(x.flip(1) for x in bwd)).flip(1)


def triton_configs(s: Shape, chunks, warps):
    from had.kernels.gated_delta.chunk import MAX_CHUNK_X_DIM

    return [(c, w) for c in chunks for w in warps if c * max(s.K, s.V) <= MAX_CHUNK_X_DIM]


def _compile_one(args) -> str:
    shape, chunk, warps = args
    small = Shape(1, shape.T, shape.H, shape.K, shape.V)  # same Triton specialisation as the real shape
    fwd, bwd = make_inputs(small, torch.bfloat16, "cuda", 0), make_inputs(small, torch.bfloat16, "cuda", 1)
    d_out = [torch.ones_like(fwd.v)] * 2
    t0 = time.perf_counter()
    step(ours_triton(chunk, warps), fwd, bwd, "fwd+bwd", d_out)
    torch.cuda.synchronize()
    return f"compiled {shape.name} C{chunk} w{warps} in {time.perf_counter() - t0:.0f} s"


def precompile(shapes, chunks, warps, jobs: int) -> None:
    """Fill Triton's on-disk cache for every swept configuration in parallel processes (compiling the
    backward kernel takes tens of seconds per configuration)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    todo = [(s, c, w) for s in shapes for c, w in triton_configs(s, chunks, warps)]
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        for line in pool.map(_compile_one, todo):
            print(line, flush=True)


def bypass_fla_hopper_guard() -> bool:
    """fla refuses its gated backward on Hopper with Triton in [3.4, 3.7.1) (fla #640). Lift the guard so
    its backward can be TIMED; its gradients may be wrong there. Returns True if the guard was lifted."""
    import fla.ops.common.chunk_o as chunk_o

    if getattr(chunk_o, "IS_NVIDIA_HOPPER", False) and not getattr(chunk_o, "TRITON_ABOVE_3_7_1", True):
        chunk_o.TRITON_ABOVE_3_7_1 = True
        return True
    return False


def step(impl, fwd, bwd, mode, d_out):
    """One call: forward under no_grad, or forward + backward into all ten inputs."""
    if mode == "fwd":
        with torch.no_grad():
            return impl(fwd, bwd)
    out = impl(fwd, bwd)
    return torch.autograd.grad(out, [*fwd, *bwd], d_out)


def time_cuda(fn, graphs: bool) -> float:
    import triton

    if graphs:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                fn()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            fn()
        fn = graph.replay
    return triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median")


def time_cpu(fn, reps: int = 5) -> float:
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def peak_extra_mib(fn) -> float:
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def copy_bandwidth() -> float:
    """Device-to-device copy rate in bytes/s, read + write counted."""
    import triton

    x = torch.empty(2**28, dtype=torch.float32, device="cuda")
    y = torch.empty_like(x)
    ms = triton.testing.do_bench(lambda: y.copy_(x), warmup=10, rep=100, return_mode="median")
    return 2 * x.numel() * 4 / (ms * 1e-3)


def rel_rms(a: torch.Tensor, ref: torch.Tensor) -> float:
    a, ref = a.double(), ref.double()
    return ((a - ref).pow(2).mean().sqrt() / ref.pow(2).mean().sqrt()).item()


def run(device: str, chunks: list[int], warps: list[int], skip_fla: bool) -> dict:
    cuda = device == "cuda"
    dtype = torch.bfloat16 if cuda else torch.float32
    act = torch.finfo(dtype).bits // 8
    info = dict(date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                device=torch.cuda.get_device_name() if cuda else "cpu", torch=torch.__version__,
                dtype=str(dtype), threads=torch.get_num_threads())
    try:
        import triton

        info["triton"] = triton.__version__
    except ImportError:
        pass
    if not skip_fla:
        import fla

        info["fla"] = fla.__version__
        info["fla_backward_guard_bypassed"] = bypass_fla_hopper_guard() if cuda else False
    copy_bw = copy_bandwidth() if cuda else None
    info["copy_GBps"] = copy_bw / 1e9 if copy_bw else None

    rows = []
    for s in CUDA_SHAPES if cuda else CPU_SHAPES:
        impls = {}
        if cuda:
            impls.update({f"had-triton-C{c}-w{w}": ours_triton(c, w) for c, w in triton_configs(s, chunks, warps)})
            impls["had-torch"] = ours_torch
            if not skip_fla:
                impls["fla-x2+flips"] = fla_x2
        else:
            impls["had-torch"] = ours_torch
            if not skip_fla:
                impls["fla-naive-x2+flips"] = fla_naive_x2
        fwd, bwd = make_inputs(s, dtype, device, 1), make_inputs(s, dtype, device, 2)
        d_out = [torch.randn(s.B, s.T, s.H, s.V, device=device, dtype=dtype) for _ in range(2)]
        with torch.no_grad():
            ref = ours_torch(fwd, bwd) if cuda else None
        for name, impl in impls.items():
            with torch.no_grad():
                out = impl(fwd, bwd)
            err = max(rel_rms(a, r) for a, r in zip(out, ref)) if ref is not None else None
            del out
            for mode in ("fwd", "fwd+bwd"):
                fn = lambda: step(impl, fwd, bwd, mode, d_out)  # noqa: E731
                for graphs in ((False, True) if cuda and name != "had-torch" else (False,)):
                    try:
                        ms = time_cuda(fn, graphs) if cuda else time_cpu(fn)
                    except Exception as e:  # a baseline that cannot run here is reported, not fatal
                        print(f"  {s.name} {name} {mode} graphs={graphs}: FAILED {type(e).__name__}: {e}")
                        continue
                    nbytes = min_bytes(s, mode, act)
                    row = dict(shape=s.name, impl=name, mode=mode, cuda_graphs=graphs, ms=ms,
                               GBps=nbytes / (ms * 1e-3) / 1e9, min_bytes=nbytes, err_vs_torch=err,
                               floor_fraction=(nbytes / copy_bw) / (ms * 1e-3) if copy_bw else None,
                               peak_extra_MiB=peak_extra_mib(fn) if cuda and not graphs else None)
                    rows.append(row)
                    print(_fmt(row), flush=True)
            if cuda:
                torch.cuda.empty_cache()
    return dict(info=info, shapes=[asdict(s) for s in (CUDA_SHAPES if cuda else CPU_SHAPES)], rows=rows)


def _fmt(r: dict) -> str:
    floor = f"{100 * r['floor_fraction']:5.1f}%" if r["floor_fraction"] is not None else "    - "
    peak = f"{r['peak_extra_MiB']:8.0f}" if r["peak_extra_MiB"] is not None else "       -"
    err = f"{r['err_vs_torch']:.1e}" if r["err_vs_torch"] is not None else "   -   "
    graphs = "graph" if r["cuda_graphs"] else "     "
    return (f"{r['shape']:22s} {r['impl']:22s} {r['mode']:8s} {graphs} {r['ms']:9.3f} ms "
            f"{r['GBps']:8.1f} GB/s {floor} peak {peak} MiB  err {err}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", type=Path, help="write the rows and the environment as JSON here")
    p.add_argument("--chunks", type=int, nargs="+", default=[16, 32, 64], help="Triton chunk sizes to sweep")
    p.add_argument("--warps", type=int, nargs="+", default=[4], help="Triton num_warps values to sweep")
    p.add_argument("--no-fla", action="store_true", help="skip the flash-linear-attention baseline")
    p.add_argument("--compile-jobs", type=int, default=0, help="precompile the Triton sweep in N processes")
    p.add_argument("--threads", type=int, help="torch CPU threads (1 gives stable numbers on a shared machine)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and args.compile_jobs:
        precompile(CUDA_SHAPES, args.chunks, args.warps, args.compile_jobs)
    result = run(args.device, args.chunks, args.warps, args.no_fla)
    print(json.dumps(result["info"]))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
