"""Compile every shipped GDN Triton kernel configuration for an H100 (sm_90a) on a CPU-only machine, and count.

    python benchmarks/gdn_sass.py                                   # with this interpreter's Triton
    python benchmarks/gdn_sass.py --python /work/venv-triton36/bin/python   # another Triton (re-executes)

Per configuration, at the student shape (T=1024, H=4, K=V=32, bf16 q/k/v unless the name says fp32): registers,
stack bytes (spills), spill instructions in the chunk loop (LDL/STL), HGMMA (wgmma) instructions in the whole
kernel, HMMA (mma.sync) in the loop, SASS instructions of the chunk loop (the longest backward-branch loop) and
warp-instructions per token = loop instructions x warps / chunk. The last tracks H100 time within a kernel
family (v1's forward at chunk 16 / 32 / 64: 495 / 731 / 2130 warp-instructions per token, 2.84 / 4.57 /
13.59 ms on the H100, about 6 us per warp-instruction per token; timings in benchmarks/RESULTS.md). Uses the nvdisasm and
cuobjdump that ship in the Triton wheel; no GPU, no CUDA driver.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
T, H, K, V = 1024, 4, 32, 32


@dataclass
class Config:
    name: str
    kernel: object  # triton.JITFunction
    args: dict  # every argument: "*bf16"-style pointer type, int, float, None, or a constexpr value
    constexprs: tuple  # names of the kernel's constexpr parameters
    num_warps: int
    chunk: int
    inner_trips: int = 1  # trips of a loop nested in the chunk loop, per chunk
    options: dict = field(default_factory=dict)  # other compile options (num_stages)


def _compile(cfg: Config):
    """Compile as the launcher would specialise: pointers and ints divisible by 16 hinted, ints == 1 and
    None made constant."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    signature, constants, attrs = {}, {}, {}
    for i, name in enumerate(cfg.kernel.arg_names):
        value = cfg.args[name]
        if name in cfg.constexprs or value is None or (isinstance(value, int) and value == 1):
            signature[name], constants[name] = "constexpr", value
        elif isinstance(value, str):
            signature[name] = value
            attrs[(i,)] = [["tt.divisibility", 16]]
        elif isinstance(value, float):
            signature[name] = "fp32"
        else:
            signature[name] = "i32"
            if value % 16 == 0:
                attrs[(i,)] = [["tt.divisibility", 16]]
    src = ASTSource(fn=cfg.kernel, signature=signature, constexprs=constants, attrs=attrs)
    return triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": cfg.num_warps, **cfg.options})


def _tool(name: str) -> str:
    import triton

    return str(Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / name)


