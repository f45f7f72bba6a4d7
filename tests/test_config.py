"""Settings: the layering, the unknown-key errors, and the example file users copy."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from core.config import Settings, load_settings
from core.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[1] / "resources" / "classifi.example.toml"


def test_environment_wins_over_file_and_file_over_defaults(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('epochs = 3\nlabels = ["rocket", "dandelion"]\n')
    settings = load_settings(
        {"CLASSIFI_HOME": str(tmp_path), "CLASSIFI_EPOCHS": "7"}, config_file=config
    )
    assert (settings.epochs, settings.labels, settings.learning_rate) == (
        7,
        ("rocket", "dandelion"),
        0.003,
    )
    assert settings.registry_url == f"sqlite:///{tmp_path / 'registry.db'}"
    assert settings.is_embedded


def test_home_config_file_is_found(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("epochs = 4\n")
    assert load_settings({"CLASSIFI_HOME": str(tmp_path)}).epochs == 4


@pytest.mark.parametrize(
    ("environ", "file_text", "message"),
    [
        ({"CLASSIFI_EPOCHES": "3"}, None, "Unknown setting CLASSIFI_EPOCHES"),
        ({}, "epoches = 3\n", "Unknown setting 'epoches'"),
        ({"CLASSIFI_EPOCHS": "many"}, None, "epochs"),
        ({"CLASSIFI_LABELS": "grass"}, None, "at least two distinct"),
        ({}, "epochs = [", "not valid TOML"),
    ],
)
def test_bad_settings_name_the_problem(
    tmp_path: Path, environ: dict[str, str], file_text: str | None, message: str
) -> None:
    config = None
    if file_text is not None:
        config = tmp_path / "config.toml"
        config.write_text(file_text)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_settings({"CLASSIFI_HOME": str(tmp_path), **environ}, config_file=config)


def test_example_file_lists_every_setting_and_loads_uncommented(tmp_path: Path) -> None:
    uncommented = "\n".join(
        re.sub(r"^# (\w+ = )", r"\1", line) for line in EXAMPLE.read_text().splitlines()
    )
    values = tomllib.loads(uncommented)
    assert set(values) == set(Settings.model_fields) - {"config_file"}
    config = tmp_path / "config.toml"
    config.write_text(uncommented)
    settings = load_settings({}, config_file=config, overrides={"home": tmp_path})
    assert settings.labels == ("dandelion", "grass") and settings.port == 8000
