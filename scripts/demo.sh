#!/usr/bin/env bash
# The main job on the embedded stores (SQLite, a local bucket folder, local MLflow):
# install, ingest the shared photos, train the first model, classify a few photos.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1

bash scripts/setup.sh
photos="${1:-../shared/datasets/dandelion-grass}"
classifi=.venv/bin/classifi

echo "== Ingest $photos"
$classifi ingest "$photos"
echo "== Train"
$classifi train
echo "== Classify a few photos"
$classifi predict "$photos/dandelion/00000000.jpg" "$photos/dandelion/00000001.jpg" \
    "$photos/grass/00000000.jpg" "$photos/grass/00000001.jpg"
echo "== Status"
$classifi status
