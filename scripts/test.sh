#!/usr/bin/env bash
# Sets everything up, then runs the test suite (slow checks are skipped; pass `-m slow` to run
# only them). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
VENV="${SEPZOO_VENV:-.venv}"
export WANDB_MODE=offline WANDB_SILENT=true
set +e
"$VENV/bin/python" -m pytest "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
    echo "test: pytest collected no tests; that is a failure" >&2
    exit 1
fi
exit "$status"
