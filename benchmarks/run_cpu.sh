#!/usr/bin/env bash
# All CPU benchmarks, one after the other: quick (default, under 10 minutes on a 2-core
# machine: 8 min 59 s at load 3-4, 6 min 21 s at load 0.4-1.3; the default-thread CLI run capped at 120 s) or full
# (--full, not timed: 40 minutes or more, each default-thread CLI run capped at 300 s).
# JSON results go to $OUT (default /tmp/repeval-bench-<time>); figures are printed as
# they come.
#
#   PYTHON=/path/to/venv/bin/python bash benchmarks/run_cpu.sh [--full]
#
# The training benchmark needs pythae for its peer column: it runs with $BENCH_PYTHON
# (default /work/venv-bench/bin/python, see benchmarks/requirements.txt) when that exists,
# else with $PYTHON (default python3) and a plain-loop peer only.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE="${1:-}"
PY="${PYTHON:-python3}"
BENCH_PY="${BENCH_PYTHON:-/work/venv-bench/bin/python}"
[ -x "$BENCH_PY" ] || BENCH_PY="$PY"
export OUT="${OUT:-/tmp/repeval-bench-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$OUT"
echo "# $(date -u '+%Y-%m-%d %H:%M UTC')  $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg)  -> $OUT"
"$BENCH_PY" benchmarks/bench_train.py $MODE
"$PY" benchmarks/bench_probes.py $MODE
"$PY" benchmarks/bench_extract.py $MODE
"$PY" benchmarks/bench_cli.py $MODE
if [ "$MODE" = "--full" ]; then
    "$PY" benchmarks/bench_step_ops.py
else
    "$PY" benchmarks/bench_step_ops.py --families acai,baseline
fi
if [ "$MODE" = "--full" ]; then
    "$PY" benchmarks/bench_threads.py --reps 3 --steps 6 --rounds 2
    "$PY" benchmarks/proposals.py --reps 5 --rounds 2
else
    "$PY" benchmarks/bench_threads.py
    "$PY" benchmarks/proposals.py
fi
echo "# done $(date -u '+%H:%M UTC'), load $(cut -d' ' -f1 /proc/loadavg)"
