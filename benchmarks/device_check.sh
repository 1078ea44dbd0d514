#!/usr/bin/env bash
# One-command GPU device check of echoclr, for a bare GPU machine (Python 3.12, torch, cupy, pybind11,
# scikit-build-core, cmake, typer, rich, scikit-learn present; zarr, numcodecs, av, pydicom and DALI absent),
# run from a copy of the working tree plus an ignored wheel folder. Within 8 minutes it:
#   1. checks the wheel folder (<= 64 MiB) holds every missing Python dependency, and installs those wheels;
#   2. builds the native extension (pip install --no-build-isolation --no-deps -e .);
#   3. runs the GPU tests: pytest -m cuda (CUDA kernel == CPU kernel, device cache == ClipReader, a sync-free step);
#   4. echoclr bench train --device cuda --no-end-to-end: model-only clips/s and MFU (bf16 + channels_last_3d
#      against the measured bf16 matmul rate; fp32 rows beside them);
#   5. benchmarks/device_loader.py: the GPU loader rows (device cache + CUDA kernel, and pinned staging) and
#      EchoCLR pretraining end to end from the device cache, its loader share of the step, against the
#      >= 6,000 clips/s and <= 5% targets. DALI rows are skipped (and said so) when DALI is absent.
# JSON goes to $OUT when set (the device tool's output folder), else benchmarks/results/.
#
# Filling the wheel folder (on a machine with internet; default folder benchmarks/wheels/, git-ignored, or
# $ECHOCLR_WHEELS):
#   python -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
#       -d benchmarks/wheels pytest pluggy iniconfig zarr numcodecs donfig google-crc32c pydicom
# (4.7 MB = 4.5 MiB: OpenCV is not needed, `echoclr bench` and the synthetic-data configuration import it only
# where videos are rendered or ingested, which the device check does not do; av (33 MiB) and DALI (~190 MiB) do
# not fit, so no video is decoded there and the DALI rows are skipped.)
#
# Usage: benchmarks/device_check.sh [--dry-run]
#   --dry-run  check the wheel set and every step's inputs on any machine (no GPU, nothing installed or built).
set -euo pipefail

cd "$(dirname "$0")/.."
DRY_RUN=0
for arg in "$@"; do
    case "$arg" in
        --dry-run) DRY_RUN=1 ;;
        -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
        *) echo "error: unknown option '$arg' (use --dry-run or --help)" >&2; exit 2 ;;
    esac
done
PY="${PYTHON:-python}"
if [ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ]; then PY=.venv/bin/python; fi
WHEELS="${ECHOCLR_WHEELS:-benchmarks/wheels}"
RESULTS="${OUT:-benchmarks/results}"
MAX_WHEEL_BYTES=$((64 * 1024 * 1024))
CUDA_TESTS=(tests/test_cuda_kernel.py tests/test_cuda_step.py tests/test_device_cache.py)
# module to import -> the wheel that provides it
REQUIRED=(pytest:pytest pluggy:pluggy iniconfig:iniconfig zarr:zarr numcodecs:numcodecs donfig:donfig
          google_crc32c:google_crc32c pydicom:pydicom)
START=$(date +%s)
mkdir -p "$RESULTS"

step() { echo; echo "== $* ($(( $(date +%s) - START )) s)"; }
fail() { echo "error: $*" >&2; exit 1; }

step "1/5 wheel set ($WHEELS)"
total=0
if [ -d "$WHEELS" ]; then
    total=$(find "$WHEELS" -maxdepth 1 -name '*.whl' -printf '%s\n' | awk '{s += $1} END {print s + 0}')
