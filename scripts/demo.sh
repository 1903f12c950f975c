#!/usr/bin/env bash
# The built-in default, end to end on the CPU: set up, then run the toy waveform-vs-spectrogram
# comparison (recipes/compare/toy_wave_vs_spec.yaml): generate the synthetic toy set, train seven
# toy models for 300 steps each, score them and the IRM, IBM and MWF oracles on the same ten
# test tracks, and end with the comparison table, the path of report.html and the W&B group.
# Run it again and it reuses the finished runs and scores. Extra arguments are recipe overrides
# (e.g. budget.steps=100) or `compare` options (e.g. -o OUT).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
VENV="${SEPZOO_VENV:-.venv}"
"$VENV/bin/sepzoo" compare recipes/compare/toy_wave_vs_spec.yaml "$@"
echo
echo "Offline W&B runs upload with: wandb sync <folder>/wandb/offline-run-* (the training runs and the summary run)"
