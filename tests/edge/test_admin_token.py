"""The admin token: generated once, stored only as a salted hash, checked in constant time."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from classifi.cli import cli
from core.auth import (
    ADMIN_TOKEN,
    ensure_admin_token,
    hash_secret,
    reset_admin_token,
    secret_matches,
    verify_admin_token,
)
from core.config import Settings
from core.errors import AuthError
from core.registry import Credential, Registry


def test_hash_is_salted_and_verifiable() -> None:
    first, second = hash_secret("s3cret"), hash_secret("s3cret")
    assert first != second  # a fresh salt each time
    assert "s3cret" not in first
    assert secret_matches("s3cret", first) and secret_matches("s3cret", second)
    assert not secret_matches("s3cret!", first)
    assert not secret_matches("s3cret", "not$a$valid$hash")
    assert not secret_matches("s3cret", "")


def test_token_is_made_once_stored_hashed_and_reset(registry_url: str) -> None:
    registry = Registry(registry_url)
    token = ensure_admin_token(registry)
    assert token is not None and len(token) >= 32
    assert ensure_admin_token(registry) is None  # never shown twice
    with registry.session() as session:
        stored = session.get(Credential, ADMIN_TOKEN)
        assert stored is not None and token not in stored.secret_hash

    verify_admin_token(registry, token)
    for wrong in (None, "", token + "x", token[:-1]):
        with pytest.raises(AuthError):
            verify_admin_token(registry, wrong)

    new = reset_admin_token(registry)
    assert new != token
    verify_admin_token(registry, new)
    with pytest.raises(AuthError, match="wrong"):
        verify_admin_token(registry, token)
    registry.dispose()


def test_no_token_means_admin_is_closed(settings: Settings) -> None:
    registry = Registry(settings.registry_url)
    with pytest.raises(AuthError, match="admin-token reset"):
        verify_admin_token(registry, "anything")


def test_cli_reset_prints_a_working_token(settings: Settings) -> None:
    result = CliRunner().invoke(cli, ["--home", str(settings.home), "admin-token", "reset"])
    assert result.exit_code == 0, result.output
    token = result.stdout.strip().splitlines()[-1]
    verify_admin_token(Registry(settings.registry_url), token)
