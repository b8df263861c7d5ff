"""Kafka TLS/SASL and PostgreSQL sslmode settings, applied to every client (issue 16)."""

from __future__ import annotations

from pathlib import Path

import faust
import pytest

from processors.app import broker_credentials
from processors.runtime.kafka import client_config, consumer_config, producer_config
from processors.settings import Settings, SettingsError, load_settings
from processors.stack.postgres import resolve_database_url

SASL = {"kafka_security_protocol": "SASL_SSL", "kafka_sasl_mechanism": "SCRAM-SHA-512",
        "kafka_sasl_username": "boxsync", "kafka_sasl_password": "s3cret-pw"}


def settings(**overrides: object) -> Settings:
    return load_settings(kafka_bootstrap="kafka-0.kafka:9093", **overrides)


def test_plaintext_adds_nothing() -> None:
    assert client_config(settings()) == {"bootstrap.servers": "kafka-0.kafka:9093"}


def test_sasl_ssl_reaches_consumers_producers_and_admin_clients(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    chosen = settings(**SASL, kafka_ssl_ca_file=str(ca))
    expected = {"security.protocol": "sasl_ssl", "sasl.mechanism": "SCRAM-SHA-512",
                "sasl.username": "boxsync", "sasl.password": "s3cret-pw",
                "ssl.ca.location": str(ca)}
    for config in (client_config(chosen), consumer_config(chosen, "g"),
                   producer_config(chosen, "tx-1")):
        assert expected.items() <= config.items()


def test_ssl_alone_takes_the_ca_and_no_sasl(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("x")
    config = client_config(settings(kafka_security_protocol="SSL", kafka_ssl_ca_file=str(ca)))
    assert config["security.protocol"] == "ssl" and config["ssl.ca.location"] == str(ca)
    assert not any(key.startswith("sasl.") for key in config)


def test_sasl_plaintext_has_no_ssl_properties() -> None:
    config = client_config(settings(**{**SASL, "kafka_security_protocol": "SASL_PLAINTEXT"}))
    assert config["security.protocol"] == "sasl_plaintext"
    assert "ssl.ca.location" not in config


@pytest.mark.parametrize("overrides, says", [
    ({"kafka_security_protocol": "SASL_SSL"}, "needs BOXSYNC_KAFKA_SASL_MECHANISM"),
    ({"kafka_sasl_mechanism": "PLAIN"}, "use SASL_SSL or SASL_PLAINTEXT"),
    ({"kafka_ssl_ca_file": "/nowhere/ca.crt"}, "BOXSYNC_KAFKA_SSL_CA_FILE: no such file"),
    ({"kafka_security_protocol": "TLS"}, "BOXSYNC_KAFKA_SECURITY_PROTOCOL"),
    ({"database_sslmode": "on"}, "BOXSYNC_DATABASE_SSLMODE"),
])
def test_bad_security_settings_say_what_to_set(overrides: dict[str, object], says: str) -> None:
    with pytest.raises(SettingsError, match=says):
        settings(**overrides)


def test_the_password_never_prints() -> None:
    chosen = settings(**SASL)
    assert "s3cret-pw" not in repr(chosen) and "s3cret-pw" not in str(chosen)


def test_faust_gets_the_same_credentials() -> None:
    assert broker_credentials(settings()) is None
    creds = broker_credentials(settings(**SASL))
    assert isinstance(creds, faust.SASLCredentials)
    assert creds.username == "boxsync"
    assert creds.protocol.value == "SASL_SSL"
    plain = broker_credentials(settings(**{**SASL, "kafka_security_protocol": "SASL_PLAINTEXT"}))
    assert isinstance(plain, faust.SASLCredentials)
    assert plain.protocol.value == "SASL_PLAINTEXT"


def test_database_sslmode_overrides_the_urls() -> None:
    url = resolve_database_url(settings(
        database_url="postgresql://app:pw@pg-rw.db:5432/boxsync?sslmode=prefer",
        database_sslmode="verify-full"))
    assert "sslmode=verify-full" in url and "prefer" not in url
    kept = resolve_database_url(settings(database_url="postgresql://app@pg/boxsync"))
    assert "sslmode" not in kept


def test_consumers_rebalance_cooperatively_unless_told_otherwise() -> None:
    assert consumer_config(settings(), "g")["partition.assignment.strategy"] == \
        "cooperative-sticky"
    eager = settings(kafka_assignment_strategy="range")
    assert consumer_config(eager, "g")["partition.assignment.strategy"] == "range"
