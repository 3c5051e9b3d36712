#!/usr/bin/env bash
# GDN kernels v2 (issue 14) on one GPU machine, in one run of <= 5 minutes:
#   1. precompile every timed configuration in parallel processes (today's C16/C32 x 4 warps, v2 1 warp x
#      num_stages default/1 x q/k/v dense / conv views / conv views copied to dense), student shape, bf16;
#   2. the v2 tests compiled on CUDA: every configuration with fp32 gradients (both directions, padded, initial
#      and final state) and bf16 at T=300 and 1024, plus the interpreter-sized tests;
#   3. timings at the student shape (B=256 T=1024 H=4 K=V=32, both directions): today's kernels, each v2
#      configuration fwd / fwd+bwd / backward alone, registers and spills, GB/s; fla x2 + flips if .whl has it;
#   4. `had train` had-1.1m throughput with gdn_impl=triton_v2 (synthetic items in memory).
# The SM clock is sampled throughout (clock.csv) to re-calibrate instructions -> time (gdn_kernel_v2.md §6):
# implied IPC = warp-instr/token x 2.1 M / (ms x clock x 132), counts from benchmarks/gdn_sass.py.
#
#   bash benchmarks/gpu_kernels_v2.sh $OUT                 # on the device (.whl carried for fla, zarr & co.)
#   HAD_SMOKE=1 bash benchmarks/gpu_kernels_v2.sh /tmp/o   # here, on CPU: the same steps, toy sizes, interpreted
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-.bench_out}}"
mkdir -p "$out"
log="$out/kernels_v2.log"
: >"$log"
export PYTHONPATH="$PWD" PYTHONUNBUFFERED=1 TQDM_DISABLE=1
fla_flag=--no-fla
if [[ ${HAD_SMOKE:-0} == 1 ]]; then
    py=.venv/bin/python slow=4  # the interpreter on a shared CPU: caps x 4
    export TRITON_INTERPRET=1
    precompile=(echo "smoke: nothing to precompile without a GPU")
    tests=("$py" -m pytest -q -p no:cacheprovider tests/kernels/test_gated_delta_triton_v2.py)
    bench=("$py" benchmarks/bench_gdn.py --smoke --no-fla --chunks 16 --v2-stages 0 --out "$out/bench_gdn_v2.json")
    train=("$py" benchmarks/bench_train.py --preset tiny --source memory --items 4 --pool 2 --steps 2 --log-every 1
           --warmup 0 --batch-size 2 --micro-batch-size 2 --workers 0 --threads 1 --gdn-impl triton_v2)
else
    py=python3 slow=1
    if ls .whl/*.whl >/dev/null 2>&1; then
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
            && export PYTHONPATH="$PYTHONPATH:/tmp/site" && fla_flag=
    fi
    export TRITON_CACHE_DIR="$out/triton_cache"
    nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.max.sm,power.draw,temperature.gpu --format=csv -lms 500 \
        >"$out/clock.csv" &
    smi=$!
    sweep=(--student-only --chunks 16 32 --warps 4 --v2-warps 1 --v2-stages 0 1 --v2-layouts dense conv conv-copy)
    precompile=("$py" benchmarks/bench_gdn.py --device cuda "${sweep[@]}" --compile-jobs 8 --precompile-only)
    tests=("$py" -m pytest -q -p no:cacheprovider -p no:benchmark -n 8 tests/kernels/test_gated_delta_triton_v2.py)
    bench=("$py" benchmarks/bench_gdn.py --device cuda "${sweep[@]}" $fla_flag --out "$out/bench_gdn_v2.json")
    train=("$py" benchmarks/bench_train.py --device cuda --preset had-1.1m --source memory --items 2048 --pool 256
           --steps 8 --log-every 2 --warmup 1 --gdn-impl triton_v2)
fi

{ date -u
  [[ -n ${smi:-} ]] && nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader
  "$py" -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
} 2>&1 | tee -a "$log"

failed=()
part() {  # name cap_s command...: run under a time cap, log everything, remember a failure
    local name=$1 cap=$2 t0=$SECONDS
    shift 2
    echo "=== $name (cap ${cap}s)" | tee -a "$log"
    timeout -k 10 $((cap * slow)) "$@" 2>&1 | tee -a "$log"
    local rc=${PIPESTATUS[0]}
    echo "=== $name: rc $rc$( ((rc == 124)) && echo ' (time cap)') after $((SECONDS - t0))s" | tee -a "$log"
    ((rc == 0)) || failed+=("$name")
}

part precompile 65 "${precompile[@]}"
part tests 85 "${tests[@]}"
part bench 95 "${bench[@]}"
part train-had-1.1m-v2 50 "${train[@]}"

if [[ -n ${smi:-} ]]; then
    kill "$smi"
    awk -F', ' 'NR > 1 { split($2, a, " "); n++; s += a[1]; if (a[1] > m) m = a[1] }
        END { if (n) printf "SM clock over the run: mean %.0f MHz, max %d MHz (%d samples)\n", s / n, m, n }' \
        "$out/clock.csv" | tee -a "$log"
fi
echo "gpu_kernels_v2: ${SECONDS}s in all; failed: ${failed[*]:-none}" | tee -a "$log"
((${#failed[@]} == 0))
