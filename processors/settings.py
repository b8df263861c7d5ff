"""The one frozen settings object, read from `BOXSYNC_*` environment variables (contract §8).

It is built once at the entry point (`boxsync ...`) and passed down; nothing else reads
`os.environ`. Secrets are `SecretStr`, so they print as `**********` in logs and reprs.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from processors.sources.limits import Limit, parse_limits
from processors.stages import STAGE_NAMES

ENV_PREFIX = "BOXSYNC_"
# The registry (processors.stages) imports no settings: no circle.
STAGES = STAGE_NAMES


class SettingsError(ValueError):
    """A setting has a bad value; the message names the variable and what is wrong."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="ignore")

    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_controller_port: int = Field(9093, ge=1, le=65535)
    # How every Kafka client of boxsync talks to the brokers (applied in one place,
    # processors.runtime.kafka.client_config): TLS, SASL, or both.
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = \
        "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    # The CA bundle (PEM) that signed the brokers' certificates; default: the system's.
    kafka_ssl_ca_file: Path | None = None
    # The local stack's SASL_PLAINTEXT listener (SCRAM-SHA-256/512) beside its PLAINTEXT one;
    # default: the controller port + 1; 0: none.
    kafka_local_sasl_port: int | None = Field(None, ge=0, le=65535)
    # How the stage loops' consumer groups share partitions: cooperative-sticky moves only
    # the partitions that change owner, range (eager) stops every member for each rebalance.
    kafka_assignment_strategy: Literal["cooperative-sticky", "range"] = "cooperative-sticky"
    # How many KRaft nodes `boxsync stack up` runs (`--brokers`); node n listens on the
    # bootstrap and controller ports + 100 * (n - 1).
    kafka_brokers: int = Field(1, ge=1, le=5)
    database_url: SecretStr | None = None
    # libpq's sslmode for every PostgreSQL connection (overrides one the URL names).
    database_sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca",
                              "verify-full"] | None = None
    # The tenant's PostgreSQL schema; default: derived from the topic prefix (`public` for
    # none; processors.store.tenancy says how and why).
    database_schema: str | None = None
    jira_site: str | None = None
    topic_prefix: str = ""
    partitions: int = Field(4, ge=1, le=256)
    # Ingest is the CPU-heaviest stage; more processes share the raw topics' partitions.
    ingest_processes: int = Field(2, ge=1, le=16)
    # Collapse processes share sync.changes' partitions (a task stays on one of them).
    collapse_processes: int = Field(2, ge=1, le=16)
    # Which stages this worker runs (comma-separated): all by default; a subset scales a stage
    # out on other hosts (say, `ingest` on two machines and the rest on a third).
    worker_stages: Annotated[tuple[str, ...], NoDecode] = STAGES
    collapse_interval_seconds: int = Field(5, ge=1, le=10)
    grace_seconds: float = Field(1.0, ge=0, le=60)
    # How long a task remembers the event ids it applied (Jira retries for up to 30 min).
    dedupe_retention_seconds: int = Field(3600, ge=3600)
    # The permission and box-state filters (issue 4). Off: every change passes and updates
    # carry no boxes (for bring-up without reference data, and to benchmark their cost).
    filters_enabled: bool = True
    tenant_timezone: str = "UTC"
    cache_ttl_hours: int = Field(24, ge=1)
    jira_field_map: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    jira_webhook_secret: SecretStr | None = None
    trello_app_secret: SecretStr | None = None
    trello_callback_url: str | None = None
    max_event_bytes: int = Field(1024 * 1024, ge=1024)
    web_port: int = Field(6066, ge=1, le=65535)
    web_bind: str = "127.0.0.1"
    jira_base_url: str | None = None
    jira_email: str | None = None
    jira_api_token: SecretStr | None = None
    jira_pat: SecretStr | None = None
    trello_key: str | None = None
    trello_token: SecretStr | None = None
    # Additive: where the Trello REST API answers (tests point it at a local server).
    trello_base_url: str = "https://api.trello.com"
    # Issue 18. The sources' limits as NAME=COUNT/SECONDS overrides of Atlassian's and
    # Trello's numbers (processors.sources.limits.DEFAULT_LIMITS), e.g.
    # `jira.quota=100000/3600,jira.burst=20/1`; boxsync keeps under each in any window.
    source_limits: str = ""
    # The part of each limit that may go at once; the rest is paced evenly over the window.
    source_burst_fraction: float = Field(0.1, gt=0, lt=1)
    # A run that would wait longer for a limit (a blocked quota) fails source_unavailable
    # instead of holding the sync process; the block stays recorded for everyone.
    source_max_wait_seconds: float = Field(120.0, ge=1)
    # The Jira account boxsync writes back as (its integration user): a change it authored
    # with accountType `app` is marked `likely_echo` (a write-back coming back as a webhook).
    jira_integration_account_id: str | None = None
    # Register, refresh and remove the sources' webhooks from the worker too (hourly; else
    # only `boxsync webhooks sync` does), and where Jira is to deliver them (the gateway's
    # POST /webhooks/jira as Jira reaches it).
    manage_webhooks: bool = False
    jira_callback_url: str | None = None
    # Queue an incremental sync of a box whose tasks have not been written for this long
    # while Jira reports a newer change in its projects (0: never): a Data Center site's
    # webhook queue can overflow without telling anyone.
    silence_resync_minutes: int = Field(0, ge=0)
    # Additive: names the tenant in the nightly incremental-sync schedule (the hour is derived
    # from it and the date); default: BOXSYNC_JIRA_SITE, else the topic prefix.
    tenant_id: str = ""
    # Where `boxsync stack` keeps the broker, the embedded database and their logs.
    local_dir: Path = Path(".local")
    # Names this worker's transactional producers; stable across restarts so that a restarted
    # worker fences and aborts the transaction its killed predecessor left open.
    instance_id: str = ""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "json"

    @field_validator("tenant_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r} (use an IANA name such as UTC)") from exc
        return value

    @field_validator("database_schema")
    @classmethod
    def _schema_name(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^[a-z_][a-z0-9_]{0,62}$", value):
            raise ValueError(f"expected a lower-case SQL identifier (a-z, 0-9, _), got {value!r}")
        return value

    @field_validator("source_limits")
    @classmethod
    def _limits(cls, value: str) -> str:
        parse_limits(value)  # a ValueError names the bad entry
        return value

    @field_validator("jira_field_map", mode="before")
    @classmethod
    def _parse_field_map(cls, value: object) -> object:
        """`customfield_10015=start_date,customfield_10016=story_points` → a dict."""
        if not isinstance(value, str):
            return value
        mapping: dict[str, str] = {}
        for pair in filter(None, (part.strip() for part in value.split(","))):
            source, sep, target = pair.partition("=")
            if not sep or not source.strip() or not target.strip():
                raise ValueError(f"expected id=field pairs separated by commas, got {pair!r}")
            mapping[source.strip()] = target.strip()
        return mapping

    @field_validator("worker_stages", mode="before")
    @classmethod
    def _parse_stages(cls, value: object) -> object:
        """`ingest,collapse` → ("ingest", "collapse"), in the order of STAGES."""
        names = value.split(",") if isinstance(value, str) else value
        if not isinstance(names, list | tuple):
            return value
        chosen = {str(name).strip().lower() for name in names} - {""}
        unknown = sorted(chosen - set(STAGES))
        if unknown:
            raise ValueError(f"unknown stage {', '.join(unknown)} (choose from "
                             f"{','.join(STAGES)})")
        if not chosen:
            raise ValueError(f"name at least one stage of {','.join(STAGES)}")
        return tuple(stage for stage in STAGES if stage in chosen)

    @field_validator("kafka_bootstrap")
    @classmethod
    def _host_port(cls, value: str) -> str:
        for address in value.split(","):
            host, sep, port = address.strip().rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError(f"expected host:port[,host:port...], got {value!r}")
        return value

    @model_validator(mode="after")
    def _kafka_security(self) -> Settings:
        sasl = self.kafka_security_protocol.startswith("SASL_")
        if sasl and not (self.kafka_sasl_mechanism and self.kafka_sasl_username
                         and self.kafka_sasl_password):
            raise ValueError(f"{ENV_PREFIX}KAFKA_SECURITY_PROTOCOL="
                             f"{self.kafka_security_protocol} needs "
                             f"{ENV_PREFIX}KAFKA_SASL_MECHANISM, {ENV_PREFIX}KAFKA_SASL_USERNAME "
                             f"and {ENV_PREFIX}KAFKA_SASL_PASSWORD")
        if not sasl and self.kafka_sasl_mechanism:
            raise ValueError(f"{ENV_PREFIX}KAFKA_SASL_MECHANISM is set but "
                             f"{ENV_PREFIX}KAFKA_SECURITY_PROTOCOL is "
                             f"{self.kafka_security_protocol} (use SASL_SSL or SASL_PLAINTEXT)")
        if self.kafka_ssl_ca_file is not None and not self.kafka_ssl_ca_file.is_file():
            raise ValueError(f"{ENV_PREFIX}KAFKA_SSL_CA_FILE: no such file "
                             f"{self.kafka_ssl_ca_file}")
        return self

    @property
    def local_sasl_port(self) -> int | None:
        """The local stack's SASL_PLAINTEXT port, or None for none."""
        if self.kafka_local_sasl_port is None:
            return self.kafka_controller_port + 1 if self.kafka_controller_port < 65535 else None
        return self.kafka_local_sasl_port or None

    @property
    def kafka_port(self) -> int:
        """The port the local broker listens on: the first bootstrap address's."""
        return int(self.kafka_bootstrap.split(",")[0].rpartition(":")[2])

    @property
    def limits(self) -> dict[str, Limit]:
        """Every source limit by name: the defaults, with BOXSYNC_SOURCE_LIMITS applied."""
        return parse_limits(self.source_limits)

    @property
    def tenant(self) -> str:
        return self.tenant_id or self.jira_site or self.topic_prefix.rstrip(".") or "boxsync"

    @property
    def worker_instance(self) -> str:
        return self.instance_id or f"{socket.gethostname()}-{self.web_port}"


def load_settings(**overrides: object) -> Settings:
    """Build the settings, turning a validation error into one line per bad variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            if error["loc"]:
                problems.append(f"{ENV_PREFIX}{str(error['loc'][0]).upper()}: {error['msg']}")
            else:  # a rule over several settings: its message names them
                problems.append(str(error["msg"]).removeprefix("Value error, "))
        raise SettingsError("bad setting " + "; ".join(problems)) from None
