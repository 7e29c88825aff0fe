"""One settings model for every process (worker, API, CLI): `PATHWAYS_*` variables, then flags.

Every process started with the same settings shares state: the same Temporal namespace and task
queue, the same event store, the same secret key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SHIPPED_CATALOGUE = Path(__file__).parent / "catalogue"


@dataclass(frozen=True)
class WebhookSecret:
    """One version of a provider's webhook signing secret (the key itself never in a repr)."""

    provider_id: str
    version: int
    key: bytes = field(repr=False)

    @property
    def key_id(self) -> str:
        return f"v{self.version}"

    @property
    def whsec(self) -> str:
        """The Standard Webhooks form a provider configures: `whsec_` + base64 of the key."""
        return "whsec_" + base64.b64encode(self.key).decode()


class Settings(BaseSettings):
    """Configuration shared by the worker, the API and the CLI."""

    model_config = SettingsConfigDict(env_prefix="PATHWAYS_", extra="ignore", hide_input_in_errors=True)

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
    max_cached_workflows: int = Field(
        default=1000, ge=0,
        description="pathways a worker keeps in memory (Temporal's sticky cache; about 0.3 MiB "
        "each, bench.scale): a pathway outside it replays its history on its next event",
    )
    shutdown_grace: timedelta = Field(
        default=timedelta(seconds=30), description="how long running tasks get on SIGTERM"
    )
    secret_key: SecretStr | None = Field(
        default=None, description="signs webhooks and keys patient hashes; default: data_dir file"
    )
    webhook_secret_versions: dict[str, list[int]] = Field(
        default_factory=dict,
        description="active webhook secret versions per provider id ('*': every other provider), "
        "newest first; default [1]. Rotate: [2, 1], then [2] once the provider verifies with v2",
    )
    search_attributes: bool = Field(
        default=True, description="upsert custom search attributes (off on servers without them)"
    )
    update_timeout_seconds: float = Field(default=10.0, description="API deadline on an Update")
    api_max_body_bytes: int = Field(default=1_000_000, ge=1, description="larger bodies: 413")
    api_body_timeout_seconds: float = Field(
        default=30.0, gt=0, description="time a client has to send its request body: else 408"
    )
    webhook_give_up_after: timedelta = Field(
        default=timedelta(hours=24),
        description="retry a webhook this long, then record notification-failed and escalate",
    )
    encryption_keys_file: Path | None = Field(
        default=None,
        description="payload encryption keys, lines id:base64 (32 bytes), newest last; "
        "default: data_dir/encryption.keys, made by `pathways setup`",
    )
    encryption_keys: SecretStr | None = Field(
        default=None, description="the same keys inline (id:base64,id:base64), e.g. from a vault"
    )
    subscription_endpoints: Literal["public", "any"] = Field(
        default="public",
        description="where provider-created FHIR Subscriptions may send: `public` (only hosts "
        "resolving to public internet addresses, checked at creation and at each delivery) or "
        "`any` (https anywhere, http to loopback: on-premises networks, `pathways up`)",
    )
    codec_cors_origin: str | None = Field(
        default=None,
        description="Temporal Web UI origin(s), comma-separated, allowed to call /codec; "
        "default the dev server's UI",
    )

    @property
    def event_store(self) -> str:
        if self.event_store_url:
            return self.event_store_url
        return f"sqlite:///{(self.data_dir / 'pathways.db').resolve()}"

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.api_host}:{self.api_port}").rstrip("/")

    @property
    def encryption_keys_path(self) -> Path:
        return self.encryption_keys_file or self.data_dir / "encryption.keys"

    @property
    def codec_origins(self) -> list[str]:
        """Browser origins allowed to call the codec endpoint: the configured UI, or the embedded
        dev server's UI (frontend port + 1000) under both loopback names."""
        if self.codec_cors_origin:
            return [origin.strip().rstrip("/") for origin in self.codec_cors_origin.split(",")]
        host, _, port = self.temporal_address.rpartition(":")
        ui = f"{int(port) + 1000}" if port.isdigit() else "8233"
        hosts = {"localhost", "127.0.0.1"} if host in ("", "localhost", "127.0.0.1") else {host}
        return sorted(f"http://{name}:{ui}" for name in hosts)

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

    @field_validator("webhook_secret_versions")
    @classmethod
    def _versions_are_usable(cls, value: dict[str, list[int]]) -> dict[str, list[int]]:
        for provider_id, versions in value.items():
            if not versions or len(set(versions)) != len(versions) or min(versions) < 1:
                raise ValueError(
                    f"webhook secret versions of {provider_id!r} must be distinct positive numbers"
                )
        return value

    def webhook_secrets(self, provider_id: str) -> tuple[WebhookSecret, ...]:
        """The provider's active webhook secrets, newest (the current one) first.

        Each is derived from the installation key, so nothing per provider is stored: version 1 is
        HMAC-SHA256(key, "webhook:<provider id>"), version n > 1 is
        HMAC-SHA256(key, "webhook:<provider id>:v<n>"). Every active version signs each delivery.
        """
        versions = self.webhook_secret_versions
        active = versions.get(provider_id) or versions.get("*") or [1]
        return tuple(WebhookSecret(provider_id, v, self._webhook_key(provider_id, v)) for v in active)

    def webhook_secret(self, provider_id: str) -> bytes:
        """The provider's current (newest active) webhook secret."""
        return self.webhook_secrets(provider_id)[0].key

    def _webhook_key(self, provider_id: str, version: int) -> bytes:
        label = f"webhook:{provider_id}" if version == 1 else f"webhook:{provider_id}:v{version}"
        return hmac.new(self.key, label.encode(), hashlib.sha256).digest()

    def patient_key(self, nhs_number: str) -> str:
        """Keyed hash of an NHS number: lets coordinators find a patient without storing it."""
        return hmac.new(self.key, f"patient:{nhs_number}".encode(), hashlib.sha256).hexdigest()[:32]
