#!/usr/bin/env bash
# The prepared GPU check (docs/cuda.md), in two modes:
#   scripts/gpu-check.sh build   here (a machine with cargo, no GPU needed): builds the CLI and
#                                the three CUDA test binaries with --features cuda, release,
#                                strips their debug info and copies them into gpu-artifacts/.
#   scripts/gpu-check.sh run     on the GPU machine: runs the device-error and kernel-compile
#                                tests, the parity suite, `contrastive bench --device cuda` on
#                                the five workloads and a 2-epoch training run, from
#                                gpu-artifacts/ when there is no cargo. Logs go to $OUT (or
#                                gpu-logs/). Everything ends within 8 minutes (the whole run has
#                                one deadline; each step gets what is left of it, capped), and
#                                without a usable GPU it stops after the first failed bench with
#                                a "no GPU" line instead of trying every step.
set -uo pipefail
cd "$(dirname "$0")/.."
mode=${1:-run}
art=${GPU_CHECK_ARTIFACTS:-gpu-artifacts}
target=${CARGO_TARGET_DIR:-target}
tests=(device_errors cuda_kernels_compile cuda_parity)

# Where pip puts CUDA 13's libraries (nvidia-cuda-nvrtc, nvidia-cublas): cudarc loads them by
# name at run time, so their folder must be on LD_LIBRARY_PATH.
add_pip_cuda_libs() {
  local py dir
  for py in python3 /opt/torch/.venv/bin/python3; do
    command -v "$py" >/dev/null 2>&1 || continue
    dir=$(timeout 20 "$py" - <<'PY' 2>/dev/null
import glob, os, site
roots = site.getsitepackages() + [site.getusersitepackages()]
for r in roots:
    for d in glob.glob(os.path.join(r, "nvidia", "cu13", "lib")) + glob.glob(os.path.join(r, "nvidia", "*", "lib")):
        if glob.glob(os.path.join(d, "libnvrtc.so*")) or glob.glob(os.path.join(d, "libcublas.so*")):
            print(d)
PY
)
    for d in $dir; do LD_LIBRARY_PATH="$d:${LD_LIBRARY_PATH:-}"; done
  done
  export LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}
}

case "$mode" in
build)
  set -e
  cargo build --release --features cuda --bin contrastive
  # Test binaries: cargo prints their paths as JSON; keep the three the check runs.
  list=$(mktemp)
  cargo test --release --features cuda --no-run --message-format=json \
      "${tests[@]/#/--test=}" \
    | python3 -c '
import json, sys
for line in sys.stdin:
    try: m = json.loads(line)
    except ValueError: continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        print(m["target"]["name"], m["executable"])
' > "$list"
  rm -rf "$art" && mkdir -p "$art"
  cp "$target/release/contrastive" "$art/"
  while read -r name exe; do cp "$exe" "$art/$name"; done < "$list"
  rm -f "$list"
  for t in contrastive "${tests[@]}"; do
    [ -x "$art/$t" ] || { echo "gpu-check build: $art/$t is missing" >&2; exit 1; }
  done
  # The release profile keeps line tables (debug = 1): a few MB per binary that the carried
  # artifacts (64 MiB with the working tree) do not need. The symbols stay, for backtraces.
  strip --strip-debug "$art"/*
  ls -la "$art"
  du -sh "$art"
  ;;
run)
  # 8 minutes less a margin for the copies back (GPU_CHECK_SECONDS: a shorter budget, to test).
  deadline=$((SECONDS + ${GPU_CHECK_SECONDS:-465}))
  left() { echo $((deadline - SECONDS)); }
  logs=${OUT:-gpu-logs}
  mkdir -p "$logs"
  add_pip_cuda_libs
  echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH" | tee "$logs/env.txt"
  { timeout -k 5 20 nvidia-smi 2>&1 || echo "gpu-check: nvidia-smi failed or is missing (no GPU?)"; } \
    | head -15 | tee -a "$logs/env.txt"
  if command -v cargo >/dev/null 2>&1 && [ ! -d "$art" ]; then
    "$0" build || exit 1
  fi
  [ -x "$art/contrastive" ] || { echo "no $art/contrastive: run '$0 build' first" >&2; exit 1; }
  status=0
  # step LOG CAP CMD...: runs CMD with at most CAP seconds (and never past the deadline),
  # appending to LOG; a step that finds no time left is skipped and fails the check.
  step() {
    local log=$1 cap=$2 t
    shift 2
    t=$(left)
    [ "$t" -lt "$cap" ] && cap=$t
    if [ "$cap" -lt 5 ]; then
      echo "gpu-check: out of time, skipped: $*" | tee -a "$logs/$log"
      status=1
      return 1
    fi
    timeout -k 5 "$cap" "$@" 2>&1 | tee -a "$logs/$log"
    local rc=${PIPESTATUS[0]}
    if [ "$rc" -ne 0 ]; then
      [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ] && echo "gpu-check: timed out after ${cap}s: $*" | tee -a "$logs/$log"
      status=1
      return 1
    fi
  }
  : >"$logs/tests.log"
  for t in "${tests[@]}"; do
    echo "== $t" | tee -a "$logs/tests.log"
    step tests.log 150 "$art/$t" --nocapture --test-threads=1
  done
  echo "== bench" | tee "$logs/bench.log"
  for w in gemm ntxent supcon mlp_step cnn_step; do
    if ! step bench.log 90 "$art/contrastive" bench --device cuda --reps 10 "$w" \
        && grep -q "CUDA unavailable\|CUDA devices found\|cuda device count\|cuda context\|initialisation panicked" \
          "$logs/bench.log"; then
      echo "gpu-check: no GPU (see bench.log): skipping the other workloads and training" \
        | tee -a "$logs/bench.log"
      echo "gpu-check: exit 1 (no GPU)" | tee -a "$logs/tests.log"
      exit 1
    fi
  done
  echo "== train (2 epochs on the digits)" | tee "$logs/train.log"
  step train.log 180 "$art/contrastive" train --device cuda --out "$(mktemp -d)" \
      --set train.epochs=2 --set eval.probe=false
  echo "gpu-check: exit $status" | tee -a "$logs/tests.log"
  exit $status
  ;;
*)
  echo "usage: $0 build|run" >&2
  exit 2
  ;;
esac
