"""Benchmark the bidirectional gated delta rule: both directions, forward and forward+backward.

    python benchmarks/bench_gdn.py --device cuda --out gdn.json    # GPU: student shapes, bf16
    python benchmarks/bench_gdn.py --device cpu --threads 1        # CPU: smaller shapes, fp32
    python benchmarks/bench_gdn.py --smoke --no-fla                # CPU: the CUDA rows at a toy shape, interpreted

CUDA compares, in one run: our fused Triton op (chunk x num_warps sweep), the v2 kernels (chunk_v2.py: warps x
num_stages x q/k/v layout: dense, the student's conv-output views, or those views copied to dense inside the
timing; also each kernel alone, "fwd" and "bwd"
with the forward's graph kept, and their registers and spills), our chunked PyTorch path, and
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
import os
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


def ours_v2(warps: int, stages: int, copy: bool = False):
    """v2 on the given q/k/v, or (copy) on contiguous copies made inside the timing, the alternative to
    reading the student's conv-output views in place."""
    from had.kernels.gated_delta.chunk_v2 import chunk_bidirectional_gated_delta_rule_v2

    def dense(x: GDNInputs) -> GDNInputs:
        return GDNInputs(*(t.contiguous() for t in x)) if copy else x

    def run(fwd, bwd):
        return chunk_bidirectional_gated_delta_rule_v2(dense(fwd), dense(bwd), fwd.q.shape[-1] ** -0.5, None, True,
                                                       num_warps=warps, num_stages=stages or None)

    return run


def conv_layout(x: GDNInputs) -> GDNInputs:
    """q, k, v as views of one time-major [B, 3HK, T] buffer (the student's conv output), g and beta as is."""
    B, T, H, K = x.q.shape
    packed = torch.stack([x.q, x.k, x.v], 2).detach().reshape(B, T, 3 * H * K).transpose(1, 2).contiguous()
    q, k, v = packed.requires_grad_().transpose(1, 2).view(B, T, 3, H, K).unbind(2)
    return GDNInputs(q, k, v, x.g, x.beta)


def v2_configs(warps, stages, layouts):
    return [(w, st, lay) for w in warps for st in stages for lay in layouts]


def v2_name(w: int, st: int, layout: str) -> str:
    return f"had-v2-w{w}" + (f"-s{st}" if st else "") + f"-{layout}"


def kernel_resources() -> dict:
    """Registers and spill bytes of every compiled v2 and today's kernel specialisation, by kernel name."""
    from had.kernels.gated_delta import chunk, chunk_v2

    out = {}
    for fn in (chunk.gdn_fwd_kernel, chunk.gdn_bwd_kernel, chunk_v2.gdn_v2_fwd_kernel, chunk_v2.gdn_v2_bwd_kernel):
        for cache in getattr(fn, "device_caches", {}).values():
            for kernel in cache[0].values():
                meta = kernel.metadata
                out.setdefault(fn.__name__, []).append(dict(
                    warps=getattr(meta, "num_warps", None), stages=getattr(meta, "num_stages", None),
                    regs=getattr(kernel, "n_regs", None), spill_bytes=getattr(kernel, "n_spills", None)))
    return out


def triton_configs(s: Shape, chunks, warps):
    from had.kernels.gated_delta.chunk import MAX_CHUNK_X_DIM

    return [(c, w) for c in chunks for w in warps if c * max(s.K, s.V) <= MAX_CHUNK_X_DIM]


def _compile_one(args) -> str:
    shape, name, impl_args = args
    small = Shape(1, shape.T, shape.H, shape.K, shape.V)  # same Triton specialisation as the real shape
    fwd, bwd = make_inputs(small, torch.bfloat16, "cuda", 0), make_inputs(small, torch.bfloat16, "cuda", 1)
    if name == "v2":
        impl = ours_v2(*impl_args[:2], copy=impl_args[2] == "conv-copy")
        if impl_args[2] != "dense":
            fwd, bwd = conv_layout(fwd), conv_layout(bwd)
    else:
        impl = ours_triton(*impl_args)
    d_out = [torch.ones_like(fwd.v)] * 2
    t0 = time.perf_counter()
    step(impl, fwd, bwd, "fwd+bwd", d_out)
    torch.cuda.synchronize()
    return f"compiled {shape.name} {name} {impl_args} in {time.perf_counter() - t0:.0f} s"


