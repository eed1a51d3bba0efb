#!/usr/bin/env bash
# The survey's meta-gradient systems (stacx, lirpg, aux_questions, learned_return) against the hand-designed
# objective each modifies, at equal environment steps and seeds (3, in parallel under vmap), with the same
# agent set-up (each environment's training preset). Online runs plot the meta-parameter trajectories
# (meta_parameters.png in each run folder).
# Usage: bash scripts/survey_objectives.sh [OUT] [STEPS] [PAIRS...]
#   PAIRS: ENV:OBJECTIVE:BASELINE (default: the list below); STEPS: environment steps per seed (default 100000).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/survey}
STEPS=${2:-100000}
shift $(( $# < 2 ? $# : 2 ))
PAIRS=("$@")
if [ ${#PAIRS[@]} -eq 0 ]; then
  PAIRS=(catch:stacx:vtrace snake:stacx:vtrace catch:learned_return:a2c snake:learned_return:a2c
         gridworld/sparse:lirpg:a2c snake:aux_questions:a2c)
fi
for pair in "${PAIRS[@]}"; do
  IFS=: read -r env objective baseline <<< "$pair"
  dir="$OUT/${env//\//-}"
  [ -f "$dir/$baseline/summary.json" ] || .venv/bin/lpg train "$env" --objective "$baseline" --steps "$STEPS" \
    --num-seeds 3 --out "$dir/$baseline" --no-progress
  [ -f "$dir/$objective/summary.json" ] || .venv/bin/lpg discover online "$env" --objective "$objective" \
    --steps "$STEPS" --num-seeds 3 --out "$dir/$objective" --no-progress
done
.venv/bin/python - "$OUT" <<'PY'
import json, pathlib, sys
rows = []
for summary in sorted(pathlib.Path(sys.argv[1]).glob("*/*/summary.json")):
    s = json.loads(summary.read_text())
    seeds = ", ".join("n/a" if x is None else f"{x:.3f}" for x in s.get("final_return_per_seed") or [])
    rows.append(f"| {s['env']} | {s['objective']} | {s['final_return']:.3f} | {seeds} | {s['steps']} | {s['wall_s']:.0f} |")
print("| env | objective | final return (mean of 3 seeds) | per seed | steps | wall s |")
print("|---|---|---|---|---|---|")
print("\n".join(rows))
PY
