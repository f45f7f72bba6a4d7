"""Device keys: made once and shown once, kept only as a hash, revocable, and each request
checks a key with one lookup."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select

from core.auth import (
    create_device_key,
    device_of_key,
    has_device_keys,
    list_device_keys,
    revoke_device_key,
)
from core.errors import AuthError, BadRequest, Conflict, NotFound
from core.registry import Registry
from core.registry.models import Credential


@pytest.fixture
def registry(registry_url: str) -> Iterator[Registry]:
    registry = Registry(registry_url)
    yield registry
    registry.dispose()


def test_a_key_names_its_device_until_revoked(registry: Registry) -> None:
    assert not has_device_keys(registry)
    phone = create_device_key(registry, "phone-anna")
    desk = create_device_key(registry, "lab.desktop")
    assert phone != desk and phone.startswith("ck_") and len(phone) > 40
    assert [key.name for key in list_device_keys(registry)] == ["phone-anna", "lab.desktop"]
    assert device_of_key(registry, phone) == "phone-anna"
    assert device_of_key(registry, desk) == "lab.desktop"
    with registry.session() as session:
        stored = session.scalars(select(Credential.secret_hash)).all()
    assert all(phone not in value and desk not in value for value in stored)  # hashes only

    with pytest.raises(Conflict, match="has a key"):
        create_device_key(registry, "phone-anna")
    revoke_device_key(registry, "phone-anna")
    with pytest.raises(AuthError, match="wrong or was revoked"):
        device_of_key(registry, phone)
    assert device_of_key(registry, desk) == "lab.desktop"
    with pytest.raises(NotFound, match="keys list"):
        revoke_device_key(registry, "phone-anna")


@pytest.mark.parametrize("key", [None, "", "ck_not-a-key", "x" * 500])
def test_missing_or_made_up_keys_are_refused(registry: Registry, key: str | None) -> None:
    create_device_key(registry, "phone")
    with pytest.raises(AuthError):
        device_of_key(registry, key)


@pytest.mark.parametrize("name", ["", "has space", "../etc", "x" * 49, "-leading"])
def test_device_names_are_short_plain_words(registry: Registry, name: str) -> None:
    with pytest.raises(BadRequest, match="Device name"):
        create_device_key(registry, name)
