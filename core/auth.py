"""Secrets in the registry's ``credentials`` table, kept only as hashes (but for the web
page's session signing key, which must be read back).

The edge server's admin token is generated on first start, shown once, and never stored in
clear. Checking a token re-derives the scrypt hash with the stored salt and compares the two
in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from core.errors import AuthError, Conflict, NotFound
from core.registry import Registry
from core.registry.models import Credential

ADMIN_TOKEN = "edge_admin_token"

# scrypt cost: ~16 MB and a few tens of milliseconds per check, cheap for an admin request
# and expensive for a guessing attack on a leaked hash.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1
_SALT_BYTES = 16
_MAXMEM = 64 * 1024 * 1024


def _derive(secret: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(secret.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM)


def hash_secret(secret: str) -> str:
    """``scrypt$n$r$p$salt$hash`` (hex), a self-describing salted hash of ``secret``."""
    salt = secrets.token_bytes(_SALT_BYTES)
    digest = _derive(secret, salt, _SCRYPT_N, _SCRYPT_R, _SCRYPT_P)
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${salt.hex()}${digest.hex()}"


def secret_matches(secret: str, stored: str) -> bool:
    """Whether ``secret`` hashes to ``stored``; the comparison takes constant time."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        candidate = _derive(secret, bytes.fromhex(salt), int(n), int(r), int(p))
        return hmac.compare_digest(candidate, bytes.fromhex(digest))
    except ValueError:  # a malformed stored hash never matches
        return False


def set_secret(registry: Registry, name: str, secret: str) -> None:
    """Store (or replace) the hash of ``secret`` under ``name``."""
    with registry.session() as session:
        row = session.get(Credential, name)
        if row is None:
            session.add(Credential(name=name, secret_hash=hash_secret(secret)))
        else:
            row.secret_hash = hash_secret(secret)


def verify_secret(registry: Registry, name: str, secret: str | None) -> None:
    """Raise :class:`AuthError` unless ``secret`` is the one stored under ``name``."""
    if not secret:
        raise AuthError("Credentials are missing: send them in the Authorization header.")
    with registry.session() as session:
        row = session.get(Credential, name)
        stored = row.secret_hash if row is not None else None
    if stored is None:
        raise AuthError(
            "No admin token is set: start the server once or run `classifi admin-token reset`."
        )
    if not secret_matches(secret, stored):
        raise AuthError("The credentials are wrong.")


def new_token() -> str:
    return secrets.token_urlsafe(32)


def ensure_admin_token(registry: Registry) -> str | None:
    """Create the admin token if there is none; return it (to show once) or ``None``."""
    with registry.session() as session:
        if session.get(Credential, ADMIN_TOKEN) is not None:
            return None
    token = new_token()
    try:
        with registry.session() as session:
            session.add(Credential(name=ADMIN_TOKEN, secret_hash=hash_secret(token)))
    except Conflict:  # another process created it first; that one is the token
        return None
    return token


def reset_admin_token(registry: Registry) -> str:
    """Replace the admin token with a new one and return it; the old one stops working."""
    token = new_token()
    set_secret(registry, ADMIN_TOKEN, token)
    return token


def verify_admin_token(registry: Registry, token: str | None) -> None:
    verify_secret(registry, ADMIN_TOKEN, token)


# The key that signs the edge server's web-page sessions. A signing key must be read back,
# so unlike the secrets above it is kept as it is. Generated once in the registry, it is the
# same for every worker of a server and survives restarts.
SESSION_KEY = "edge_session_key"


def ensure_session_key(registry: Registry) -> str:
    """The session signing key, created on first use (by whichever process comes first)."""
    with registry.session() as session:
        row = session.get(Credential, SESSION_KEY)
        if row is not None:
            return row.secret_hash
    key = secrets.token_hex(32)
    try:
        with registry.session() as session:
            session.add(Credential(name=SESSION_KEY, secret_hash=key))
    except Conflict:  # another worker created it first: that one is the key
        return ensure_session_key(registry)
    return key


