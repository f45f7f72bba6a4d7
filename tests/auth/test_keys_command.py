"""``classifi keys create|list|revoke`` as a user types them: the key printed once works until
it is revoked, the list names devices and never shows a key, and a wrong name says what to do."""

from __future__ import annotations

import subprocess

import pytest

from core.auth import device_of_key
from core.config import Settings
from core.errors import AuthError
from core.registry import Registry
from tests.installation import run_classifi


def keys(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return run_classifi(settings.home, "keys", *args)


def test_a_created_key_works_until_it_is_revoked(settings: Settings) -> None:
    created = keys(settings, "create", "greenhouse-pi")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()  # the key alone on stdout, the words around it on stderr
    assert key.startswith("ck_") and "shown only this once" in created.stderr
    registry = Registry(settings.registry_url)
    try:
        assert device_of_key(registry, key) == "greenhouse-pi"

        listed = keys(settings, "list")
        assert "greenhouse-pi" in listed.stdout and key not in listed.stdout + listed.stderr
        again = keys(settings, "create", "greenhouse-pi")
        assert again.returncode == 1 and "greenhouse-pi" in again.stderr

        revoked = keys(settings, "revoke", "greenhouse-pi")
        assert revoked.returncode == 0 and "revoked" in revoked.stdout
        with pytest.raises(AuthError):
            device_of_key(registry, key)
    finally:
        registry.dispose()
    unknown = keys(settings, "revoke", "greenhouse-pi")
    assert unknown.returncode == 1
    assert "No device named 'greenhouse-pi' has a key: see `classifi keys list`" in unknown.stderr
