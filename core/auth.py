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
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import AuthError, BadRequest, Conflict, NotFound
from core.registry import Registry
from core.registry.models import Credential

if TYPE_CHECKING:
    from limits import RateLimitItem

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


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)  # SQLite drops the zone


@dataclass(frozen=True)
class DeviceKey:
    name: str
    created_at: datetime


def _device_hash(key: str) -> str:
    return "sha256$" + hashlib.sha256(key.encode("utf-8")).hexdigest()


def _check_device_name(name: str) -> None:
    if not _DEVICE_NAME.fullmatch(name):
        raise BadRequest(
            f"Device name {name!r}: use up to 48 letters, digits, '.', '_' or '-', e.g. 'phone-anna'.",
            code="invalid_name",
        )


def _name_taken(name: str) -> Conflict:
    return Conflict(f"A device named {name!r} has a key: revoke it first, or pick a name.")


def _add_device_key(session: Session, name: str) -> str:
    """Add a key for device ``name`` to ``session``'s transaction; the key, to show once."""
    if session.get(Credential, DEVICE_PREFIX + name) is not None:
        raise _name_taken(name)
    key = DEVICE_KEY_PREFIX + secrets.token_urlsafe(32)
    session.add(Credential(name=DEVICE_PREFIX + name, secret_hash=_device_hash(key)))
    return key


def create_device_key(registry: Registry, name: str) -> str:
    """A new key for device ``name``, returned once; only its hash is kept."""
    _check_device_name(name)
    try:
        with registry.session() as session:
            return _add_device_key(session, name)
    except Conflict:  # also when created concurrently by another process
        raise _name_taken(name) from None


def list_device_keys(registry: Registry) -> list[DeviceKey]:
    with registry.session() as session:
        rows = session.scalars(
            select(Credential)
            .where(Credential.name.startswith(DEVICE_PREFIX))
            .order_by(Credential.created_at)
        )
        return [
            DeviceKey(row.name.removeprefix(DEVICE_PREFIX), _aware(row.created_at)) for row in rows
        ]


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


#: The device key the first start off loopback makes when there is none (and no api_keys).
FIRST_DEVICE = "first-device"


def ensure_first_device_key(registry: Registry) -> str | None:
    """Create the key of :data:`FIRST_DEVICE` if no device has one: the key, to show once, or
    ``None`` (keys exist, or another worker made it first)."""
    if has_device_keys(registry):
        return None
    try:
        return create_device_key(registry, FIRST_DEVICE)
    except Conflict:
        return None


# Pairing: ``classifi keys pair`` shows a short code; the device sends it to ``POST /pair``
# and gets a device key of its own, without anyone copying a 46-character key by hand. A code
# is kept only as its hash, works once, and expires.
PAIRING_PREFIX = "pairing:"
#: No 0/O, 1/I/L or U/V pairs to mistake when reading a code off a screen.
PAIRING_ALPHABET = "23456789ABCDEFGHJKMNPQRSTWXYZ"
PAIRING_CODE_LENGTH = 8
PAIRING_VALID = timedelta(minutes=10)
# A pairing made without a name: the device names its key. Not a valid device name, so it
# cannot collide with one.
_UNNAMED = "*"
_WRONG_CODE = (
    "This pairing code is wrong, used or expired (a code works once, for "
    f"{PAIRING_VALID.seconds // 60} minutes): run `classifi keys pair` on the server for a new one."
)


@dataclass(frozen=True)
class PairingCode:
    code: str  # as shown, e.g. "K7QM-X3PD"; typed with or without the dash, in any case
    device: str | None  # the key's name, or None if the device names it
    expires_at: datetime


def normalise_pairing_code(text: str) -> str:
    return "".join(text.split()).replace("-", "").upper()


def is_pairing_code(text: str) -> bool:
    """Whether ``text`` has the shape of a pairing code (a device key is much longer)."""
    code = normalise_pairing_code(text)
    return len(code) == PAIRING_CODE_LENGTH and all(c in PAIRING_ALPHABET for c in code)


