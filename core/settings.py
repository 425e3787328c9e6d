"""Typed settings read from the environment (and an optional ``.env``), never at import time.

Every service reads its configuration through :func:`get_settings`, which is cached; tests call
``get_settings.cache_clear()`` after changing the environment.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

#: The admin key in dev/test mode when API_KEY is unset (refused in prod mode).
#: The metrics the promotion gate can compare (``GATE_METRIC``; core.registry.gate decides on it).
GateMetric = Literal["f1", "roc_auc", "pr_auc"]
DEV_API_KEY = "dev-api-key"
PLACEHOLDER_SECRETS = frozenset({"", "changeme", "change-me", "dev", "secret", DEV_API_KEY})
#: Names the optional dotenv file (default ``.env`` in the working directory); empty: none. The
#: test suite empties it so a developer's ``.env`` never points a test at their own stores.
DOTENV_VARIABLE = "CHURNOPS_DOTENV"


def read_secret_file(path: Path | None) -> str | None:
    """Return the stripped content of a Docker secret file, if one is configured and exists."""
    if path is None or not path.is_file():
        return None
    return path.read_text(encoding="utf-8").strip()


class Settings(BaseSettings):
    """All configuration of churnops; names match the environment variables (case-insensitive)."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    env: Literal["dev", "test", "prod"] = Field("dev", description="Deployment mode.")
    var_dir: Path = Field(Path("var"), description="Root of all generated state.")
    data_path: Path = Field(Path("data/raw/churn.csv"), description="Training data CSV.")

    mlflow_tracking_uri: str | None = Field(
        None, description="MLflow tracking URI; default: SQLite store under var/."
    )
    mlflow_experiment: str = Field("churnops", description="MLflow experiment name.")
    model_name: str = Field("churn-model", description="Registered model name.")

    database_url: str | None = Field(
        None, description="SQLAlchemy URL of the predictions DB; default: SQLite under var/."
    )
    database_password: SecretStr | None = Field(
        None, description="Password of DATABASE_URL's user, when the URL does not carry it."
    )
    database_password_file: Path | None = Field(
        None, description="Docker secret file holding DATABASE_PASSWORD."
    )

    es_url: str | None = Field(None, description="Elasticsearch URL; unset = monitoring to SQLite.")
    es_username: str | None = None
    es_password: SecretStr | None = None
    es_password_file: Path | None = None
    kibana_url: str | None = Field(
        None, description="Kibana as users reach it; unset: the UI shows no Kibana link."
    )
    mlflow_public_url: str | None = Field(
        None,
        description="The MLflow UI as users reach it (e.g. http://mlflow.example:5000); unset: "
        "the UI shows no MLflow link (the tracking URI may be internal to the stack).",
    )
    logstash_host: str | None = Field(
        None, description="host:port of Logstash's tcp json_lines input (port 50000 if omitted)."
    )

    api_url: str = Field("http://127.0.0.1:8000", description="Where the UI finds the API.")
    api_public_url: str | None = Field(
        None,
        description="The API as users' browsers reach it (the UI's link to the API docs); "
        "unset: API_URL.",
    )
    api_host: str = Field("127.0.0.1", description="Interface the API listens on.")
    api_port: int = Field(8000, ge=0, le=65535, description="Port the API listens on.")
    api_workers: int = Field(2, ge=1, le=64, description="API worker processes.")
    api_threads: int = Field(
        2, ge=1, le=64, description="OpenMP threads per API worker (batch scoring)."
    )
    ui_host: str = Field("127.0.0.1", description="Interface the UI listens on.")
    ui_port: int = Field(8501, ge=0, le=65535, description="Port the UI listens on.")
    startup_timeout: float = Field(
        0.0,
        ge=0.0,
        description="Seconds `make run` waits for a server to come up; 0 = as long as it runs.",
    )
    api_key: SecretStr | None = Field(None, description="Key of the admin role (X-API-Key).")
    api_key_file: Path | None = Field(None, description="Docker secret file holding the API key.")
    writer_key: SecretStr | None = Field(None, description="Key of the writer role (feedback).")
    writer_key_file: Path | None = Field(None, description="Docker secret file of WRITER_KEY.")
    reader_key: SecretStr | None = Field(
        None, description="Key of the reader role (stored predictions, monitoring)."
    )
    reader_key_file: Path | None = Field(None, description="Docker secret file of READER_KEY.")
    predict_key: SecretStr | None = Field(
        None, description="Key of the predict role; unset: scoring is open to anyone."
    )
    predict_key_file: Path | None = Field(None, description="Docker secret file of PREDICT_KEY.")

    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_password_file: Path | None = None
    smtp_sender: str = "churnops@localhost"
    smtp_to: str | None = None
    smtp_starttls: bool = False

    log_json: bool = Field(False, description="Log JSON lines with ECS field names.")
    log_level: str = Field("INFO", description="Log level of every churnops process.")
    retrain_config: dict[str, Any] = Field(
        default_factory=dict,
        description="JSON of the TrainConfig that POST /retrain uses (default: TrainConfig()).",
    )

    gate_metric: GateMetric = Field(
        "f1", description="Metric the promotion gate compares between challenger and champion."
    )
    gate_margin: float = Field(
        0.002, ge=0.0, le=0.2, description="Lead over the champion a challenger needs."
    )
    gate_min_class_rows: int = Field(
        30,
        ge=1,
        description="Fewest churners, and non-churners, neither model was trained on for the gate "
        "(or a labelled file's report) to judge; below it the gate says not_enough_rows.",
    )
    gate_max_interval_width: float = Field(
        0.10,
        gt=0.0,
        le=1.0,
        description="Widest 95 % interval of ROC-AUC on those rows for the gate to judge "
        "(Riley et al., Stat Med 2021); wider: not_enough_rows.",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments, then the environment, then the dotenv file named by ``CHURNOPS_DOTENV``."""
        del dotenv_settings
        dotenv = os.environ.get(DOTENV_VARIABLE, ".env") or None
        return (
            init_settings,
            env_settings,
            DotEnvSettingsSource(settings_cls, env_file=dotenv, env_file_encoding="utf-8"),
            file_secret_settings,
        )

    @model_validator(mode="after")
    def _secrets_from_files(self) -> "Settings":
        for attr, file_attr in (
            ("api_key", "api_key_file"),
            ("writer_key", "writer_key_file"),
            ("reader_key", "reader_key_file"),
            ("predict_key", "predict_key_file"),
            ("es_password", "es_password_file"),
            ("smtp_password", "smtp_password_file"),
            ("database_password", "database_password_file"),
        ):
            value = read_secret_file(getattr(self, file_attr))
            if value is not None:
                setattr(self, attr, SecretStr(value))
        return self

    @property
    def tracking_uri(self) -> str:
        """The MLflow tracking URI, defaulting to a SQLite store under ``var/``."""
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        return f"sqlite:///{(self.var_dir / 'mlflow.db').resolve()}"

    @property
    def artifact_root(self) -> Path:
        """Local artifact root used with the embedded SQLite store."""
        return (self.var_dir / "mlartifacts").resolve()

    @property
    def db_url(self) -> str:
        """The predictions database URL, defaulting to SQLite under ``var/``.

        ``DATABASE_PASSWORD`` (or the secret file ``DATABASE_PASSWORD_FILE``) is put into
        ``DATABASE_URL`` when set, so the URL itself (e.g. in a stack file) holds no secret.
        """
        if not self.database_url:
            return f"sqlite:///{(self.var_dir / 'churnops.db').resolve()}"
        if self.database_password is None:
            return self.database_url
        from sqlalchemy.engine import make_url  # pylint: disable=import-outside-toplevel

        with_password = make_url(self.database_url).set(
            password=self.database_password.get_secret_value()
        )
        return with_password.render_as_string(hide_password=False)

    @property
    def model_cache_dir(self) -> Path:
        """Where the last champion is copied so serving can start with MLflow down."""
        return (self.var_dir / "champion").resolve()

    def require_api_key(self) -> str:
        """Return the admin API key, refusing placeholders outside dev/test mode.

        Raises:
            ValueError: when no usable key is configured in prod mode.
        """
        key = self.api_key.get_secret_value() if self.api_key else ""
        if self.env == "prod" and key.lower() in PLACEHOLDER_SECRETS:
            raise ValueError("API_KEY is unset or a placeholder; set a real key in prod mode")
        return key or DEV_API_KEY


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Return the process-wide settings (cached; call ``cache_clear()`` after env changes)."""
    return Settings()
