#!/usr/bin/env bash
# Installs everything sepzoo needs on a fresh Debian/Ubuntu machine: ffmpeg (the `musdb`
# package refuses to import without ffmpeg and ffprobe), a virtual environment, and sepzoo
# with its test extras. Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v ffmpeg >/dev/null 2>&1 || ! command -v ffprobe >/dev/null 2>&1; then
    echo "setup: installing ffmpeg" >&2
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq ffmpeg >/dev/null
fi

VENV="${SEPZOO_VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
    echo "setup: creating the virtual environment $VENV" >&2
    python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
echo "setup: installing sepzoo and its dependencies into $VENV (the first time takes a few minutes)" >&2
"$VENV/bin/python" -m pip install -q -e ".[dev]"
