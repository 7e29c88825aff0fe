"""One settings model for every process (worker, API, CLI): `PATHWAYS_*` variables, then flags.

Every process started with the same settings shares state: the same Temporal namespace and task
queue, the same event store, the same secret key.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

SHIPPED_CATALOGUE = Path(__file__).parent / "catalogue"


class Settings(BaseSettings):
    """Configuration shared by the worker, the API and the CLI."""

    model_config = SettingsConfigDict(env_prefix="PATHWAYS_", extra="ignore")

    temporal_address: str = Field(default="localhost:7233", description="Temporal frontend host:port")
    namespace: str = "default"
    task_queue: str = "pathways"
    temporal_tls: bool = False
    temporal_tls_cert: Path | None = Field(default=None, description="client certificate (mTLS)")
    temporal_tls_key: Path | None = None
    temporal_api_key: SecretStr | None = None
    data_dir: Path = Field(default=Path(".data"), description="local state: dev server DB, secret")
    event_store_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default sqlite file in data_dir"
    )
    catalogue_dir: Path = Field(default=SHIPPED_CATALOGUE, description="pathway definitions")
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    public_url: str | None = Field(
        default=None, description="base URL providers reach the API at; default from host and port"
    )
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: str = "INFO"
    metrics_host: str = Field(default="127.0.0.1", description="bind address of metrics and health")
    metrics_port: int = Field(default=9464, description="Prometheus endpoint of the worker; 0: off")
    health_port: int = Field(default=8081, description="worker health endpoint /healthz; 0: off")
    activity_threads: int = Field(default=16, description="threads for synchronous activities")
    shutdown_grace: timedelta = Field(
        default=timedelta(seconds=30), description="how long running tasks get on SIGTERM"
    )
    secret_key: SecretStr | None = Field(
        default=None, description="signs webhooks and keys patient hashes; default: data_dir file"
    )
    search_attributes: bool = Field(
        default=True, description="upsert custom search attributes (off on servers without them)"
    )
    update_timeout_seconds: float = Field(default=10.0, description="API deadline on an Update")
    api_max_body_bytes: int = Field(default=1_000_000, ge=1, description="larger bodies: 413")
    api_body_timeout_seconds: float = Field(
        default=30.0, gt=0, description="time a client has to send its request body: else 408"
    )

    @property
    def event_store(self) -> str:
        if self.event_store_url:
            return self.event_store_url
        return f"sqlite:///{(self.data_dir / 'pathways.db').resolve()}"

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.api_host}:{self.api_port}").rstrip("/")

    @cached_property
    def key(self) -> bytes:
        """The installation's secret key, created once in data_dir when not configured."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value().encode()
        path = self.data_dir / "secret.key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(32))
            path.chmod(0o600)
        return path.read_text().strip().encode()

    def webhook_secret(self, provider_id: str) -> bytes:
        """Per-provider HMAC secret for signing webhook bodies, derived from the key."""
        return hmac.new(self.key, f"webhook:{provider_id}".encode(), hashlib.sha256).digest()

    def patient_key(self, nhs_number: str) -> str:
        """Keyed hash of an NHS number: lets coordinators find a patient without storing it."""
        return hmac.new(self.key, f"patient:{nhs_number}".encode(), hashlib.sha256).hexdigest()[:32]
