#!/usr/bin/env bash
# repeval GPU check: correctness and throughput on one CUDA device, in under 9 minutes.
#
#   bash benchmarks/gpu_check.sh [--only PART,PART]   (extra arguments go to gpu_check.py)
#
# Runs from a copy of the working tree on a bare GPU machine with no network. Steps:
#   1. find a Python whose torch sees CUDA (python3 first); only if torch or numpy/scipy/
#      scikit-learn/torchvision/tqdm are missing, try `pip install -c requirements/ci.txt -e .`
#      into a venv (works only with a reachable index or local wheels) and say so when it fails.
#      faiss is optional: repeval's CUDA probe paths use torch, and the check stubs it out.
#   2. find MNIST: $REPEVAL_DATA, ./shared/data, ../shared/data, /work/shared/data,
#      /work/dataroot (torchvision layout, MNIST/raw/*-ubyte), or benchmarks/.data/mnist.npz;
#      otherwise scikit-learn's digits (and the summary says so).
#   3. run benchmarks/gpu_check.py under a hard timeout; it writes gpu_check.json and
#      gpu_check.md after every part, so partial results survive.
#
# Environment: OUT (results folder; default ./gpu_check_out), DEVICE (cuda; cpu = dry run
# with tiny sizes), PYTHON (interpreter to try first), GPU_CHECK_DEADLINE_S (seconds for
# the checks themselves, default 450, cut so that setup + checks stay under ~9 minutes).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu_check_out}"
mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"
: >"$LOG"
exec > >(tee -a "$LOG") 2>&1
DEVICE="${DEVICE:-cuda}"
DEADLINE="${GPU_CHECK_DEADLINE_S:-450}"
T0=$(date +%s)
say() { echo "[gpu_check +$(( $(date +%s) - T0 ))s] $*"; }

fail_summary() {  # write a summary when nothing could run
    say "FAILED: $1"
    printf '# repeval GPU check\n\nFAILED before any check ran: %s\n' "$1" >"$OUT/gpu_check.md"
    printf '{"status": "failed", "reason": "%s"}\n' "$1" >"$OUT/gpu_check.json"
    exit 2
}

env_ok() {  # $1 = python; exit 0 when it has everything the checks import
    "$1" - "$DEVICE" <<'EOF' 2>/dev/null
import sys
import numpy, scipy, sklearn, torch, torchvision, tqdm  # noqa: F401
sys.exit(0 if sys.argv[1] == "cpu" or torch.cuda.is_available() else 1)
EOF
}

command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
PY=""
for cand in ${PYTHON:-} python3 /opt/torch/.venv/bin/python3 python; do
    if command -v "$cand" >/dev/null 2>&1 && env_ok "$cand"; then PY="$cand"; break; fi
done
if [ -z "$PY" ]; then
    say "no Python with torch (CUDA=$DEVICE) + numpy/scipy/scikit-learn/torchvision/tqdm; trying pip (needs an index or local wheels)"
    VENV=/tmp/repeval-gpu-venv
    base="${PYTHON:-python3}"
    if "$base" -m venv --system-site-packages "$VENV" \
        && timeout 300 "$VENV/bin/pip" install -q -c requirements/ci.txt -e . ; then
        env_ok "$VENV/bin/python" && PY="$VENV/bin/python"
    fi
    [ -n "$PY" ] || fail_summary "no usable torch: pip install -c requirements/ci.txt -e . failed (no network on this machine?); carry wheels or use an image with torch+CUDA"
fi
say "python: $PY ($("$PY" -c 'import sys, torch; print(sys.version.split()[0], "torch", torch.__version__, "cuda", torch.cuda.is_available())'))"
"$PY" -c 'import faiss' 2>/dev/null || say "faiss not installed: CPU-side faiss comparisons fall back to repeval's torch backends"

DATA_ARGS=(--dataset digits)
for d in "${REPEVAL_DATA:-}" ./shared/data ../shared/data /work/shared/data /work/dataroot; do
    if [ -n "$d" ] && [ -f "$d/MNIST/raw/train-images-idx3-ubyte" ]; then DATA_ARGS=(--dataset mnist --data-dir "$d"); break; fi
done
if [ "${DATA_ARGS[1]}" = digits ] && [ -f benchmarks/.data/mnist.npz ]; then
    DATA_ARGS=(--dataset "npz:$PWD/benchmarks/.data/mnist.npz")
fi
say "data: ${DATA_ARGS[*]}"
LEFT=$(( 500 - ($(date +%s) - T0) ))  # keep the whole script under 9 minutes
[ "$DEADLINE" -le "$LEFT" ] || { DEADLINE=$LEFT; say "deadline cut to ${DEADLINE}s after a slow setup"; }

timeout --signal=TERM --kill-after=10 $(( DEADLINE + 30 )) \
    "$PY" benchmarks/gpu_check.py --device "$DEVICE" --out "$OUT" --deadline "$DEADLINE" "${DATA_ARGS[@]}" "$@"
rc=$?
[ $rc -eq 0 ] || say "gpu_check.py exited with $rc (partial results, if any, are in $OUT)"
say "done; results in $OUT (gpu_check.json, gpu_check.md, gpu_check.log)"
[ -f "$OUT/gpu_check.md" ] && cat "$OUT/gpu_check.md"
exit $rc
