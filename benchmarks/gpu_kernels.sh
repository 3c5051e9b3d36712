#!/usr/bin/env bash
# GDN kernels on a GPU machine, in one go: the benchmark against fla x2 with flips, then the CUDA tests
# (compiled Triton vs the naive recurrence, fp32 and bf16/fp16, all gradients, chunk x num_warps sweep).
#
#   bash benchmarks/gpu_kernels.sh [OUT_DIR]      # logs and JSON land in OUT_DIR (default: $OUT or .bench_out)
#
# fla (benchmark-only) travels as pure-python wheels in .whl/ (flash-linear-attention, fla-core); einops
# and transformers are expected on the machine. Without .whl the benchmark runs with --no-fla.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-.bench_out}}"
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
fla_flag=--no-fla
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH="$PYTHONPATH:/tmp/site" && fla_flag=
fi
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"; } | tee "$out/env.txt"
timeout 200 python3 benchmarks/bench_gdn.py --device cuda --compile-jobs 6 --out "$out/bench_gdn.json" $fla_flag 2>&1 | tee "$out/bench.log"
bench_rc=$?
timeout 120 python3 -m pytest tests/kernels/test_gated_delta_cuda.py tests/kernels/test_gated_delta_triton.py -q -p no:cacheprovider -p no:benchmark -n 14 --maxfail=20 2>&1 | tee "$out/tests.log"
tests_rc=$?
echo "tests rc=$tests_rc bench rc=$bench_rc"
exit $(( tests_rc || bench_rc ))