# The desktop's admin password (local mode): chosen at first use, stored only as its hash.
DESKTOP_ADMIN_PASSWORD = "desktop_admin_password"
MIN_PASSWORD_LENGTH = 8


def has_secret(registry: Registry, name: str) -> bool:
    """Whether a secret is stored under ``name``."""
    with registry.session() as session:
        return session.get(Credential, name) is not None


def choose_password(registry: Registry, name: str, password: str) -> None:
    """Store the first password under ``name``; changing an existing one is refused."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AuthError(f"Choose a password of at least {MIN_PASSWORD_LENGTH} characters.")
    try:
        with registry.session() as session:
            if session.get(Credential, name) is not None:
                raise Conflict("An admin password is already set: sign in with it instead.")
            session.add(Credential(name=name, secret_hash=hash_secret(password)))
    except Conflict as exc:  # also a concurrent first choice from another process
        raise AuthError(str(exc)) from None


# Device keys: what phones, desktops and other devices send to the prediction, submission
# and usage routes of a server reachable from the network. A key is 256 random bits, so a
# fast hash is enough (no password to guess) and each request costs one indexed-size lookup,
# not a scrypt per key.
DEVICE_PREFIX = "device:"
DEVICE_KEY_PREFIX = "ck_"
_DEVICE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,47}")


@dataclass(frozen=True)
class DeviceKey:
    name: str
    created_at: datetime


def _device_hash(key: str) -> str:
    return "sha256$" + hashlib.sha256(key.encode("utf-8")).hexdigest()


def create_device_key(registry: Registry, name: str) -> str:
    """A new key for device ``name``, returned once; only its hash is kept."""
    if not _DEVICE_NAME.fullmatch(name):
        raise AuthError(
            f"Device name {name!r}: use up to 48 letters, digits, '.', '_' or '-', e.g. 'phone-anna'."
        )
    taken = Conflict(f"A device named {name!r} has a key: revoke it first, or pick a name.")
    if has_secret(registry, DEVICE_PREFIX + name):
        raise taken
    key = DEVICE_KEY_PREFIX + secrets.token_urlsafe(32)
    try:
        with registry.session() as session:
            session.add(Credential(name=DEVICE_PREFIX + name, secret_hash=_device_hash(key)))
    except Conflict:  # created concurrently by another process
        raise taken from None
    return key


def list_device_keys(registry: Registry) -> list[DeviceKey]:
    with registry.session() as session:
        rows = session.scalars(
            select(Credential)
            .where(Credential.name.startswith(DEVICE_PREFIX))
            .order_by(Credential.created_at)
        )
        return [DeviceKey(row.name.removeprefix(DEVICE_PREFIX), row.created_at) for row in rows]


def revoke_device_key(registry: Registry, name: str) -> None:
    with registry.session() as session:
        row = session.get(Credential, DEVICE_PREFIX + name)
        if row is None:
            raise NotFound(f"No device named {name!r} has a key: see `classifi keys list`.")
        session.delete(row)


def device_of_key(registry: Registry, key: str | None) -> str:
    """The name of the device whose key ``key`` is; :class:`AuthError` if none."""
    if not key:
        raise AuthError("A device key is required: send it as 'X-API-Key: <key>'.")
    with registry.session() as session:
        name = session.scalar(
            select(Credential.name).where(
                Credential.name.startswith(DEVICE_PREFIX),
                Credential.secret_hash == _device_hash(key),
            )
        )
    if name is None:
        raise AuthError("The device key is wrong or was revoked: ask the admin for a new one.")
    return name.removeprefix(DEVICE_PREFIX)


def has_device_keys(registry: Registry) -> bool:
    with registry.session() as session:
        return (
            session.scalar(
                select(Credential.name).where(Credential.name.startswith(DEVICE_PREFIX)).limit(1)
            )
            is not None
        )