def _expired(row: Credential, now: datetime) -> bool:
    return _aware(row.created_at) + PAIRING_VALID <= now


def _drop_expired_pairings(registry: Registry, now: datetime) -> None:
    with registry.session() as session:
        rows = session.scalars(select(Credential).where(Credential.name.startswith(PAIRING_PREFIX)))
        for row in rows:
            if _expired(row, now):
                session.delete(row)


def create_pairing_code(registry: Registry, device: str | None = None) -> PairingCode:
    """A one-time code that a device trades for a key named ``device`` (or, without one, the
    name the device gives). A new code for the same name replaces the previous one."""
    if device is not None:
        _check_device_name(device)
        if has_secret(registry, DEVICE_PREFIX + device):
            raise _name_taken(device)
    raw = "".join(secrets.choice(PAIRING_ALPHABET) for _ in range(PAIRING_CODE_LENGTH))
    now = datetime.now(UTC)
    name = PAIRING_PREFIX + (device or _UNNAMED + secrets.token_hex(4))
    _drop_expired_pairings(registry, now)
    with registry.session() as session:
        row = session.get(Credential, name)
        if row is not None:
            session.delete(row)
            session.flush()
        session.add(Credential(name=name, secret_hash=_device_hash(raw), created_at=now))
    half = PAIRING_CODE_LENGTH // 2
    return PairingCode(f"{raw[:half]}-{raw[half:]}", device, now + PAIRING_VALID)


def redeem_pairing_code(registry: Registry, code: str, device: str) -> tuple[str, str]:
    """Trade a pairing code for a new device key: ``(device name, key)``. The code is used up
    only when the key is made; :class:`AuthError` for a wrong, used or expired code."""
    now = datetime.now(UTC)
    _drop_expired_pairings(registry, now)
    with registry.session() as session:
        row = session.scalar(
            select(Credential).where(
                Credential.name.startswith(PAIRING_PREFIX),
                Credential.secret_hash == _device_hash(normalise_pairing_code(code)),
            )
        )
        if row is None or _expired(row, now):
            raise AuthError(_WRONG_CODE)
        named = row.name.removeprefix(PAIRING_PREFIX)
        name = device if named.startswith(_UNNAMED) else named
        _check_device_name(name)
        session.delete(row)
        key = _add_device_key(session, name)
    return name, key


def admin_token_fingerprint(registry: Registry) -> str | None:
    """A digest of the stored admin token's hash (None before there is one). Resetting the
    token changes it, which ends the web sessions signed in with the old one; it tells
    nothing about the token itself."""
    with registry.session() as session:
        row = session.get(Credential, ADMIN_TOKEN)
        stored = row.secret_hash if row is not None else None
    if stored is None:
        return None
    return hashlib.sha256(f"session:{stored}".encode()).hexdigest()[:32]


class SignInGuard:
    """Stops checking a secret after too many wrong ones within the window of ``rates``
    (setting ``rate_limit_sign_in``), in this process: the desktop's admin password, where
    the desktop is the one process that asks. The edge server limits per address instead."""

    def __init__(self, rates: list[RateLimitItem]) -> None:
        from limits.storage import MemoryStorage
        from limits.strategies import MovingWindowRateLimiter

        self._rates = rates
        self._failures = MovingWindowRateLimiter(MemoryStorage())
        self._lock = threading.Lock()  # test then check then count: one sign-in at a time

    def check(self, verify: Callable[[], None]) -> None:
        """Run ``verify`` (which raises AuthError for a wrong secret) unless too many failed."""
        with self._lock:
            for rate in self._rates:
                if not self._failures.test(rate, "sign-in"):
                    reset_at, _ = self._failures.get_window_stats(rate, "sign-in")
                    wait = max(1, round(reset_at - datetime.now(UTC).timestamp()))
                    raise AuthError(
                        f"Too many wrong passwords: wait {wait} seconds, then try again."
                    )
            try:
                verify()
            except AuthError:
                for rate in self._rates:
                    self._failures.hit(rate, "sign-in")
                raise
