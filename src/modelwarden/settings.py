"""One Settings object for a ModelWarden installation; everything else takes explicit arguments.

Each setting is read, first match wins, from: the value given in code (or a command-line flag),
a ``MODELWARDEN_<NAME>`` environment variable (``MODELWARDEN_DATA`` for the data directory), and
a ``modelwarden.toml`` file: the one ``MODELWARDEN_CONFIG`` names, else ``./modelwarden.toml``,
else ``<data_dir>/modelwarden.toml``. For example::

    data_dir = "/srv/warden-data"
    state_url = "postgresql+psycopg://warden:secret@db.internal/warden"
    embedder = "minilm"
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from modelwarden.errors import InputError

DEFAULT_DATA_DIR = "./warden-data"
CONFIG_FILE = "modelwarden.toml"
ENV_PREFIX = "MODELWARDEN_"
ENV_DATA = "MODELWARDEN_DATA"
ENV_CONFIG = "MODELWARDEN_CONFIG"
ENV_EMBEDDER = "MODELWARDEN_EMBEDDER"
ENV_THREADS = "MODELWARDEN_EMBED_THREADS"
# The notification fields a setting (``notify_<name>``) can override.
NOTIFY_FIELDS = (
    "webhook_url",
    "slack_webhook_url",
    "slack_channel",
    "smtp_host",
    "smtp_port",
    "smtp_security",
    "smtp_user",
    "smtp_ca_file",
    "smtp_plain_login",
    "email_from",
    "email_to",
)


def config_file(data_dir: str | Path | None = None) -> Path | None:
    """The ``modelwarden.toml`` that applies, if any: ``$MODELWARDEN_CONFIG``, ``./``, data dir."""
    named = os.environ.get(ENV_CONFIG)
    if named:
        path = Path(named)
        if not path.is_file():
            raise InputError(f"{ENV_CONFIG}={named}: no such file", field=ENV_CONFIG)
        return path
    data = (
        data_dir
        or os.environ.get(ENV_DATA)
        or os.environ.get(f"{ENV_PREFIX}DATA_DIR")
        or DEFAULT_DATA_DIR
    )
    for path in (Path.cwd() / CONFIG_FILE, Path(data) / CONFIG_FILE):
        if path.is_file():
            return path
    return None


class Settings(BaseSettings):
    """Where data lives and how it is processed.

    ``embedder`` names the default embedder: ``minilm`` (all-MiniLM-L6-v2, the real model) or
    ``hashing`` (a fast feature-hashing embedder for tests and smoke runs). ``state_url`` is the
    SQLAlchemy URL of the state store: ``sqlite:///<data_dir>/state.db`` unless set, or
    ``postgresql+psycopg://user:password@host/db`` for a state shared by several instances.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="ignore", populate_by_name=True, validate_default=True
    )

    data_dir: Path = Field(
        default=Path(DEFAULT_DATA_DIR),
        validation_alias=AliasChoices("data_dir", ENV_DATA, f"{ENV_PREFIX}DATA_DIR"),
    )
    state_url: str = Field(
        default="",
        description="SQLAlchemy URL of the state store; empty means sqlite:///<data_dir>/state.db",
    )
    log_root: Path | None = Field(
        default=None,
        description="Root of the request log store; None means <data_dir>/log. Several "
        "instances may share one (each names its part files after MODELWARDEN_INSTANCE)",
    )
    embedder: str = "minilm"
    embed_threads: int = Field(
        default=0, ge=0, description="0 means half the available cores, at least one"
    )
    embed_batch_size: int = Field(default=64, ge=1, le=4096)
    safety_rules: Path | None = Field(
        default=None, description="YAML or text file of safety patterns; None uses the defaults"
    )
    report_schedule: str = Field(
        default="MON 06:00",
        description="When `serve` sends the weekly pack: a weekday and a 24-hour time",
    )
    report_timezone: str = Field(
        default="UTC", description="IANA time zone of report_schedule, e.g. Europe/Berlin"
    )
    report_delivery: list[str] = Field(
        default_factory=list,
        description="Where the weekly pack goes: smtp://host:port/to@x,to2@y?from=me@x "
        "(smtps://user@host/... or smtp://user@host:587/...?starttls=1 for TLS and a login), "
        "https://webhook, slack+https://hooks.slack.com/..., file:///folder; "
        "none means serve sends nothing",
    )
    report_cache_days: int = Field(
        default=14,
        ge=1,
        description="Days an entry of the report cache (DATA/cache/drift) is kept after its last use",
    )
    report_cache_mb: int = Field(
        default=256,
        ge=1,
        description="Megabytes the report cache may hold; beyond, the entries used longest ago go",
    )
    public_url: str = Field(
        default="http://127.0.0.1:8400",
        description="The console's address as readers reach it, for links in messages",
    )
    gateway_auth: Literal["off", "required"] = Field(
        default="off",
        description="off: the chat gateway answers any client (a known key still binds its "
        "plant); required: every chat request needs a key with the ingest, operator or admin role",
    )
    # Notification targets (MODELWARDEN_NOTIFY_WEBHOOK_URL, ...): they override the policy
    # file's ``notify`` field by field (governance.notify.targets).
    notify_webhook_url: str | None = None
    notify_slack_webhook_url: str | None = None
    notify_slack_channel: str | None = None
    notify_smtp_host: str | None = None
    notify_smtp_port: int | None = Field(default=None, ge=1, le=65535)
    notify_smtp_security: Literal["none", "starttls", "ssl"] | None = None
    notify_smtp_user: str | None = Field(
        default=None,
        description="SMTP login; its password is read from MODELWARDEN_NOTIFY_SMTP_PASSWORD "
        "(or the file MODELWARDEN_NOTIFY_SMTP_PASSWORD_FILE names) when sending",
    )
    notify_smtp_ca_file: str | None = None
    notify_smtp_plain_login: bool | None = None
    notify_email_from: str | None = None
    notify_email_to: str | None = Field(default=None, description="Comma-separated addresses.")

    otlp_plant_attribute: str | None = Field(
        default=None,
        description="The span or resource attribute that names the plant of an OTLP span "
        "(e.g. 'deployment.plant'); modelwarden.plant_id and plant.id are read in any case",
    )
    analytics_engine: Literal["duckdb", "spark"] = Field(
        default="duckdb",
        description="Engine of the KPI, drift and report queries over the log: embedded DuckDB "
        "or PySpark (the spark extra)",
    )
    spark_master: str = Field(
        default="local[2]",
        min_length=1,
        description="Spark master URL for analytics_engine = spark: local[N] or a cluster",
    )
    # Why 50,000: the suite's permutation null is already drawn from 20,000 pooled rows
    # (drift.calibration's max_null_n), so more rows only sharpen the observed statistic, whose
    # sampling error falls like 1/sqrt(n); and a window of 50,000 384-d vectors is 73 MiB, so the
    # report's windows stay far inside its memory at any traffic. Measured with
    # bench/drift/window_cap.py (150,000 / 100,000 synthetic rows against their 50,000 / 50,000
    # samples): with no drift the suite's p-value was 0.976 whole and 0.983 capped; with a topic
    # gaining one point of share, 0.004 and 0.001 (the cluster member alerted on both, the
    # suite's effect floor kept both OK). The verdicts agreed.
    drift_window_max: int = Field(
        default=50_000,
        ge=20,
        description="A drift window with more requests than this is tested on a deterministic "
        "uniform sample of this many (chosen by a hash of the request id)",
    )

    @model_validator(mode="after")
    def _default_state_url(self) -> Settings:
        if not self.state_url:
            self.state_url = f"sqlite:///{self.data_dir / 'state.db'}"
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        given: dict[str, Any] = getattr(init_settings, "init_kwargs", {})
        path = config_file(given.get("data_dir"))
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    @classmethod
    def from_env(cls, data_dir: str | Path | None = None, **overrides: object) -> Settings:
        """Settings from explicit values first, then ``MODELWARDEN_*`` variables, the
        ``modelwarden.toml`` file, then defaults. ``None`` values are left to those sources."""
        values: dict[str, object] = {k: v for k, v in overrides.items() if v is not None}
        if data_dir:
            values["data_dir"] = Path(data_dir)
        try:
            return cls(**values)  # type: ignore[arg-type]
        except ValidationError as exc:
            err = exc.errors()[0]
            name = ".".join(str(p) for p in err["loc"]) or "settings"
            raise InputError(f"setting {name}: {err['msg']}", field=name) from exc
        except SettingsError as exc:
            # A list setting from the environment that is not JSON, say.
            m = re.search(r'field "([^"]+)"', str(exc))
            name = m[1] if m else "settings"
            raise InputError(
                f"setting {name}: {exc}; a list is written in JSON, "
                f'e.g. {ENV_PREFIX}{name.upper()}=\'["a", "b"]\'',
                field=name,
            ) from None

    @property
    def log_dir(self) -> Path:
        return self.log_root or self.data_dir / "log"

    @property
    def reports_dir(self) -> Path:
        return self.data_dir / "reports"

    @property
    def state_db(self) -> Path:
        return self.data_dir / "state.db"

    def has_state(self) -> bool:
        """Whether there is a state store to read: a configured database, or the default SQLite
        file once something has created it (readers need not create an empty one)."""
        return self.state_url != f"sqlite:///{self.state_db}" or self.state_db.exists()

    def threads(self) -> int:
        # Half the cores by default: embedding is background work beside the server and the
        # queries, and torch's threads wait by spinning, so on busy cores two threads embed up to
        # ten times slower than one (bench/embed).
        return self.embed_threads or max(1, (os.cpu_count() or 1) // 2)
