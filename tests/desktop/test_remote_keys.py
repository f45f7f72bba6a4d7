"""Remote mode against a real server that needs a device key, and whose disk is "full" (its
free-disk floor is set above any disk, so a submission answers 507): the settings dialog
keeps a key the server takes, refuses a wrong one with the server's reason, and trades a
pairing code for a key of its own; the outbox keeps what a wrong key or a 5xx refused and
drops, saying why, what a 4xx refused for good.

The server's rule reads its configured interface (0.0.0.0) while it listens on 127.0.0.1.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtWidgets import QDialog
from pytestqt.qtbot import QtBot

from core.app import App
from core.config import Settings, load_settings
from core.errors import AuthError
from core.wire import Prediction
from desktop.app import preferences
from desktop.backends import QUEUED, RemoteBackend, open_backend
from desktop.backends.remote import this_device
from desktop.settings_dialog import SettingsDialog
from tests.desktop.conftest import submit
from tests.edge.conftest import LiveServer, copy_home, start_gunicorn
from tests.services import free_port

pytestmark = [pytest.mark.gui, pytest.mark.slow]


@pytest.fixture(scope="module")
def keyed_server(
    tmp_path_factory: pytest.TempPathFactory, trained_home: Path
) -> Iterator[LiveServer]:
    home = copy_home(trained_home, tmp_path_factory.mktemp("keyed") / "home")
    live = start_gunicorn(
        home,
        env={"CLASSIFI_HOST": "0.0.0.0", "CLASSIFI_MIN_FREE_DISK_MB": str(10**9)},
    )
    assert live.device_key is not None  # the first start off loopback made one
    yield live
    live.stop()


def server_app(server: LiveServer) -> App:
    return App(load_settings({}, overrides={"home": server.home}), actor="tests")


def save(qtbot: QtBot, dialog: SettingsDialog, url: str, secret: str) -> None:
    """Type the server and the key or code, press Save, and wait for the server's word."""
    dialog.remote.setChecked(True)
    dialog.url.setText(url)
    dialog.api_key.setText(secret)
    dialog.accept()
    qtbot.waitUntil(
        lambda: dialog.result() == QDialog.DialogCode.Accepted or dialog.buttons.isEnabled(),
        timeout=30_000,
    )


def test_the_dialog_keeps_a_key_the_server_takes_and_refuses_a_wrong_one(
    qtbot: QtBot,
    settings: Settings,
    keyed_server: LiveServer,
    dataset_photos: dict[str, list[Path]],
) -> None:
    prefs = preferences(settings)
    dialog = SettingsDialog(prefs)
    qtbot.addWidget(dialog)
    save(qtbot, dialog, keyed_server.url, "ck_made-up")
    assert dialog.result() != QDialog.DialogCode.Accepted  # still open, saying why
    assert "The device key is wrong or was revoked" in dialog.error.text()
    assert prefs.value("server/api_key") is None  # nothing kept

    key = str(keyed_server.device_key)
    save(qtbot, dialog, keyed_server.url, key)
    assert dialog.result() == QDialog.DialogCode.Accepted
    assert prefs.value("server/api_key") == key
    backend = open_backend(settings, prefs)
    (answer,) = backend.classify([dataset_photos["grass"][0].read_bytes()])
    assert isinstance(answer, Prediction) and answer.label == "grass"


def test_a_pairing_code_is_traded_for_a_key_of_this_computers_own(
    qtbot: QtBot,
    settings: Settings,
    keyed_server: LiveServer,
    dataset_photos: dict[str, list[Path]],
) -> None:
    with server_app(keyed_server) as app:
        code = app.create_pairing_code().code
    prefs = preferences(settings)
    dialog = SettingsDialog(prefs)
    qtbot.addWidget(dialog)
    save(qtbot, dialog, keyed_server.url, code.lower())
    assert dialog.result() == QDialog.DialogCode.Accepted
    key = str(prefs.value("server/api_key"))
    assert key.startswith("ck_") and key != code
    with server_app(keyed_server) as app:
        assert this_device() in {device.name for device in app.device_keys()}
    (answer,) = open_backend(settings, prefs).classify(
        [dataset_photos["dandelion"][0].read_bytes()]
    )
    assert isinstance(answer, Prediction)

    again = SettingsDialog(prefs)  # the code worked once
    qtbot.addWidget(again)
    save(qtbot, again, keyed_server.url, code)
    assert again.result() != QDialog.DialogCode.Accepted
    assert "wrong, used or expired" in again.error.text()


def test_the_outbox_keeps_what_may_go_later_and_drops_what_never_will(
    settings: Settings,
    keyed_server: LiveServer,
    unseen_photos: dict[str, list[Path]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    tulip, grass = unseen_photos["dandelion"][40], unseen_photos["grass"][40]
    # Queued while the server was down: a label the server does not know.
    down = RemoteBackend(settings, f"http://127.0.0.1:{free_port()}")
    assert submit(down, tulip, "tulip") == QUEUED

    # A wrong key must not lose photos: refused for the key, each one stays queued.
    wrong = RemoteBackend(settings, keyed_server.url, api_key="ck_made-up")
    assert submit(wrong, grass, "grass") == QUEUED
    assert wrong.waiting_to_sync() == 2
    with pytest.raises(AuthError, match="wrong or was revoked"):
        wrong.classify([grass.read_bytes()])

    right = RemoteBackend(settings, keyed_server.url, api_key=keyed_server.device_key)
    with caplog.at_level(logging.WARNING, logger="desktop.backends.remote"):
        assert right.sync() == 0
    # The unknown label is refused for good (400): dropped, and the log says why. The grass
    # photo met the full disk (507): it stays, to go when the server has room.
    assert [entry.filename for entry in right.outbox.entries()] == [grass.name]
    assert f"refused the queued submission {tulip.name} (unknown_label): dropped" in caplog.text
    assert "tulip" in caplog.text
    assert submit(right, unseen_photos["grass"][41], "grass") == QUEUED  # a 507 now: queued
    assert right.waiting_to_sync() == 2
