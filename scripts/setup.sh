#!/usr/bin/env bash
# Creates .venv and installs ClassifiImage into it (add --dev for the test tools).
# Idempotent: a second run only checks that everything is there.
set -euo pipefail
cd "$(dirname "$0")/.."

extras=""
[[ "${1:-}" == "--dev" ]] && extras="[dev]"

if [[ ! -x .venv/bin/python ]]; then
    python3 -m venv .venv
fi
# pip (not uv/poetry): torch 2.14.1 and torchvision 0.29.1 come from this machine's wheel cache.
.venv/bin/pip install --quiet --disable-pip-version-check --upgrade pip
.venv/bin/pip install --quiet --disable-pip-version-check -e ".${extras}"
echo "Installed ClassifiImage into $(pwd)/.venv"
