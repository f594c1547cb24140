#!/usr/bin/env bash
# Side-by-side benchmark against PyTorch eager on the standard workloads (shared/BENCHMARKS.md).
#
#   TORCH_PYTHON=/path/to/venv/bin/python scripts/bench-vs-torch.sh [ROUNDS] [WORKLOAD ...]
#
# Each round runs `contrastive bench W --threads T` and `torch_bench.py --workloads W --threads T`
# back to back, alternating which engine goes first, for every workload and thread count (1 and
# 2), so both see the same machine state; the table gives the median over rounds of each
# engine's throughput and the ratio of the medians. PyTorch is never a dependency of the
# project: point TORCH_PYTHON at a scratch virtual environment with torch installed, and
# TORCH_BENCH at shared/bench/torch_bench.py (default: ../shared/bench beside the checkout).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
shift || true
workloads=("$@")
[ ${#workloads[@]} -eq 0 ] && workloads=(gemm ntxent supcon mlp_step cnn_step)
torch_python=${TORCH_PYTHON:?set TORCH_PYTHON to a python with torch installed}
torch_bench=${TORCH_BENCH:-../shared/bench/torch_bench.py}
[ -f "$torch_bench" ] || { echo "torch_bench.py not found at $torch_bench (set TORCH_BENCH)" >&2; exit 1; }

cargo build --release --quiet --bin contrastive
ours=target/release/contrastive
log=$(mktemp)
trap 'rm -f "$log"' EXIT

run_ours() { "$ours" bench "$1" --threads "$2" --reps "${REPS:-15}" 2>/dev/null | grep "^$1 " | sed 's/^/ours /'; }
run_torch() { "$torch_python" "$torch_bench" --workloads "$1" --threads "$2" 2>/dev/null | grep "^$1 " | sed 's/^/torch /'; }

for round in $(seq 1 "$rounds"); do
  for w in "${workloads[@]}"; do
    for t in 1 2; do
      if (( round % 2 )); then run_ours "$w" "$t"; run_torch "$w" "$t"
      else run_torch "$w" "$t"; run_ours "$w" "$t"; fi
    done
  done | tee -a "$log" >&2
done

python3 - "$log" <<'PY'
import sys, statistics, collections
runs = collections.defaultdict(list)
units = {}
for line in open(sys.argv[1]):
    engine, workload, threads, value, unit = line.split()[:5]
    runs[(workload, int(threads), engine)].append(float(value))
    units[workload] = unit
print(f"{'workload':<10} {'threads':>7} {'ours':>10} {'torch':>10} {'ratio':>7}  unit (medians of rounds)")
for (workload, threads) in sorted({(w, t) for (w, t, _) in runs}, key=lambda k: (k[0], k[1])):
    ours = runs.get((workload, threads, "ours"))
    torch = runs.get((workload, threads, "torch"))
    if not ours or not torch:
        continue
    mo, mt = statistics.median(ours), statistics.median(torch)
    print(f"{workload:<10} {threads:>7} {mo:>10.2f} {mt:>10.2f} {mo / mt:>6.2f}x  {units[workload]} (n={len(ours)})")
PY
