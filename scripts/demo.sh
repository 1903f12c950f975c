#!/usr/bin/env bash
# The built-in default, end to end on the CPU: set up, generate the synthetic toy data set,
# train the toy Conv-TasNet recipe for a few minutes, evaluate it, and print per-source nSDR
# next to the unprocessed mixture's. Run it again and it reuses what it already made.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
VENV="${SEPZOO_VENV:-.venv}"
SEPZOO="$VENV/bin/sepzoo"
DATA="${SEPZOO_TOY_DATA:-data/toy-musdb}"
RECIPE="recipes/toy/conv_tasnet.yaml"

if [ ! -d "$DATA/train" ]; then
    "$SEPZOO" toy-musdb "$DATA" --tracks 12 --test-tracks 4 --seconds 12 --seed 0
fi
"$SEPZOO" train "$RECIPE" --reuse
RUN_DIR="$("$SEPZOO" train "$RECIPE" --print-run-dir)"
"$SEPZOO" eval -n "$RUN_DIR" --root "$DATA" --subset test -o "$RUN_DIR/eval-toy" --force
echo
echo "W&B run:          $RUN_DIR/wandb (offline unless W&B is configured; upload with: wandb sync $RUN_DIR/wandb/offline-run-*)"
echo "checkpoint:       $RUN_DIR/checkpoints/best.ckpt"
echo "resolved config:  $RUN_DIR/config.yaml"
echo "evaluation:       $RUN_DIR/eval-toy/"
