#!/usr/bin/env bash
# Builds the desktop app's one-folder bundle, dist/classifi-desktop/, with no torch inside:
#
#  1. with the project's .venv (torch): trains the default dandelion/grass champion on the
#     shared photos in a scratch home and exports its backbone for ONNX Runtime, into
#     build/desktop-assets/ (runtimes/ and default-model/);
#  2. makes a venv without torch (DESKTOP_VENV, default /tmp/classifi-desktop-venv-<hash>,
#     reused while the requirements stay the same) with the `desktop` list of pyproject.toml
#     and PyInstaller;
#  3. runs packaging/classifi_desktop.spec from that venv, strips the interpreter's debug
#     symbols, then prints the bundle's size and its biggest parts.
#
# Needs the shared photos (DATASET, default ../shared/datasets/dandelion-grass) and a .venv
# made by scripts/setup.sh. Works on a fresh machine: everything else comes from PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 MLFLOW_DISABLE_TELEMETRY=true
started=$SECONDS
dataset=${DATASET:-../shared/datasets/dandelion-grass}
assets=build/desktop-assets
[[ -d $dataset ]] || { echo "The photos to train the default model on are missing: $dataset" >&2; exit 1; }
[[ -x .venv/bin/classifi ]] || { echo "Run scripts/setup.sh first (the build trains with .venv)" >&2; exit 1; }

# 1. The default champion and the exported backbone, made where torch is.
scratch=$(mktemp -d /tmp/classifi-desktop-build.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
rm -rf "$assets"
mkdir -p "$assets/runtimes" "$assets/default-model"
(
    # Only this scratch home counts: the caller's CLASSIFI_* settings are left out.
    for name in $(env | grep -o '^CLASSIFI_[A-Z_]*' || true); do unset "$name"; done
    # These sources, not those the .venv was installed from, make the model and the export.
    export CLASSIFI_HOME=$scratch/home CLASSIFI_BACKBONE=efficientnet_lite0 PYTHONPATH=$PWD
    .venv/bin/classifi ingest "$dataset" >/dev/null
    .venv/bin/classifi train >/dev/null
    .venv/bin/classifi export --format runtimes --out "$assets/runtimes" >/dev/null
)
cp "$scratch"/home/bucket/model/*/*.pth "$assets/default-model/"
echo "Default model and exported backbone made in $((SECONDS - started)) s"

# 2. The venv without torch: the desktop's runtime dependencies, as pyproject.toml lists them.
requirements=$(.venv/bin/python -c '
import tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
print("\n".join([*project["optional-dependencies"]["desktop"], "pyinstaller>=6.6"]))')
venv=${DESKTOP_VENV:-/tmp/classifi-desktop-venv-$(echo "$requirements" | sha256sum | cut -c1-12)}
if [[ ! -x $venv/bin/pyinstaller ]]; then
    rm -rf "$venv"
    .venv/bin/python -m venv "$venv"
    mapfile -t packages <<<"$requirements"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "${packages[@]}"
fi
if "$venv/bin/python" -c "import torch" 2>/dev/null; then
    echo "$venv has torch: the bundle must not; remove the venv and build again" >&2
    exit 1
fi
echo "Build venv ready in $((SECONDS - started)) s: $venv"

# 3. The bundle.
# The spec collects the project's own data files (migrations) by package name.
PYTHONPATH=$PWD "$venv/bin/pyinstaller" --noconfirm --log-level WARN \
    --distpath dist --workpath build/pyinstaller packaging/classifi_desktop.spec
# The interpreter's debug symbols (about 25 MB where Python was built from source) serve no
# user. Only its own files: stripping the wheels' patched libraries (numpy.libs) breaks them.
strip --strip-debug dist/classifi-desktop/_internal/libpython3*.so* \
    dist/classifi-desktop/_internal/python3*/lib-dynload/*.so
echo "Built dist/classifi-desktop in $((SECONDS - started)) s ($(du -sh dist/classifi-desktop | cut -f1))"
echo "Biggest parts:"  # awk reads everything: no early exit for pipefail to report
du -s dist/classifi-desktop/_internal/* | sort -rn |
    awk 'NR <= 10 { printf "  %6.1f MB  %s\n", $1 / 1024, $2 }'
