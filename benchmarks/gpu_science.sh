#!/usr/bin/env bash
# Issue 8 on one GPU machine, in one device command: `had experiment --preset gpu` cut to fit a
# 10-minute call (teacher 2000 steps on the 64 Mb synthetic genome, HAD / recon-only / random init,
# 500 student steps, 4 tasks x 1000 rows, 3 fine-tuning seeds). UNMEASURED sizing: the parts were
# estimated from the had-1.1m H100 training speed (1.2 M nt/s eager) and FLOP counts; every part
# prints as it goes. The run lives in $HAD_SCIENCE_DIR (default /tmp/had-science), so a run cut off by
# the time cap resumes with the same command on the same (still warm) machine; results are copied to OUT.
#
#   bash benchmarks/fetch_gpu_wheels.sh                    # here, once: zarr & co. -> .whl/
#   bash benchmarks/gpu_science.sh $OUT                    # on the device, with .whl carried
#   HAD_SMOKE=1 bash benchmarks/gpu_science.sh /tmp/o      # here, on CPU: the same command at toy sizes
#
# Out: science.log, summary.md, summary.png, verdict.json, pretrain.json (the teacher's report).
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-.bench_out}}"
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TQDM_DISABLE=1
sets=(--set 'experiment.variants=[had, recon_only, random_init]' --set experiment.eval_teacher=false
      --set 'experiment.tasks=[promoter_tata, splice_sites_donors, enhancers, enhancers_long_range]'
      --set experiment.task_train=1000 --set experiment.task_test=500 --set 'eval.lrs=[0.002]' --set eval.seeds=3)
if [[ ${HAD_SMOKE:-0} == 1 ]]; then
    py=.venv/bin/python cap=600
    sets+=(--set experiment.n_contigs=2 --set experiment.contig_length=20000 --set experiment.cache_contigs=1
           --set experiment.teacher.steps=3 --set experiment.teacher.hidden_size=32 --set experiment.teacher.num_layers=1
           --set experiment.teacher.num_heads=2 --set experiment.teacher.batch_size=4 --set experiment.teacher.window=120
           --set experiment.teacher.device=cpu
           --set experiment.task_train=40 --set experiment.task_test=20 --set experiment.task_length=100
           --set train.steps=2 --set train.batch_size=4 --set train.micro_batch_size=4 --set train.num_workers=0
           --set eval.epochs=1 --set eval.seeds=1 --set genome.window=128 --set student.max_position=128)
else
    py=python3 cap=560
    # The image lacks zarr, numcodecs, google-crc32c, donfig (device README: wheels into /tmp/site).
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || { echo "wheel install failed: run benchmarks/fetch_gpu_wheels.sh here and carry .whl" | tee "$out/science.log"; exit 1; }
    export PYTHONPATH="$PYTHONPATH:/tmp/site"
    sets+=(--set experiment.teacher.steps=2000 --set train.steps=500 --set eval.epochs=6)
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/science.log"
fi
run="${HAD_SCIENCE_DIR:-/tmp/had-science}"
date -u | tee -a "$out/science.log"
timeout -k 10 "$cap" "$py" -m had experiment --preset gpu --data synthetic --seed 0 --out "$run" "${sets[@]}" \
    2>&1 | tee -a "$out/science.log"
rc=${PIPESTATUS[0]}
echo "gpu_science: rc $rc$( ((rc == 124)) && echo ' (time cap: rerun on this machine to resume)') after ${SECONDS}s" \
    | tee -a "$out/science.log"
cp "$run"/summary.md "$run"/summary.png "$run"/verdict.json "$out"/ 2>/dev/null
cp "$run"/teacher/pretrain.json "$out"/ 2>/dev/null
exit "$rc"
