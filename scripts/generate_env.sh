#!/usr/bin/env bash
# Writes .env for docker-compose.yaml once: .env.example with a strong random value (32
# letters and digits, about 190 bits) for each empty NAME=. An existing .env is never touched:
# PostgreSQL, MinIO's root and Grafana keep the passwords they were first started with.
# Usage: bash scripts/generate_env.sh [PATH]   (default: .env beside docker-compose.yaml)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
target="${1:-$root/.env}"

if [[ -e "$target" ]]; then
    echo "$target already exists and is kept as it is." >&2
    exit 0
fi

random_value() {
    local value=""
    while ((${#value} < 32)); do
        value+=$(head -c 64 /dev/urandom | LC_ALL=C tr -dc 'A-Za-z0-9')
    done
    printf '%s' "${value:0:32}"
}

umask 077
set -o noclobber # create the file or fail, never overwrite one made meanwhile
{
    while IFS= read -r line || [[ -n "$line" ]]; do
        if [[ "$line" =~ ^([A-Z][A-Z0-9_]*)=$ ]]; then
            printf '%s=%s\n' "${BASH_REMATCH[1]}" "$(random_value)"
        else
            printf '%s\n' "$line"
        fi
    done <"$root/.env.example"
} >"$target"
chmod 600 "$target"
echo "Wrote $target (readable only by you). Keep it: the stack's data is locked with it." >&2
