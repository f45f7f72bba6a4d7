"""scripts/generate_env.sh writes a strong .env once and never overwrites it."""

from __future__ import annotations

import re
import stat
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def generate(target: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(REPO / "scripts" / "generate_env.sh"), str(target)],
        capture_output=True,
        text=True,
        check=True,
    )


def values(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {name: value for name, value in pairs if not name.startswith("#")}


def test_every_secret_gets_its_own_strong_value_readable_by_the_owner_only(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    generate(env)
    secrets = values(env)
    assert set(secrets) == set(values(REPO / ".env.example"))
    assert all(re.fullmatch(r"[A-Za-z0-9]{32}", value) for value in secrets.values()), secrets
    assert len(set(secrets.values())) == len(secrets)
    assert stat.S_IMODE(env.stat().st_mode) == 0o600


def test_an_existing_env_is_kept_as_it_is(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("POSTGRES_PASSWORD=chosen-by-hand\n")
    result = generate(env)
    assert env.read_text() == "POSTGRES_PASSWORD=chosen-by-hand\n"
    assert "already exists" in result.stderr
