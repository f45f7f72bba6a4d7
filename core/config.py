"""Settings: defaults, then a TOML file, then ``CLASSIFI_*`` environment variables.

One :class:`Settings` object is built per entry point with :func:`load_settings` and passed
down. Nothing else in the project reads the environment.
"""

from __future__ import annotations

import ipaddress
import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from core.errors import ConfigError

if TYPE_CHECKING:
    from limits import RateLimitItem

ENV_PREFIX = "CLASSIFI_"
BUCKET_NAME = "image-dandelion-grass"


def default_home() -> Path:
    """The user's data directory, e.g. ~/.local/share/classifimage on Linux."""
    return Path(platformdirs.user_data_dir("classifimage"))


class Settings(BaseModel):
    """Every setting of the application, with its default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Where the embedded stores live; the URLs below default to places inside it.
    home: Path = Field(default_factory=lambda: default_home())
    config_file: Path | None = None

    registry_url: str = ""  # default: sqlite:///<home>/registry.db
    store_url: str = ""  # default: file://<home>/bucket
    s3_access_key: SecretStr | None = None
    s3_secret_key: SecretStr | None = None
    s3_region: str | None = None
    queue_url: str = ""  # default: sqlite:///<home>/queue.db (SqliteHuey)
    mlflow_tracking_uri: str = ""  # default: sqlite:///<home>/mlflow.db
    mlflow_artifact_root: str = ""  # default: <home>/mlartifacts
    mlflow_experiment: str = "DINOv2_Classifier"
    mlflow_model_name: str = "dinov2_classifier"

    labels: tuple[str, ...] = ("dandelion", "grass")

    # Input limits, applied to every photo from any source.
    max_upload_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    max_image_pixels: int = Field(default=40_000_000, gt=0)
    min_image_side: int = Field(default=16, gt=0)
    download_timeout_s: float = Field(default=15.0, gt=0)

    # The model.
    backbone: str = "auto"
    dinov2_weights: Path | None = None
    torch_home: Path | None = None  # default: $TORCH_HOME or ~/.cache/torch
    allow_weight_download: bool = True
    embed_batch_size: int = Field(default=32, gt=0)
    # Inference: auto picks the fastest runtime that keeps parity with torch fp32 here.
    runtime: Literal["auto", "torch", "onnxruntime", "openvino"] = "auto"
    runtime_search_path: tuple[Path, ...] = ()  # read-only folders of shipped exported files
    inference_threads: int | None = Field(default=None, gt=0)  # default: every core

    # Training.
    learning_rate: float = Field(default=0.003, gt=0)
    epochs: int = Field(default=10, gt=0)
    train_batch_size: int = Field(default=32, gt=0)
    validation_fraction: float = Field(default=0.3, gt=0, lt=1)
    split_seed: int = 42
    min_photos_per_label: int = Field(default=5, ge=5)

    # The learning loop.
    retrain_min_new: int = Field(default=10, gt=0)
    retrain_schedule: str = "0 0 * * 6"  # cron: Saturday 00:00, as in the seed
    promotion_floor: float = Field(default=0.90, ge=0, le=1)
    # Cosine distance, calibrated by bench/near_duplicates.py on efficientnet_lite0: catches
    # re-encoded, upscaled, mirrored and most 90%-cropped copies and the shared photos' two
    # re-cropped/re-coloured pairs (0.034, 0.067); 6 of 340 distinct photos fall under it.
    near_duplicate_distance: float = Field(default=0.07, ge=0, le=2)
    keep_rejected: bool = True
    # Submission quotas: a full review queue or disk refuses new photos before storing any.
    max_pending_submissions: int = Field(default=5000, gt=0)
    max_pending_per_submitter: int = Field(default=500, gt=0)
    min_free_disk_mb: int = Field(default=500, ge=0)
    ingest_sources: tuple[str, ...] = ()
    ingest_schedule: str = ""  # cron; empty: scheduled ingest is off

    # The edge server.
    host: str = "127.0.0.1"
    port: int = Field(default=8000, gt=0, lt=65536)
    server_workers: int = Field(default=1, gt=0)
    server_threads: int = Field(default=16, gt=0)  # per worker; concurrent requests micro-batch
    # Off loopback, prediction, submission and usage need a device key (``classifi keys``)
    # or one of these plain keys from the environment (CLASSIFI_API_KEYS).
    api_keys: tuple[SecretStr, ...] = ()
    # True opens those routes to anyone who can reach the port: for a trusted LAN only.
    allow_anonymous: bool = False
    cors_origins: tuple[str, ...] = ()
    batch_max_size: int = Field(default=16, gt=0)
    batch_max_delay_ms: float = Field(default=5.0, ge=0)
    max_batch_files: int = Field(default=32, gt=0)
    # Behind a reverse proxy that terminates TLS: trust its X-Forwarded-Proto (secure cookies)
    # and X-Forwarded-For (rate limits per client). Off, anyone could forge them.
    trusted_proxy: bool = False
    # Rate limits on every route, counted per client address and per device key, written as
    # "600 per minute" (several: "20 per second; 600 per minute"). A request over one answers
    # 429 with Retry-After.
    rate_limit_predict: str = "1200 per minute"  # /predict, /predict/batch, /check_duplicate
    rate_limit_submit: str = "60 per minute"  # /submissions and the page's proposals
    rate_limit_pair: str = "5 per minute"  # /pair: pairing codes are short, guesses are few
    rate_limit_other: str = "600 per minute"  # every other route
    # Refused admin tokens (REST and the web page, per address) and desktop admin passwords.
    rate_limit_sign_in: str = "5 per minute"

    # The worker serves Prometheus metrics on http://<worker_metrics_host>:<port>/metrics
    # (0 turns them off); 0.0.0.0 in a container, so that Prometheus can reach them.
    worker_metrics_host: str = "127.0.0.1"
    worker_metrics_port: int = Field(default=9100, ge=0, lt=65536)

    # Similarity search (near-duplicates, similar photos): pgvector on PostgreSQL, sqlite-vec
    # beside SQLite, or the exact scan of every cached vector; auto picks by registry and
    # falls back to the exact scan where the extension is missing (see core/vectors).
    vector_index: Literal["auto", "pgvector", "sqlite-vec", "exact"] = "auto"

    # The desktop marks predictions less confident than this as unsure.
    unsure_below: float = Field(default=0.7, ge=0, le=1)

    log_level: str = "INFO"

    @model_validator(mode="after")
    def _fill_embedded_defaults(self) -> Settings:
        home = self.home.expanduser().resolve()
        defaults = {
            "home": home,
            "registry_url": self.registry_url or f"sqlite:///{home / 'registry.db'}",
            "store_url": self.store_url or (home / "bucket").as_uri(),
            "queue_url": self.queue_url or f"sqlite:///{home / 'queue.db'}",
            "mlflow_tracking_uri": self.mlflow_tracking_uri or f"sqlite:///{home / 'mlflow.db'}",
            "mlflow_artifact_root": self.mlflow_artifact_root or (home / "mlartifacts").as_uri(),
            "torch_home": (self.torch_home or Path.home() / ".cache" / "torch").expanduser(),
        }
        for name, value in defaults.items():
            object.__setattr__(self, name, value)
        if len(set(self.labels)) != len(self.labels) or len(self.labels) < 2:
            raise ValueError(f"labels must be at least two distinct names, got {self.labels}")
        return self

    @property
    def is_embedded(self) -> bool:
        """True when every store is the on-disk default (no server needed)."""
        return self.registry_url.startswith("sqlite") and self.store_url.startswith("file:")


def is_loopback(host: str) -> bool:
    """Whether an interface to bind (setting ``host``) is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def rate_limits(settings: Settings, name: str) -> list[RateLimitItem]:
    """The rate limits of setting ``name`` (e.g. ``rate_limit_predict``); ConfigError if they
    cannot be read, so that a typo stops the start, not the first request."""
    from limits import parse_many  # a rate parser costs an import only where limits apply

    value = getattr(settings, name)
    try:
        return parse_many(value)
    except ValueError:
        raise ConfigError(
            f"Invalid setting {name} = {value!r}: write a rate like '600 per minute', or "
            "several separated by ';'."
        ) from None


