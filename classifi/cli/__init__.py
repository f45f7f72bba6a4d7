"""``classifi``: one console script, one subcommand per module, imported only when used.

Subcommands load lazily so that ``classifi --help`` answers at once, without importing torch.
"""

from __future__ import annotations

import getpass
import importlib
import importlib.util
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from core.config import Settings, load_settings
from core.errors import ClassifiError

if TYPE_CHECKING:
    from core.app import App

# name -> (module, one-line help). Each module defines a click command or group named `command`.
COMMANDS: dict[str, tuple[str, str]] = {
    "ingest": (
        "classifi.cli.ingest",
        "Ingest labelled photos from a folder, a CSV manifest or 'default'.",
    ),
    "status": (
        "classifi.cli.status",
        "Show where the stores live, photo counts and the current model.",
    ),
    "train": ("classifi.cli.train", "Train a new model on the registered photos."),
    "reembed": (
        "classifi.cli.reembed",
        "Fill a backbone's embedding cache, here or on the workers.",
    ),
    "predict": ("classifi.cli.predict", "Classify photos or folders with the champion model."),
    "explain": ("classifi.cli.explain", "Write a photo's heatmap: where the model saw its label."),
    "submit": ("classifi.cli.submit", "Submit a photo with a proposed label for review."),
    "review": ("classifi.cli.review", "List, approve or reject pending submissions (admin)."),
    "audit": ("classifi.cli.audit", "Find training photos whose label looks wrong (admin)."),
    "retrain-check": ("classifi.cli.retrain", "Retrain when enough new validated photos wait."),
    "models": ("classifi.cli.models", "List model versions, promote one, or roll back."),
    "doctor": ("classifi.cli.doctor", "Check bucket/registry consistency and repair what can be."),
    "worker": ("classifi.cli.worker", "Run the Huey worker: scheduled ingest and retrain checks."),
    "serve": ("classifi.cli.serve", "Run the edge server (REST API, health, metrics)."),
    "admin-token": ("classifi.cli.admin_token", "Manage the edge server's admin token."),
    "backup": ("classifi.cli.backup", "Back up this home (safe while everything runs)."),
    "restore": ("classifi.cli.restore", "Restore a backup as this home."),
    "keys": ("classifi.cli.keys", "Create, list, revoke or pair the edge server's device keys."),
    "desktop": ("classifi.cli.desktop", "Open the desktop app."),
    "export": ("classifi.cli.export", "Export a model as ONNX, or the backbone files to ship."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name, (module, _) in COMMANDS.items() if _module_exists(module)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.list_commands(ctx):
            return None
        command: click.Command = importlib.import_module(COMMANDS[cmd_name][0]).command
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # The one-line help comes from COMMANDS, so `classifi --help` imports no command module.
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _module_exists(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("alembic", "mlflow", "urllib3", "botocore", "PIL", "matplotlib", "huey.consumer"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))


def settings_of(ctx: click.Context) -> Settings:
    """The settings built once by the top-level group."""
    settings: Settings = ctx.find_root().obj
    return settings


def os_actor() -> str:
    """The OS user who runs the command: the name its decisions are audited under."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (e.g. a bare container)
        return "unknown-user"


def app_of(ctx: click.Context, **overrides: Any) -> App:
    """The application for this command, acting for the OS user, closed when the command
    ends. ``overrides`` change settings for this command only (``classifi train --epochs``)."""
    from core.app import App  # the stores' libraries load only when a command needs them

    settings = settings_of(ctx)
    if overrides:
        settings = settings.model_copy(update=overrides)
    return ctx.with_resource(App(settings, actor=os_actor()))


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="TOML settings file (default: $CLASSIFI_CONFIG or <home>/config.toml).",
)
@click.option(
    "--home", type=click.Path(file_okay=False, path_type=Path), help="Data folder (CLASSIFI_HOME)."
)
@click.option("-v", "--verbose", is_flag=True, help="Log debug details.")
@click.version_option(package_name="classifimage")
@click.pass_context
def cli(ctx: click.Context, config_file: Path | None, home: Path | None, verbose: bool) -> None:
    """ClassifiImage: sort photos, correct the model, watch it get better.

    Settings come from defaults, then a TOML file, then CLASSIFI_* environment variables.
    """
    overrides: dict[str, Any] = {"home": home} if home else {}
    if verbose:
        overrides["log_level"] = "DEBUG"
    ctx.obj = load_settings(os.environ, config_file=config_file, overrides=overrides)
    setup_logging(ctx.obj.log_level)


def main() -> None:
    try:
        exit_code = cli.main(prog_name="classifi", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except ClassifiError as exc:
        click.secho(f"Error: {exc}", fg="red", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    sys.exit(exit_code if isinstance(exit_code, int) else 0)
