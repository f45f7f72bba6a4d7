#!/usr/bin/env bash
# Builds the desktop app's one-folder bundle: dist/classifi-desktop/classifi-desktop.
# Installs PyInstaller into .venv first when it is missing (it is in the dev extra).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! .venv/bin/python -c "import PyInstaller" 2>/dev/null; then
    .venv/bin/pip install --quiet --disable-pip-version-check "pyinstaller>=6.6"
fi
started=$SECONDS
HF_HUB_OFFLINE=1 .venv/bin/pyinstaller --noconfirm --log-level WARN \
    --distpath dist --workpath build/pyinstaller packaging/classifi_desktop.spec
echo "Built dist/classifi-desktop in $((SECONDS - started)) s ($(du -sh dist/classifi-desktop | cut -f1))"