def count(cfg: Config) -> dict:
    """Registers, stack, and instruction counts of one configuration's SASS."""
    cubin = _compile(cfg).asm["cubin"]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "k.cubin"
        path.write_bytes(cubin)
        res = subprocess.run([_tool("cuobjdump"), "-res-usage", str(path)], capture_output=True, text=True,
                             check=True).stdout
        sass = subprocess.run([_tool("nvdisasm"), "-c", str(path)], capture_output=True, text=True,
                              check=True).stdout
    regs = int(re.search(r"REG:(\d+)", res).group(1))
    stack = int(re.search(r"STACK:(\d+)", res).group(1))
    instrs, labels, loops = [], {}, []
    for line in sass.splitlines():
        if m := re.match(r"\s*(\.L_x_\d+):", line):
            labels[m.group(1)] = len(instrs)
        elif m := re.match(r"\s*/\*[0-9a-f]+\*/\s+(.*?)\s*;", line):
            instrs.append(m.group(1))
            target = re.search(r"BRA\s+`?\(?(\.L_x_\d+)", m.group(1))
            if target and labels.get(target.group(1), len(instrs)) < len(instrs):
                loops.append((labels[target.group(1)], len(instrs)))

    def n(pattern, seq):
        return sum(bool(re.search(pattern, i)) for i in seq)

    # chunk loops: outermost loops with tensor-core work (the padding zero-fill loops have none), or for
    # fp32 FMA dots those at least a quarter the size of the largest; a loop nested in one (today's row-by-row
    # inverse, where not unrolled) runs `inner_trips` times per chunk
    outer = [(a, b) for a, b in loops if not any(c <= a and b <= d and (c, d) != (a, b) for c, d in loops)]
    chunk_loops = [(a, b) for a, b in outer if n(r"\bH(G)?MMA\b", instrs[a:b])]
    if not chunk_loops:
        largest = max((b - a for a, b in outer), default=0)
        chunk_loops = [(a, b) for a, b in outer if 4 * (b - a) >= largest]
    body, dynamic, nested = [], 0, 0
    for a, b in chunk_loops:
        body += instrs[a:b]
        dynamic += b - a
        for c, d in loops:
            if a <= c and d <= b and (c, d) != (a, b):
                nested += 1
                dynamic += (d - c) * (cfg.inner_trips - 1)
    ops = Counter(re.sub(r"^@!?U?P\w+\s+", "", i).split()[0].split(".")[0] for i in body)
    return dict(regs=regs, stack=stack, loops=len(chunk_loops), nested=nested, loop=dynamic, ops=ops,
                per_token=dynamic * cfg.num_warps / cfg.chunk, hmma_loop=n(r"\bHMMA\b", body),
                hgmma=n(r"\bHGMMA\b", instrs), spill_loop=n(r"\b(LDL|STL)\b", body), bar_loop=n(r"\bBAR\b", body))


