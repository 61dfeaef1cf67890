#!/usr/bin/env bash
# The whole benchmark set on one GPU, in one call (budget: under 8 minutes on one H200-class GPU):
#     bash benchmarks/gpu_suite.sh [out.txt]
# Every benchmark runs with --device cuda and prints the device first; each step has its own time limit so one
# slow step cannot eat the budget. eval_speed's boundary kernels are CPU code: it runs light (2 images, no old
# implementation) for completeness. Output goes to the terminal and to out.txt (default runs/gpu_suite.txt).
set -u
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${1:-runs/gpu_suite.txt}
mkdir -p "$(dirname "$OUT")"
: > "$OUT"
start=$(date +%s)
step() {  # step <seconds> <script> <args...>
  local limit=$1; shift
  echo "=== $* (limit ${limit}s)" | tee -a "$OUT"
  local t0; t0=$(date +%s)
  (cd benchmarks && timeout "$limit" "../$PY" "$@") 2>&1 | grep -v "^  measured" | tee -a "$OUT"
  echo "--- ${PIPESTATUS[0]} after $(( $(date +%s) - t0 ))s" | tee -a "$OUT"
}
$PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA GPU visible to torch')" || exit 1
step 60  step_overhead.py --device cuda --steps 30 --rounds 3
step 120 kd_overhead.py --device cuda --steps 20 --rounds 2
step 60  weighting_cost.py --device cuda --grads --steps 20
step 150 weighting_cost.py --device cuda --steps 20 --update-every 4 --batched
step 60  arch_cost.py --device cuda
step 60  eval_speed.py --device cuda --images 2 --old-thresholds 0
echo "=== total $(( $(date +%s) - start ))s" | tee -a "$OUT"
