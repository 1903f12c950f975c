#!/usr/bin/env bash
# Installs everything sepzoo needs on a fresh Debian/Ubuntu machine: ffmpeg (the `musdb`
# package refuses to import without ffmpeg and ffprobe; `sepzoo report` encodes its audio with
# it), SoundTouch's soundstretch (the pitch/tempo augmentation), Chromium and its WebDriver (the
# report tests open the report in a headless browser), g++ and Python's headers (torch.compile
# builds its CPU code with them: `train.compile`), a virtual environment, and sepzoo with its test
# extras. Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

missing=()
for tool in ffmpeg:ffmpeg ffprobe:ffmpeg soundstretch:soundstretch chromium:chromium \
    chromedriver:chromium-driver g++:g++; do
    if ! command -v "${tool%%:*}" >/dev/null 2>&1; then missing+=("${tool##*:}"); fi
done
# The code torch.compile generates includes Python.h, which Debian keeps in python3-dev.
if ! python3 -c 'import os, sys, sysconfig
sys.exit(not os.path.isfile(os.path.join(sysconfig.get_path("include"), "Python.h")))'; then
    missing+=(python3-dev)
fi
if [ "${#missing[@]}" -gt 0 ]; then
    packages=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
    echo "setup: installing $packages" >&2
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $packages >/dev/null
fi

VENV="${SEPZOO_VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
    # PyTorch with its CUDA libraries makes the environment about 7 GB; pip's own message when
    # the disk fills halfway through is an OSError deep in a wheel, so say it first.
    need_kb=$((9 * 1024 * 1024))
    where=$(realpath -m "$VENV")
    while [ ! -d "$where" ]; do where=$(dirname "$where"); done
    free_kb=$(df -Pk "$where" | awk 'NR == 2 {print $4}')
    if [ -n "$free_kb" ] && [ "$free_kb" -lt "$need_kb" ]; then
        echo "setup: error: $(realpath -m "$VENV"): $((free_kb / 1024)) MB free, the environment needs about 9 GB" >&2
        exit 1
    fi
    echo "setup: creating the virtual environment $VENV" >&2
    python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
echo "setup: installing sepzoo and its dependencies into $VENV (the first time takes a few minutes)" >&2
"$VENV/bin/python" -m pip install -q -e ".[dev]"