fi
echo "wheel folder: $total bytes (limit $MAX_WHEEL_BYTES)"
[ "$total" -le "$MAX_WHEEL_BYTES" ] || fail "$WHEELS holds $total bytes of wheels, over the 64 MiB that travel with the tree"
# which modules import, found by one Python process (one per module cost ~10 s of start-up on 2 cores)
MACHINE=(torch cupy pybind11 scikit_build_core typer rich sklearn)
importable=" $("$PY" - "${REQUIRED[@]%%:*}" "${MACHINE[@]}" <<'PYEOF'
import importlib, sys
ok = []
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
        ok.append(name)
    except Exception:
        pass
print(" ".join(ok))
PYEOF
) "
missing=()
for pair in "${REQUIRED[@]}"; do
    module="${pair%%:*}"; wheel="${pair##*:}"
    if [[ "$importable" == *" $module "* ]]; then
        echo "  $module: installed"
    elif compgen -G "$WHEELS/${wheel}-*.whl" > /dev/null; then
        echo "  $module: from $(basename "$(compgen -G "$WHEELS/${wheel}-*.whl" | head -1)")"
    else
        missing+=("$module (wheel ${wheel})")
    fi
done
[ ${#missing[@]} -eq 0 ] || fail "neither installed nor in $WHEELS: ${missing[*]}; fill the folder as the header of $0 says"
for module in "${MACHINE[@]}"; do
    [[ "$importable" == *" $module "* ]] && echo "  $module: installed" \
        || { [ "$DRY_RUN" = 1 ] && [ "$module" = cupy ] && echo "  cupy: absent (needed on the GPU machine)"; } \
        || fail "$module must be installed on the machine (it is not in the wheel folder)"
done
if [ "$DRY_RUN" = 0 ] && [ "$total" -gt 0 ]; then
    "$PY" -m pip install -q --no-index --no-deps "$WHEELS"/*.whl
fi

step "2/5 native extension"
command -v cmake > /dev/null || "$PY" -c "import cmake" 2>/dev/null || fail "cmake is needed to build the extension"
command -v c++ > /dev/null || fail "a C++17 compiler (c++) is needed to build the extension"
[ -f CMakeLists.txt ] && [ -f csrc/augment_cuda.cu ] && [ -f csrc/augment_pixel.h ] || fail "run from an echoclr tree"
if [ "$DRY_RUN" = 0 ]; then
    "$PY" -m pip install -q --no-build-isolation --no-deps -e .
fi
"$PY" -c "import echoclr.native as n; n.native(); print('  echoclr._native: ok')" \
    || { [ "$DRY_RUN" = 1 ] && echo "  echoclr._native: not built (the real run builds it)"; } || fail "the extension does not load"

step "3/5 GPU tests (pytest -m cuda)"
if [ "$DRY_RUN" = 1 ]; then
    "$PY" -m pytest -q -m cuda --collect-only "${CUDA_TESTS[@]}" | tail -1
else
    timeout 180 "$PY" -m pytest -q -m cuda -rs "${CUDA_TESTS[@]}" | tee "$RESULTS/device_check-pytest.txt" \
        || fail "GPU tests failed (see above)"
fi

step "4/5 echoclr bench train --device cuda (model only)"
BENCH=(bench train --device cuda --no-end-to-end --out "$RESULTS" --overwrite)
if [ "$DRY_RUN" = 1 ]; then
    # the same options, parsed (an unknown option fails here), then --help stops before running
    "$PY" -m echoclr.cli.app "${BENCH[@]}" --help > /dev/null && echo "  echoclr ${BENCH[*]}: options parse"
    "$PY" -c "import echoclr.bench.train" && echo "  echoclr.bench.train: imports (no OpenCV, av or DALI needed)"
else
    timeout 180 "$PY" -m echoclr.cli.app "${BENCH[@]}" || fail "echoclr bench train failed"
fi

step "5/5 GPU loader rows and end to end (device cache + CUDA kernel)"
if [ "$DRY_RUN" = 1 ]; then
    "$PY" benchmarks/device_loader.py --dry-run
else
    timeout 180 "$PY" benchmarks/device_loader.py --out "$RESULTS"
fi

step "done"
echo "results: $RESULTS"