def _parse_env_value(name: str, raw: str) -> Any:
    """Environment values are strings; lists may be JSON arrays or comma-separated."""
    annotation = Settings.model_fields[name].annotation
    if "tuple" in str(annotation):
        raw = raw.strip()
        if raw.startswith("["):
            return json.loads(raw)
        return [item.strip() for item in raw.split(",") if item.strip()]
    return raw


def load_settings(
    environ: Mapping[str, str],
    *,
    config_file: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build the settings: defaults, then the TOML file, then the environment, then overrides.

    ``environ`` is passed in by the entry point (usually ``os.environ``). The TOML file is
    ``config_file``, else ``$CLASSIFI_CONFIG``, else ``<home>/config.toml`` when it exists.
    """
    from_env: dict[str, Any] = {}
    for key, raw in environ.items():
        if not key.startswith(ENV_PREFIX) or key == f"{ENV_PREFIX}CONFIG":
            continue
        name = key[len(ENV_PREFIX) :].lower()
        if name not in Settings.model_fields:
            raise ConfigError(f"Unknown setting {key}: remove it or check its spelling.")
        from_env[name] = _parse_env_value(name, raw)

    if environ.get("TORCH_HOME") and "torch_home" not in from_env:
        from_env["torch_home"] = environ["TORCH_HOME"]

    home = Path(
        (overrides or {}).get("home") or from_env.get("home") or default_home()
    ).expanduser()
    path = config_file or (
        Path(environ[f"{ENV_PREFIX}CONFIG"]) if environ.get(f"{ENV_PREFIX}CONFIG") else None
    )
    if path is None and (home / "config.toml").is_file():
        path = home / "config.toml"

    from_file: dict[str, Any] = {}
    if path is not None:
        try:
            from_file = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"Config file {path} does not exist.") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"Config file {path} is not valid TOML: {exc}") from None
        for name in from_file:
            if name not in Settings.model_fields:
                raise ConfigError(
                    f"Unknown setting {name!r} in {path}: remove it or check its spelling."
                )
        from_file["config_file"] = path

    merged = {**from_file, **from_env, **(overrides or {})}
    try:
        return Settings(**merged)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"Invalid settings: {problems}") from None