def precompile(shapes, chunks, warps, v2s, jobs: int) -> None:
    """Fill Triton's on-disk cache for every swept configuration in parallel processes (compiling the
    backward kernel takes tens of seconds per configuration)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    todo = [(s, "today", (c, w)) for s in shapes for c, w in triton_configs(s, chunks, warps)]
    # conv-copy runs the dense specialisation: compile it once
    v2s = [(w, st, "dense" if lay == "conv-copy" else lay) for w, st, lay in v2s]
    todo += [(s, "v2", cfg) for s in shapes for cfg in dict.fromkeys(v2s)]
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


def backward_alone(impl, fwd, bwd, d_out):
    """The backward pass alone: the forward runs once here, its graph is kept and replayed."""
    out = impl(fwd, bwd)
    return lambda: torch.autograd.grad(out, [*fwd, *bwd], d_out, retain_graph=True)


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


def run(device: str, chunks: list[int], warps: list[int], v2s: list, skip_fla: bool, smoke: bool = False) -> dict:
    cuda = device == "cuda"
    dtype = torch.bfloat16 if cuda else torch.float32
    shapes = CUDA_SHAPES if cuda else CPU_SHAPES
    if smoke:
        shapes = [Shape(2, 40, 2, 16, 16)]
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
    for s in shapes:
        impls, layouts = {}, {}
        if cuda or smoke:
            impls.update({f"had-triton-C{c}-w{w}": ours_triton(c, w) for c, w in triton_configs(s, chunks, warps)})
            for w, st, lay in v2s:
                impls[v2_name(w, st, lay)] = ours_v2(w, st, copy=lay == "conv-copy")
                layouts[v2_name(w, st, lay)] = lay
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
            ref = ours_torch(fwd, bwd) if cuda or smoke else None
        for name, impl in impls.items():
            x_f, x_b = (conv_layout(fwd), conv_layout(bwd)) if layouts.get(name, "dense") != "dense" else (fwd, bwd)
            with torch.no_grad():
                out = impl(x_f, x_b)
            err = max(rel_rms(a, r) for a, r in zip(out, ref)) if ref is not None else None
            del out
            for mode in ("fwd", "fwd+bwd") + (("bwd",) if name in layouts else ()):
                if mode == "bwd":
                    fn = backward_alone(impl, x_f, x_b, d_out)
                else:
                    fn = lambda: step(impl, x_f, x_b, mode, d_out)  # noqa: E731
                for graphs in ((False, True) if cuda and name != "had-torch" else (False,)):
                    try:
                        ms = time_cuda(fn, graphs) if cuda else time_cpu(fn, reps=1 if smoke else 5)
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
    if cuda:
        info["kernels"] = kernel_resources()
    return dict(info=info, shapes=[asdict(s) for s in shapes], rows=rows)


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
    p.add_argument("--v2-warps", type=int, nargs="+", default=[1], help="v2 num_warps values to sweep")
    p.add_argument("--v2-stages", type=int, nargs="+", default=[0, 1], help="v2 num_stages (0: Triton's default)")
    p.add_argument("--v2-layouts", nargs="+", default=["dense", "conv", "conv-copy"],
                   choices=["dense", "conv", "conv-copy"],
                   help="q/k/v for v2: contiguous; views of the student's time-major conv output read in place; "
                        "or those views copied to contiguous inside the timing")
    p.add_argument("--precompile-only", action="store_true", help="with --compile-jobs: compile, then stop")
    p.add_argument("--student-only", action="store_true", help=f"CUDA: only the student shape {CUDA_SHAPES[0].name}")
    p.add_argument("--smoke", action="store_true", help="CPU, Triton interpreted: every CUDA row at a toy shape")
    p.add_argument("--no-fla", action="store_true", help="skip the flash-linear-attention baseline")
    p.add_argument("--compile-jobs", type=int, default=0, help="precompile the Triton sweep in N processes")
    p.add_argument("--threads", type=int, help="torch CPU threads (1 gives stable numbers on a shared machine)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    v2s = v2_configs(args.v2_warps, args.v2_stages, args.v2_layouts)
    if args.smoke:
        os.environ["TRITON_INTERPRET"] = "1"  # before Triton's first import (the kernels import it lazily)
        args.device = "cpu"
    if args.student_only:
        del CUDA_SHAPES[1:]
    if args.device == "cuda" and args.compile_jobs:
        precompile(CUDA_SHAPES, args.chunks, args.warps, v2s, args.compile_jobs)
        if args.precompile_only:
            return
    result = run(args.device, args.chunks, args.warps, v2s, args.no_fla, args.smoke)
    print(json.dumps(result["info"]))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
