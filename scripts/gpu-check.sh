#!/usr/bin/env bash
# The prepared GPU check (docs/cuda.md), in two modes:
#   scripts/gpu-check.sh build   here (a machine with cargo, no GPU needed): builds the CLI and
#                                the parity-test binaries with --features cuda, release, and
#                                copies them into gpu-artifacts/.
#   scripts/gpu-check.sh run     on the GPU machine: runs the kernel-compile test, the parity
#                                suite and `contrastive bench --device cuda` on the five
#                                workloads, from gpu-artifacts/ when there is no cargo. Logs go
#                                to $OUT (or gpu-logs/). Everything ends within 8 minutes.
set -uo pipefail
cd "$(dirname "$0")/.."
mode=${1:-run}
art=gpu-artifacts
target=${CARGO_TARGET_DIR:-target}

# Where pip puts CUDA 13's libraries (nvidia-cuda-nvrtc, nvidia-cublas): cudarc loads them by
# name at run time, so their folder must be on LD_LIBRARY_PATH.
add_pip_cuda_libs() {
  local py dir
  for py in python3 /opt/torch/.venv/bin/python3; do
    command -v "$py" >/dev/null 2>&1 || continue
    dir=$("$py" - <<'PY' 2>/dev/null
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
  export LD_LIBRARY_PATH
}

case "$mode" in
build)
  set -e
  cargo build --release --features cuda --bin contrastive
  # Test binaries: cargo prints their paths as JSON; keep the two the check runs.
  cargo test --release --features cuda --no-run --message-format=json \
      --test cuda_parity --test cuda_kernels_compile --test device_errors \
    | python3 -c '
import json, sys
for line in sys.stdin:
    try: m = json.loads(line)
    except ValueError: continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        print(m["target"]["name"], m["executable"])
' > /tmp/gpu-check-tests.txt
  rm -rf "$art" && mkdir -p "$art"
  cp "$target/release/contrastive" "$art/"
  while read -r name exe; do cp "$exe" "$art/$name"; done < /tmp/gpu-check-tests.txt
  ls -la "$art"
  du -sh "$art"
  ;;
run)
  logs=${OUT:-gpu-logs}
  mkdir -p "$logs"
  add_pip_cuda_libs
  echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH" | tee "$logs/env.txt"
  nvidia-smi 2>&1 | head -15 | tee -a "$logs/env.txt"
  if command -v cargo >/dev/null 2>&1 && [ ! -d "$art" ]; then
    "$0" build || exit 1
  fi
  [ -x "$art/contrastive" ] || { echo "no $art/contrastive: run '$0 build' first" >&2; exit 1; }
  deadline=$((SECONDS + 470)) # 8 minutes less a margin for the copies back
  left() { echo $((deadline - SECONDS > 5 ? deadline - SECONDS : 5)); }
  status=0
  for t in device_errors cuda_kernels_compile cuda_parity; do
    echo "== $t" | tee -a "$logs/tests.log"
    timeout "$(( $(left) < 150 ? $(left) : 150 ))" "$art/$t" --nocapture --test-threads=1 2>&1 \
      | tee -a "$logs/tests.log" || status=1
  done
  echo "== bench" | tee "$logs/bench.log"
  for w in gemm ntxent supcon mlp_step cnn_step; do
    timeout "$(( $(left) < 90 ? $(left) : 90 ))" "$art/contrastive" bench --device cuda --reps 10 "$w" 2>&1 \
      | tee -a "$logs/bench.log" || status=1
  done
  echo "== train (2 epochs on the digits)" | tee "$logs/train.log"
  timeout "$(left)" "$art/contrastive" train --device cuda --out /tmp/gpu-check-run \
      --set train.epochs=2 --set eval.probe=false 2>&1 | tee -a "$logs/train.log" || status=1
  echo "gpu-check: exit $status" | tee -a "$logs/tests.log"
  exit $status
  ;;
*)
  echo "usage: $0 build|run" >&2
  exit 2
  ;;
esac