def configs() -> list[Config]:
    """Today's kernels (chunk.py) at chunk 16/32/64 x 4 warps and the v2 kernels (chunk_v2.py)."""
    from had.kernels.gated_delta import chunk, chunk_v2

    def today(chunk_size):
        common = dict(h0_ptr=None, lengths_ptr="*i32", scale=0.17, T=T, H=H, K=K, V=V, BK=K, BV=V, BT=chunk_size,
                      USE_L2=True, HAS_H0=False, PREC="tf32", EPS=chunk.L2_EPS)
        x = {f"{n}{d}": t for d in (0, 1) for n, t in (("q", "*bf16"), ("k", "*bf16"), ("v", "*bf16"),
                                                       ("g", "*fp32"), ("beta", "*fp32"))}
        fwd = dict(common, **x, o0="*bf16", o1="*bf16", ht_ptr=None, STORE_HT=False)
        grads = {f"{n}{d}": t for d in (0, 1) for n, t in (("do", "*bf16"), ("dq", "*bf16"), ("dk", "*bf16"),
                                                           ("dv", "*bf16"), ("dg", "*fp32"), ("dbeta", "*fp32"))}
        bwd = dict(common, **x, **grads, dht_ptr=None, dh0_ptr=None, ws_ptr="*fp32", NT_MAX=T // chunk_size,
                   HAS_DHT=False)
        consts = ("K", "V", "BK", "BV", "BT", "USE_L2", "HAS_H0", "STORE_HT", "HAS_DHT", "PREC", "EPS")
        return [Config(f"today fwd C{chunk_size} w4", chunk.gdn_fwd_kernel, fwd, consts, 4, chunk_size, chunk_size - 1),
                Config(f"today bwd C{chunk_size} w4", chunk.gdn_bwd_kernel, bwd, consts, 4, chunk_size, chunk_size - 1)]

    def v2(dtype, layout, warps, stages=None):
        act, mode = ("*fp32", 0) if dtype == "fp32" else ("*bf16", 1)
        # contiguous [B, T, H, K], or the student's conv output viewed as q, k, v (time-major channels)
        dense = (T * H * K, H * K, K, 1) if layout == "dense" else (3 * H * K * T, 1, K * T, T)
        common = dict(lengths_ptr="*i32", scale=0.17, T=T, H=H, NT=T // 16, K=K, V=V, BK=K, BV=V, BT=16,
                      MODE=mode, USE_L2=True, HAS_H0=False, EPS=chunk_v2.L2_EPS,
                      **dict(zip(("sq_b", "sq_t", "sq_h", "sq_d"), dense)),
                      **dict(zip(("sv_b", "sv_t", "sv_h", "sv_d"), dense)))
        x = {f"{n}{d}": t for d in (0, 1) for n, t in (("q", act), ("k", act), ("v", act), ("g", "*fp32"),
                                                       ("beta", "*fp32"))}
        hs = "*bf16" if mode == 1 else "*fp32"
        fwd = dict(common, **x, o0=act, o1=act, h0_ptr=None, ht_ptr=None, hs_ptr=hs, rs_ptr="*fp32", STORE_HT=False)
        grads = {f"{n}{d}": t for d in (0, 1) for n, t in (("do", act), ("dq", act), ("dk", act), ("dv", act),
                                                           ("dg", "*fp32"), ("dbeta", "*fp32"))}
        contiguous = (T * H * K, H * K, K, 1)
        strides = {f"s{n}_{a}": s for n in ("o", "dq", "dv") for a, s in zip("bthd", contiguous)}
        bwd = dict(common, **x, **grads, **strides, dht_ptr=None, dh0_ptr=None, hs_ptr=hs, rs_ptr="*fp32", HAS_DHT=False,
                   RELOAD_T=layout == "dense")
        if layout != "dense":  # gradients follow the inputs' dimension order
            bwd.update({f"s{n}_{a}": s for n in ("dq", "dv") for a, s in zip("bthd", (H * K * T, 1, K * T, T))})
        consts = ("K", "V", "BK", "BV", "BT", "MODE", "USE_L2", "HAS_H0", "STORE_HT", "HAS_DHT", "RELOAD_T", "EPS")
        tag = f"C16 w{warps} {dtype} {layout}" + (f" s{stages}" if stages else "")
        opts = {"num_stages": stages} if stages else {}
        return [Config(f"v2 fwd {tag}", chunk_v2.gdn_v2_fwd_kernel, fwd, consts, warps, 16, options=opts),
                Config(f"v2 bwd {tag}", chunk_v2.gdn_v2_bwd_kernel, bwd, consts, warps, 16, options=opts)]

    return [*today(16), *today(32), *today(64), *v2("bf16", "dense", 1), *v2("bf16", "dense", 1, stages=1),
            *v2("bf16", "conv", 1), *v2("bf16", "conv", 1, stages=1), *v2("fp32", "dense", 1)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--python", help="interpreter whose Triton compiles (re-executes this script with it)")
    ap.add_argument("--only", default="", help="substring of the configuration names to compile")
    ap.add_argument("--opcodes", type=int, default=0, help="also print the N commonest opcodes in the chunk loop")
    args = ap.parse_args()
    if args.python and os.path.abspath(args.python) != os.path.abspath(sys.executable):
        env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
        os.execve(args.python, [args.python, __file__, "--only", args.only, "--opcodes", str(args.opcodes)], env)
    sys.path.insert(0, str(ROOT))
    os.environ.pop("TRITON_INTERPRET", None)
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # Triton 3.9's default, stated to silence its warning
    import triton

    print(f"Triton {triton.__version__}, sm_90a, T={T} H={H} K={K} V={V}")
    print("| configuration | regs | stack B | spill ops/chunk | HGMMA | HMMA/chunk | BAR/chunk | chunk loops (nested) "
          "| instr/chunk/warp | warp-instr/token |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for cfg in configs():
        if args.only in cfg.name:
            c = count(cfg)
            print(f"| {cfg.name} | {c['regs']} | {c['stack']} | {c['spill_loop']} | {c['hgmma']} | {c['hmma_loop']} | "
                  f"{c['bar_loop']} | {c['loops']} ({c['nested']}) | {c['loop']} | {c['per_token']:.0f} |", flush=True)
            if args.opcodes:
                print("    " + ", ".join(f"{op} {n}" for op, n in c["ops"].most_common(args.opcodes)), flush=True)


if __name__ == "__main__":
    main()
