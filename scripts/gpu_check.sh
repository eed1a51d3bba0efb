#!/usr/bin/env bash
# GPU runbook as one script: install with the CUDA 12 wheels, then time what README's GPU section reports.
# Usage: bash scripts/gpu_check.sh [OUT]   (default OUT: runs/gpu_check; about 35 minutes on one GPU)
# Every part writes its numbers under OUT; a part that fails does not stop the others.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/gpu_check}
mkdir -p "$OUT"
if [ ! -x .venv/bin/lpg ]; then bash .ci/setup; fi
.venv/bin/python -m pip install -q -c constraints.txt -e '.[cuda,atari]'
.venv/bin/python -c 'import jax; print("backend", jax.default_backend(), jax.devices())' | tee "$OUT/device.txt"
nvidia-smi --query-gpu=name,memory.total --format=csv >> "$OUT/device.txt" 2>/dev/null

part() {  # part NAME SECONDS COMMAND...: runs COMMAND under a time limit (SIGINT: runs checkpoint and stop)
  local name=$1 limit=$2; shift 2
  echo "== $name" >&2
  /usr/bin/time -v timeout -s INT "$limit" "$@" > "$OUT/$name.log" 2>&1
  echo "$name: exit $? ($(grep -E 'Elapsed|Maximum resident' "$OUT/$name.log" | tr -s ' ' | tr '\n' ';'))" | tee -a "$OUT/parts.txt"
}

part quickstart 900 .venv/bin/lpg quickstart --out "$OUT/quickstart" --no-progress
# The GPU-sized population (GROOVE: 512 lifetimes x 64 envs) for meta-gradients, one ES population beside it.
part bench_offline 900 .venv/bin/lpg bench offline --envs chain/short,gridworld/sparse --methods grad es \
  --num-lifetimes 512 --num-envs 64 --unroll-length 20 --inner-updates 5 --repeats 5
part bench_atari 900 .venv/bin/lpg bench atari --game Pong --frames 400000 --out "$OUT/bench_atari.json"
# Ten minutes of each on Pong: metrics.jsonl holds the curve and frames/s (SIGINT at 600 s checkpoints and stops).
part pong_a2c 600 .venv/bin/lpg train atari/Pong --objective a2c --frames 10000000 --out "$OUT/pong_a2c" --no-progress
part pong_frodo 600 .venv/bin/lpg discover online atari/Pong --objective frodo --frames 10000000 \
  --out "$OUT/pong_frodo" --no-progress
tail -n 2 "$OUT"/pong_*/metrics.jsonl > "$OUT/pong_last_rows.txt" 2>/dev/null
echo "done: $OUT/parts.txt" >&2
