#!/usr/bin/env bash
# Cache-teacher (issue 4) and training (issue 6) on one GPU machine, in one command of <= 5 minutes:
#   (a) cache-teacher write efficiency, end-to-end / bare forward (goal >= 0.85), NTv2-100M- then
#       NTv2-500M-shaped teachers with random weights, bf16, the had-1.1m preset's cache settings;
#   (b) had-1.1m training, compiled, reading a real on-disk fp16 cache evicted from the page cache,
#       8 DataLoader workers: nt/s and the data-wait fraction (goal < 5 %).
#
#   bash benchmarks/fetch_gpu_wheels.sh                  # here, once: zarr, dask & co. -> .whl/ (git-ignored)
#   bash benchmarks/gpu_pipeline.sh $OUT                 # on the device, with .whl carried
#   HAD_SMOKE=1 bash benchmarks/gpu_pipeline.sh /tmp/o   # here, on CPU: the same steps at toy sizes
#
# Every part runs under a time cap and prints as it goes (bench_cache one line per repeat), so a part
# cut off still leaves numbers. Out: pipeline.log (everything), cache-ntv2-*.json, gpu_util.csv.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-.bench_out}}"
mkdir -p "$out"
log="$out/pipeline.log"
: >"$log"
export PYTHONPATH="$PWD" PYTHONUNBUFFERED=1 TQDM_DISABLE=1
if [[ ${HAD_SMOKE:-0} == 1 ]]; then
    py=.venv/bin/python device=cpu
    w100=24 w500=16 cache_args=(--layers 1 --repeats 1)  # after the real sizes' flags: these win
    train_args=(--preset tiny --items 64 --pool 16 --steps 4 --log-every 1 --warmup 1 --threads 1)
else
    py=python3 device=cuda
    # The image lacks zarr, numcodecs, google-crc32c, donfig (device README: wheels into /tmp/site).
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || { echo "wheel install failed: run benchmarks/fetch_gpu_wheels.sh here and carry .whl" | tee -a "$log"; exit 1; }
    export PYTHONPATH="$PYTHONPATH:/tmp/site"
    w100=1024 w500=768 cache_args=()  # inside the caps even at 4 ms of write per window-view (the dev VM's rate)
    # --items = steps x batch: every item is read once, from the disk
    train_args=(--preset had-1.1m --compile --items 10240 --pool 512 --steps 10 --log-every 2 --warmup 2)
    nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -lms 500 >"$out/gpu_util.csv" &
    smi=$!
fi

{ date -u
  [[ $device == cuda ]] && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  echo "$(nproc) CPU cores; temp dir: $(df -hT "${TMPDIR:-/tmp}" | tail -1)"
  "$py" -c "import importlib.metadata as m, sys, torch, triton, transformers, zarr, numcodecs, google_crc32c, distributed
print('python', sys.version.split()[0], *(f'{n} {m.version(n)}' for n in ('torch', 'triton', 'transformers',
      'numpy', 'zarr', 'numcodecs', 'google-crc32c', 'donfig', 'typing_extensions', 'dask', 'distributed')), sep=', ')"
} 2>&1 | tee -a "$log"
(( PIPESTATUS[0] == 0 )) || { echo "environment check failed (see above)" | tee -a "$log"; exit 1; }

failed=()
part() {  # name cap_s command...: run under a time cap, log everything, remember a failure
    local name=$1 cap=$2 t0=$SECONDS
    shift 2
    echo "=== $name (cap ${cap}s)" | tee -a "$log"
    timeout -k 10 "$cap" "$@" 2>&1 | tee -a "$log"
    local rc=${PIPESTATUS[0]}
    echo "=== $name: rc $rc$( ((rc == 124)) && echo ' (time cap)') after $((SECONDS - t0))s" | tee -a "$log"
    ((rc == 0)) || failed+=("$name")
}
cache() {  # teacher windows repeats cap_s
    part "cache-$1" "$4" "$py" benchmarks/bench_cache.py --device "$device" --teacher "$1" --parts write \
        --fasta synthetic --windows "$2" --repeats "$3" --json "$out/cache-$1.json" "${cache_args[@]}"
}

cache ntv2-100m "$w100" 3 75
part train-had-1.1m-disk 135 "$py" benchmarks/bench_train.py --device "$device" --source disk --cold "${train_args[@]}"
cache ntv2-500m "$w500" 2 70

[[ -n ${smi:-} ]] && kill "$smi"
echo "gpu_pipeline: ${SECONDS}s in all; failed: ${failed[*]:-none}" | tee -a "$log"
((${#failed[@]} == 0))
