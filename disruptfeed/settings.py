"""The one settings object, and the only place the environment is read.

Every value comes from a ``DISRUPTFEED_*`` environment variable (or a ``.env`` file in the working
directory), falling back to defaults that run the whole product on one machine: an embedded broker
on 127.0.0.1, state under the user's data directory, and jars cached outside the repository.
``DISRUPTFEED_NO_ENV_FILE=1`` skips the ``.env`` file (the test suite sets it, so a developer's
``.env`` never leaks into a test).
"""

from __future__ import annotations

__all__ = ["Settings", "get_settings"]

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict


def _xdg(var: str, fallback: str) -> Path:
    base = os.environ.get(var)
    return Path(base) if base else Path.home() / fallback


class Settings(BaseSettings):
    """Kafka connection, topic layout and local-broker options.

    Leave ``bootstrap_servers`` unset to use the embedded broker that ``disruptfeed broker start``
    runs; set ``DISRUPTFEED_BOOTSTRAP_SERVERS`` to point everything at an existing cluster.
    """

    model_config = SettingsConfigDict(
        env_prefix="DISRUPTFEED_", env_file=".env", extra="ignore", frozen=True
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
        """The usual sources, without the ``.env`` file when DISRUPTFEED_NO_ENV_FILE is set."""
        if os.environ.get("DISRUPTFEED_NO_ENV_FILE", "").strip() not in ("", "0", "false"):
            return init_settings, env_settings, file_secret_settings
        return init_settings, env_settings, dotenv_settings, file_secret_settings

    # --- Kafka connection ----------------------------------------------------------------------
    bootstrap_servers: str | None = Field(
        default=None,
        description="Comma-separated host:port list. Unset: the embedded local broker.",
    )
    client_id: str = "disruptfeed"
    # Security: every client (aiokafka, Faust, librdkafka, Java tools) is configured from these
    # fields alone, by disruptfeed._security; secrets stay SecretStr until a client takes them.
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        default=None, description="Needed with SASL_SSL and SASL_PLAINTEXT."
    )
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_ca_file: Path | None = Field(
        default=None,
        description="PEM file of the CA(s) that signed the brokers' certificates (SSL, "
        "SASL_SSL). Unset: the system's trusted CAs.",
    )
    ssl_cert_file: Path | None = Field(
        default=None, description="PEM client certificate (chain) for mutual TLS; with the key."
    )
    ssl_key_file: Path | None = Field(
        default=None, description="PEM private key of the client certificate."
    )
    ssl_key_password: SecretStr | None = Field(
        default=None, description="Password of an encrypted client key."
    )
    request_timeout_ms: int = Field(default=30_000, ge=1_000)
    delivery_timeout_seconds: float = Field(
        default=120.0,
        gt=0,
        le=86_400,
        description="How long a publish waits for the broker to acknowledge a chunk of events "
        "before it reports them as not acknowledged (exit 3); the Kafka client alone retries "
        "for as long as the broker is away.",
    )

    # --- Topics --------------------------------------------------------------------------------
    topic_prefix: str = Field(default="disruptfeed", pattern=r"^[A-Za-z0-9._-]+$")
    partitions: int = Field(default=3, ge=1, le=1_000)
    replication_factor: int = Field(default=1, ge=1, le=32)

    # --- Producer tuning -----------------------------------------------------------------------
    # lz4 compresses JSON about 3x at a fraction of gzip's CPU; 20 ms of linger fills batches
    # under load while keeping publish-to-alert latency far below our 100 ms budget.
    compression_type: Literal["gzip", "snappy", "lz4", "zstd"] | None = "lz4"
    linger_ms: int = Field(
        default=20,
        ge=0,
        le=10_000,
        description="How long a publisher's producer waits to fill a batch. 0 is the "
        "low-latency profile (docs/publishers.md): alerts about 15 ms sooner, more requests.",
    )
    max_batch_size: int = Field(default=256 * 1024, ge=16 * 1024)

    # --- Stream worker (Faust) ---------------------------------------------------------------
    worker_linger_ms: int = Field(
        default=1,
        ge=0,
        le=10_000,
        description="The worker's producer linger. A batch's alerts and dead letters are sent "
        "together and acknowledged before the table rows that record them, so the batch waits "
        "this long once; its other sends are one table row per partition per batch.",
    )
    worker_host: str = Field(default="127.0.0.1", description="Address the query API binds to.")
    worker_port: int = Field(default=6066, ge=1, le=65_535)
    worker_url: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s/]+(/\S*)?$",
        description="The URL other workers and the clients ('counts', 'alerts', 'status') "
        "reach this one's query API at (workers gather their answers from each other); "
        "default http://<worker host>:<worker port>.",
    )
    worker_store: str = Field(
        default="rocksdb://",
        pattern=r"^(rocksdb|memory)://$",
        description="Table store: rocksdb:// keeps state on disk; memory:// rebuilds on start "
        "and is for a single worker (its recovery is not reliable when partitions move "
        "between workers).",
    )
    grace_seconds: int = Field(
        default=3_600,
        ge=0,
        description="How far behind its partition's stream time an event may arrive and still "
        "land in rolling windows; later events count in totals and as late.",
    )
    rules_file: Path | None = Field(
        default=None, description="Alert rules (TOML). Unset: the rules shipped with the project."
    )
    commit_interval: float = Field(default=1.0, gt=0, le=60)
    batch_size: int = Field(
        default=500,
        ge=1,
        le=10_000,
        description="Most records the worker takes from its stream at once: one table write "
        "per source partition per batch instead of one per event.",
    )
    batch_wait_ms: int = Field(
        default=10,
        ge=1,
        le=1_000,
        description="Longest a record waits for its batch to fill; added to alert latency "
        "when the stream is quiet.",
    )
    session_timeout: float = Field(
        default=10.0,
        ge=6,
        le=300,
        description="Seconds before the group gives a silent worker's partitions to another; "
        "a crashed worker's replacement waits this long.",
    )

    # --- Event time --------------------------------------------------------------------------
    max_future_skew_seconds: int = Field(
        default=300,
        ge=0,
        le=86_400,
        description="How far ahead of the publish time an event's occurred_at may be; replays "
        "start this much before their range, since a record is published after its event.",
    )

    dedupe_horizon_days: int = Field(
        default=30,
        ge=15,
        le=3_650,
        description="How far behind its partition's stream time an event may be and still be "
        "told apart from a duplicate; older events are dead-lettered (beyond-dedupe-horizon), and "
        "the worker forgets ids and table rows that old. Memory and start-up time grow with it.",
    )

    changelog_segment_seconds: int = Field(
        default=21_600,
        ge=10,
        description="Segment time of the worker's events changelog (set when the worker first "
        "creates it): rows older than the dedupe horizon leave it once their segment is cleaned.",
    )

    # --- Audit: signed checkpoints -------------------------------------------------------------
    audit_key_file: Path | None = Field(
        default=None,
        description="Ed25519 PEM private key that signs checkpoints; unset: "
        "<data_dir>/audit-key.pem, generated on first checkpoint.",
    )
    audit_trusted_keys: str = Field(
        default="",
        description="Comma-separated PEM public key files whose checkpoints and events a "
        "verifier accepts (besides the local keys); keep rotated-out keys here. 'FILE@TIME' "
        "retires a key: what it signed after TIME (RFC 3339) is reported.",
    )
    publisher_key_file: Path | None = Field(
        default=None,
        description="Ed25519 PEM private key this publisher signs its events with; unset: "
        "<data_dir>/publisher-key.pem, generated on first publish.",
    )
    sign_events: bool = Field(
        default=True,
        description="Sign every published event (ce_keyid and ce_signature headers).",
    )
    checkpoint_dir: Path | None = Field(
        default=None,
        description="Where checkpoints are also written; unset: <data_dir>/checkpoints.",
    )
    checkpoint_interval_seconds: float = Field(
        default=60.0,
        gt=0,
        le=86_400,
        description="Seconds between checkpoints of 'audit checkpoint --follow'.",
    )

    # --- HTTP API (worker query API, dispatcher) -----------------------------------------------
    api_token: SecretStr | None = Field(
        default=None,
        description="Bearer token(s) every HTTP endpoint but /health requires; comma-separate "
        "several to rotate. Unset: one is generated into <data_dir>/api-token on first use, and "
        "the servers refuse to bind anything but a loopback address.",
    )
    http_max_body_bytes: int = Field(
        default=64 * 1024,
        ge=1_024,
        le=16 * 1024 * 1024,
        description="Largest request body the HTTP servers read; a larger one gets 413.",
    )
    http_max_query_bytes: int = Field(
        default=2_048,
        ge=64,
        le=8_000,
        description="Longest query string (raw, as sent); a longer one gets 414. aiohttp itself "
        "refuses a request line over 8,190 bytes with a plain-text 400.",
    )
    http_max_filter_values: int = Field(
        default=300,
        ge=1,
        le=300,
        description="Most values one filter may list per field (regions, rules, states, types) "
        "in a subscription or a live stream's query; more gets 400.",
    )
    http_max_streams_per_token: int = Field(
        default=10,
        ge=1,
        le=10_000,
        description="Live streams (SSE) open at once per API token; one more gets 429.",
    )

    # --- Metrics and readiness (worker, dispatcher) ----------------------------------------------
    lag_interval_seconds: float = Field(
        default=5.0,
        gt=0,
        le=300,
        description="Seconds between consumer lag measurements (read from the cluster in the "
        "background; /metrics and /ready show the last one).",
    )
    lag_timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        le=60,
        description="Longest one lag measurement may take; a failed one makes /ready 503.",
    )
    ready_max_lag: int = Field(
        default=10_000,
        ge=0,
        description="Most records a server may be behind (summed over its partitions) and "
        "still be ready: /ready answers 503 above it.",
    )

    # --- Dispatcher: subscriptions, webhooks, live streams ---------------------------------------
    dispatcher_host: str = Field(default="127.0.0.1", description="Address the dispatcher binds.")
    dispatcher_port: int = Field(default=6067, ge=1, le=65_535)
    dispatcher_url: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s/]+(/\S*)?$",
        description="Where clients ('alerts tail', 'status') reach the dispatcher; default "
        "http://<dispatcher host>:<dispatcher port>.",
    )
    webhook_timeout: float = Field(
        default=10.0, gt=0, le=300, description="Seconds one delivery attempt may take."
    )
    webhook_retry_schedule: str = Field(
        default="0,5,300,1800,7200,18000,36000",
        pattern=r"^\s*\d+(\.\d+)?(\s*,\s*\d+(\.\d+)?)*\s*$",
        description="Seconds before each attempt, the first included (Standard Webhooks' "
        "schedule: immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h); then dead-lettered.",
    )
    webhook_retry_jitter: float = Field(
        default=0.2, ge=0, le=1, description="Each retry delay is stretched by up to this share."
    )
    webhook_allow_private: bool = Field(
        default=False,
        description="Allow endpoints on private, loopback, link-local or metadata addresses.",
    )
    webhook_queue_size: int = Field(
        default=100,
        ge=1,
        le=100_000,
        description="Deliveries waiting per subscription; more go to the retry schedule.",
    )
    alertmanager_resend_seconds: float = Field(
        default=60.0,
        gt=0,
        le=3_600,
        description="How often firing alerts are re-posted to Alertmanager subscriptions; each "
        "post's endsAt is four times this ahead, so Alertmanager never times one out.",
    )
    sse_heartbeat_seconds: float = Field(default=15.0, gt=0, le=300)
    sse_buffer: int = Field(
        default=1_000,
        ge=1,
        le=100_000,
        description="Messages a live-stream client may fall behind before it is dropped.",
    )

    # --- Embedded broker -----------------------------------------------------------------------
    kafka_version: str = Field(default="4.1.1", pattern=r"^4\.\d+\.\d+$")
    broker_port: int = Field(default=19092, ge=1, le=65_535)
    controller_port: int = Field(default=19093, ge=1, le=65_535)
    broker_heap: str = Field(default="512m", pattern=r"^\d+[mMgG]$")
    data_dir: Path = Field(
        default_factory=lambda: _xdg("XDG_DATA_HOME", ".local/share") / "disruptfeed"
    )
    cache_dir: Path = Field(
        default_factory=lambda: _xdg("XDG_CACHE_HOME", ".cache") / "disruptfeed"
    )

    @property
    def embedded(self) -> bool:
        """True when no external cluster is configured."""
        return self.bootstrap_servers is None

    @property
    def bootstrap(self) -> str:
        """The address every client connects to."""
        return self.bootstrap_servers or f"127.0.0.1:{self.broker_port}"

    @property
    def worker_api_url(self) -> str:
        """Where the worker's query API is reached (``worker_url``, else host and port)."""
        return (self.worker_url or f"http://{self.worker_host}:{self.worker_port}").rstrip("/")

    @property
    def dispatcher_api_url(self) -> str:
        """Where the dispatcher's API is reached (``dispatcher_url``, else host and port)."""
        url = self.dispatcher_url or f"http://{self.dispatcher_host}:{self.dispatcher_port}"
        return url.rstrip("/")

    @property
    def retry_delays(self) -> tuple[float, ...]:
        """The webhook retry schedule in seconds: one delay per attempt."""
        return tuple(float(part) for part in self.webhook_retry_schedule.split(","))

    @property
    def audit_key_path(self) -> Path:
        """The checkpoint signing key's file."""
        return self.audit_key_file or self.data_dir / "audit-key.pem"

    @property
    def publisher_key_path(self) -> Path:
        """The event signing key's file."""
        return self.publisher_key_file or self.data_dir / "publisher-key.pem"

    @property
    def audit_trusted_key_files(self) -> tuple[str, ...]:
        """The trusted public key entries, as listed (``FILE`` or ``FILE@RETIRED_AT``)."""
        return tuple(p.strip() for p in self.audit_trusted_keys.split(",") if p.strip())

    @property
    def checkpoint_path(self) -> Path:
        """The directory checkpoint files go to."""
        return self.checkpoint_dir or self.data_dir / "checkpoints"

    @property
    def api_token_file(self) -> Path:
        """Where the generated API token is kept when ``api_token`` is unset."""
        return self.data_dir / "api-token"

    def bearer_tokens(self, *, create: bool = True) -> tuple[str, ...]:
        """Every accepted API token: the configured ones, or the generated one.

        Args:
            create: generate the token file when it is missing (servers do; clients only read).
        """
        if self.api_token is not None:
            parts = self.api_token.get_secret_value().split(",")
            return tuple(p.strip() for p in parts if p.strip())
        path = self.api_token_file
        if not path.exists():
            if not create:
                return ()
            import secrets

            path.parent.mkdir(parents=True, exist_ok=True)
            # O_EXCL: two processes starting together keep the first token, not a mix.
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass
            else:
                with os.fdopen(fd, "w") as out:
                    out.write(secrets.token_urlsafe(32) + "\n")
        token = path.read_text().strip()
        return (token,) if token else ()

    def topic(self, name: str) -> str:
        """Full topic name for one of the project's logical topics."""
        return f"{self.topic_prefix}.{name}"

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments shared by every aiokafka client (producer, consumer, admin).

        Raises:
            ConfigurationError: the security settings are incomplete or contradictory, or a
                CA, certificate or key file cannot be read; the message names the setting.
        """
        from disruptfeed._security import aiokafka_security

        return {
            "bootstrap_servers": self.bootstrap,
            "client_id": self.client_id,
            "request_timeout_ms": self.request_timeout_ms,
            **aiokafka_security(self),
        }

    def rdkafka_config(self) -> dict[str, Any]:
        """The same connection for librdkafka (confluent-kafka, Quix Streams): dotted keys."""
        from disruptfeed._security import rdkafka_security

        return {
            "bootstrap.servers": self.bootstrap,
            "client.id": self.client_id,
            **rdkafka_security(self),
        }


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment once."""
    return Settings()
