#!/usr/bin/env bash
# Fetch the wheels the GPU image lacks for `had cache-teacher` and `had train --source disk` into .whl/
# (git-ignored; the device call carries it): zarr and what it needs beyond the image (numcodecs,
# google-crc32c, donfig), for CPython 3.12 manylinux x86_64, at the versions of this checkout's .venv.
#
#   bash benchmarks/fetch_gpu_wheels.sh        # then: bash benchmarks/gpu_pipeline.sh $OUT on the device
#
# dask / distributed and what they need beyond the image come too: bench_cache times the Dask runner
# (GPU slots) beside the in-process one. A dependency of a fetched wheel that is neither fetched nor in
# the image (device KINDS.md's package list) fails this script instead of the device run.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
NAMES=(zarr numcodecs google-crc32c donfig dask distributed partd locket tblib tornado zict)
IMAGE_HAS=(numpy packaging typing-extensions pyyaml click cloudpickle fsspec toolz jinja2 msgpack psutil
           sortedcontainers urllib3)
LIMIT_MIB=40

norm() { tr 'A-Z_.' 'a-z--' <<<"$1"; }  # PEP 503 name
specs=()
for name in "${NAMES[@]}"; do
    version=$("$PY" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$name")
    specs+=("$name==$version")
    rm -f .whl/"$(tr - _ <<<"$name")"-*.whl  # one version of each: two stop the whole install
done
mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "${specs[@]}"

known=" $(for n in "${NAMES[@]}" "${IMAGE_HAS[@]}"; do norm "$n"; done | tr '\n' ' ') "
missing=0
for spec in "${specs[@]}"; do
    wheel=$(ls .whl/"$(tr - _ <<<"${spec%%==*}")"-"${spec##*==}"-*.whl)
    echo "fetched $(basename "$wheel") ($(du -k "$wheel" | cut -f1) KiB)"
    # Requires-Dist lines without an `extra ==` marker, nor one for Pythons older than the image's 3.12:
    # the wheel's hard dependencies there.
    for dep in $(unzip -p "$wheel" '*.dist-info/METADATA' | grep '^Requires-Dist:' | grep -v 'extra ==' \
                 | grep -v -E 'python_version *< *"3\.(1[0-2]|[0-9])"' \
                 | sed -E 's/^Requires-Dist: *([A-Za-z0-9_.-]+).*/\1/'); do
        if [[ $known != *" $(norm "$dep") "* ]]; then
            echo "  needs $dep: neither fetched nor in the GPU image; add it to NAMES" >&2
            missing=1
        fi
    done
done
total=$(du -cb .whl/*.whl | tail -1 | cut -f1)
echo ".whl/ holds $(ls .whl/*.whl | wc -l) wheels, $((total / 1024)) KiB in all (limit ${LIMIT_MIB} MiB)"
if (( total >= LIMIT_MIB * 1024 * 1024 )); then
    echo ".whl/ is over ${LIMIT_MIB} MiB: the tree the device call carries is capped at 64 MiB" >&2
    exit 1
fi
exit $missing
