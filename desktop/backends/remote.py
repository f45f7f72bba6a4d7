"""Remote mode: the product's use cases on an edge server over HTTP. Submissions made while it
cannot take them wait in an :class:`~desktop.outbox.Outbox` and are sent when it can."""

from __future__ import annotations

import logging
import re
import socket
from pathlib import PurePath

from core.app.remote import RemoteApp
from core.auth import is_pairing_code
from core.config import Settings
from core.errors import AuthError, ClassifiError, QuotaExceeded, RateLimited, TaskFailed
from core.imaging import check_photo
from core.wire import RetrainOutcome, Submission
from desktop.backends.base import QUEUED, REMOTE, Backend, Queued
from desktop.outbox import Outbox

log = logging.getLogger(__name__)


def worth_retrying(error: ClassifiError) -> bool:
    """A submission the server could not take now is sent again later: the server is down or
    failing (a 5xx), asks to slow down (a rate limit), or has as many of this device's photos
    waiting for review as it takes. So is one refused for the key, which a new key mends: a
    wrong key must not lose photos. Any other refusal is about the photo or its label, and
    sending it again could never succeed."""
    return error.status >= 500 or isinstance(error, AuthError | RateLimited | QuotaExceeded)


def usable_key(url: str, secret: str) -> str:
    """The key to keep for the edge server at ``url``: ``secret`` itself once the server has
    not refused it, or the key that ``secret``, a pairing code, was traded for. AuthError for
    a key or code the server refuses. A server that does not answer now is no reason to
    refuse a key (photos wait in the outbox); a code can only be traded with one that does."""
    if is_pairing_code(secret):
        api = RemoteApp(url)
        try:
            return api.pair(secret, this_device()).key
        finally:
            api.close()
    api = RemoteApp(url, api_key=secret)
    try:
        api.champion()  # a route that checks the key
    except AuthError:
        raise
    except ClassifiError as exc:  # down or busy now: the key is tried again on each call
        log.info("the key could not be checked now (%s); it is kept", exc.code)
    finally:
        api.close()
    return secret


def this_device() -> str:
    """This computer's name as a device name (what a pairing names its key)."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", socket.gethostname()).strip("-._")[:48]
    return name or "desktop"


class RemoteBackend(Backend):
    """A :class:`~core.app.remote.RemoteApp`; the edge server's admin token signs in."""

    mode = REMOTE
    api: RemoteApp

    def __init__(self, settings: Settings, url: str, api_key: str | None = None) -> None:
        super().__init__(settings, RemoteApp(url, api_key=api_key))
        self.outbox = Outbox(settings.home / "desktop-outbox")

    @property
    def url(self) -> str:
        return self.api.url

    def describe(self) -> str:
        return f"Remote: {self.url}"

    # --- Submissions -----------------------------------------------------------------------
    def submit(self, data: bytes, label: str, *, source: str) -> Submission | Queued:
        """Sent now when the server takes it, else kept in the outbox (:data:`QUEUED`). A photo
        that fails the checks is refused here, before anything is queued."""
        photo = check_photo(data, self.settings)
        try:
            self.sync()  # what waits goes first
            return super().submit(data, label, source=source)
        except ClassifiError as exc:
            if not worth_retrying(exc):
                raise
        name = PurePath(source).name or "photo"
        self.outbox.add(photo.data, photo.sha256, photo.extension, name, label)
        return QUEUED

    def waiting_to_sync(self) -> int:
        return len(self.outbox)

    def sync(self) -> int:
        """Send the waiting submissions in order, until one the server cannot take now (it
        stays queued). One the server refuses for good is dropped, and the reason logged."""
        delivered = 0
        for entry in self.outbox.entries():
            try:
                super().submit(self.outbox.photo(entry), entry.label, source=entry.filename)
                delivered += 1
            except ClassifiError as exc:
                if worth_retrying(exc):
                    break
                log.warning(
                    "the edge server refused the queued submission %s (%s): dropped. %s",
                    entry.filename,
                    exc.code,
                    exc,
                )
            self.outbox.remove(entry)
        return delivered

    # --- Admin -----------------------------------------------------------------------------
    def needs_admin_password_choice(self) -> bool:
        return False  # the server's token exists from its first start

    def choose_admin_password(self, password: str) -> None:
        raise AuthError("In remote mode the edge server's admin token is used, not a password.")

    def sign_in(self, secret: str) -> None:
        """Keep the token once the server has accepted it (on a cheap admin request)."""
        self.api.admin_token = secret.strip()
        try:
            self.api.pending(limit=1)
        except ClassifiError:
            self.api.admin_token = None
            raise
        self.admin_signed_in = True

    def retrain(self) -> str:
        self.check_admin()
        return self.api.enqueue_retrain()

    def retrain_result(self, task_id: str) -> RetrainOutcome | None:
        state = self.api.retrain_state(task_id)
        if state.status == "failed":
            raise TaskFailed(state.error or f"Task {task_id} failed on the server's worker.")
        return state.result
