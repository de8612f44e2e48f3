"""Kafka security settings: every client's options from one settings object, and no secret leaks."""

from __future__ import annotations

import datetime as dt
import logging
import ssl
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import SecretStr, ValidationError

from disruptfeed import errors
from disruptfeed._security import (
    aiokafka_security,
    check_security,
    java_properties_text,
    java_security,
    rdkafka_security,
)
from disruptfeed.settings import Settings

pytestmark = pytest.mark.unit

PASSWORD = "pw-Zq8!never-print-me"
KEY_PASSWORD = "key-Xr5?never-print-me-either"


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    """A CA, and a client certificate with its key encrypted under KEY_PASSWORD."""
    now = dt.datetime.now(dt.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("test CA"))
        .issuer_name(name("test CA"))
        .public_key(ca_key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name("client"))
        .issuer_name(name("test CA"))
        .public_key(key.public_key())
        .serial_number(2)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    files = {
        "ca": tmp_path / "ca.pem",
        "cert": tmp_path / "client.pem",
        "key": tmp_path / "client.key",
        "other_key": tmp_path / "other.key",
        "not_pem": tmp_path / "not.pem",
    }
    files["ca"].write_bytes(ca.public_bytes(pem))
    files["cert"].write_bytes(cert.public_bytes(pem))
    encrypted = serialization.BestAvailableEncryption(KEY_PASSWORD.encode())
    files["key"].write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, encrypted))
    other = ec.generate_private_key(ec.SECP256R1())
    files["other_key"].write_bytes(
        other.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    files["not_pem"].write_text("not a certificate\n")
    return files


def _ca_names(context: ssl.SSLContext) -> list[str]:
    return [str(part[0][1]) for c in context.get_ca_certs() for part in c["subject"]]


def _secure(pki: dict[str, Path], **overrides: Any) -> Settings:
    fields: dict[str, Any] = {
        "bootstrap_servers": "kafka-1:9093,kafka-2:9093",
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_username": "feed",
        "sasl_password": PASSWORD,
        "ssl_ca_file": pki["ca"],
        "ssl_cert_file": pki["cert"],
        "ssl_key_file": pki["key"],
        "ssl_key_password": KEY_PASSWORD,
    }
    fields.update(overrides)
    return Settings(**fields)


def test_aiokafka_options_carry_sasl_and_a_verifying_context(pki: dict[str, Path]) -> None:
    kwargs = _secure(pki).client_kwargs()
    assert kwargs["bootstrap_servers"] == "kafka-1:9093,kafka-2:9093"
    assert kwargs["security_protocol"] == "SASL_SSL"
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
    assert kwargs["sasl_plain_username"] == "feed"
    assert kwargs["sasl_plain_password"] == PASSWORD
    context = kwargs["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    assert _ca_names(context) == ["test CA"]

    plain = Settings(bootstrap_servers="k:9092").client_kwargs()
    assert plain["security_protocol"] == "PLAINTEXT"
    assert not {"ssl_context", "sasl_mechanism", "sasl_plain_password"} & set(plain)
    # TLS only, with the system's CAs: no SASL options at all.
    tls = Settings(bootstrap_servers="k:9093", security_protocol="SSL").client_kwargs()
    assert isinstance(tls["ssl_context"], ssl.SSLContext)
    assert "sasl_mechanism" not in tls
    sasl_plain = Settings(
        bootstrap_servers="k:9092",
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="PLAIN",
        sasl_username="u",
        sasl_password=SecretStr("p"),
    ).client_kwargs()
    assert sasl_plain["sasl_mechanism"] == "PLAIN"
    assert "ssl_context" not in sasl_plain


def test_librdkafka_and_java_get_the_same_connection(pki: dict[str, Path]) -> None:
    settings = _secure(pki, sasl_mechanism="SCRAM-SHA-256")
    assert settings.rdkafka_config() == {
        "bootstrap.servers": "kafka-1:9093,kafka-2:9093",
        "client.id": "disruptfeed",
        "security.protocol": "sasl_ssl",
        "sasl.mechanism": "SCRAM-SHA-256",
        "sasl.username": "feed",
        "sasl.password": PASSWORD,
        "ssl.ca.location": str(pki["ca"]),
        "ssl.certificate.location": str(pki["cert"]),
        "ssl.key.location": str(pki["key"]),
        "ssl.key.password": KEY_PASSWORD,
    }
    from confluent_kafka import Producer

    # librdkafka accepts every key and loads the files (log_level 0: the unresolvable host
    # it then tries in the background is not reported).
    Producer({**settings.rdkafka_config(), "log_level": 0}).flush(0)

    props = java_security(settings)
    assert props["security.protocol"] == "SASL_SSL"
    assert props["sasl.jaas.config"] == (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="feed" password="{PASSWORD}";'
    )
    assert props["ssl.truststore.type"] == props["ssl.keystore.type"] == "PEM"
    assert props["ssl.keystore.key"].startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")
    text = java_properties_text(props)
    # One line per property: the PEM blocks' line breaks are escaped as \n.
    assert len(text.splitlines()) == len(props)
    assert "ssl.keystore.certificate.chain=-----BEGIN CERTIFICATE-----\\n" in text
    quoted = java_security(_secure(pki, sasl_password='a"b\\c', sasl_mechanism="PLAIN"))
    assert quoted["sasl.jaas.config"].endswith('password="a\\"b\\\\c";')
    assert "PlainLoginModule" in quoted["sasl.jaas.config"]


@pytest.mark.parametrize(
    ("overrides", "names"),
    [
        ({"sasl_password": None}, ["DISRUPTFEED_SASL_PASSWORD"]),
        ({"sasl_mechanism": None, "sasl_username": " "}, ["_SASL_MECHANISM", "_SASL_USERNAME"]),
        ({"security_protocol": "SSL"}, ["DISRUPTFEED_SASL_MECHANISM", "sends no SASL"]),
        (
            {"security_protocol": "PLAINTEXT", "sasl_mechanism": None, "sasl_username": None,
             "sasl_password": None},
            ["DISRUPTFEED_SSL_CA_FILE", "does not use TLS"],
        ),
        ({"ssl_key_file": None, "ssl_key_password": None}, ["_CERT_FILE / DISRUPTFEED_SSL_KEY"]),
        ({"ssl_cert_file": None, "ssl_key_file": None}, ["_SSL_KEY_PASSWORD set without"]),
    ],
)  # fmt: skip
def test_incomplete_or_unused_security_settings_name_the_variable(
    pki: dict[str, Path], overrides: dict[str, Any], names: list[str]
) -> None:
    settings = _secure(pki, **overrides)
    for build in (Settings.client_kwargs, Settings.rdkafka_config, java_security):
        with pytest.raises(errors.ConfigurationError) as caught:
            build(settings)
        for name in names:
            assert name in str(caught.value)


def _failures(pki: dict[str, Path]) -> list[tuple[Settings, str]]:
    """Settings whose client options cannot be built, and what each message must name."""
    return [
        (_secure(pki, ssl_ca_file=pki["ca"].with_name("missing.pem")), "DISRUPTFEED_SSL_CA_FILE"),
        (_secure(pki, ssl_ca_file=pki["not_pem"]), "no PEM certificate"),
        (_secure(pki, ssl_key_password="wrong-" + KEY_PASSWORD[::-1]), "wrong password"),
        # Encrypted and no password: an error, never OpenSSL's terminal prompt.
        (_secure(pki, ssl_key_password=None), "set DISRUPTFEED_SSL_KEY_PASSWORD"),
        (_secure(pki, ssl_key_file=pki["other_key"], ssl_key_password=None), "_SSL_KEY_FILE"),
        (_secure(pki, ssl_cert_file=pki["cert"].with_name("gone.pem")), "_SSL_CERT_FILE"),
        (_secure(pki, sasl_username=None), "DISRUPTFEED_SASL_USERNAME"),
        (_secure(pki, security_protocol="SSL"), "DISRUPTFEED_SASL_PASSWORD"),
    ]  # fmt: skip


def test_bad_files_fail_with_the_setting_named(pki: dict[str, Path]) -> None:
    for settings, wanted in _failures(pki):
        with pytest.raises(errors.ConfigurationError, match=wanted) as caught:
            settings.client_kwargs()
        assert not caught.value.retriable
        assert "\n" not in str(caught.value)


def test_no_secret_in_any_output_or_log(
    pki: dict[str, Path], caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """repr, str, JSON dumps, every error path and every log line: never either password."""
    from streams._credentials import broker_credentials

    caplog.set_level(logging.DEBUG)
    settings = _secure(pki)
    seen: list[str] = [
        repr(settings),
        str(settings),
        settings.model_dump_json(),
        str(settings.model_dump()),
        repr(settings.sasl_password),
        repr(broker_credentials(settings)),
        repr(broker_credentials(_secure(pki, security_protocol="SSL", sasl_mechanism=None,
                                        sasl_username=None, sasl_password=None))),
    ]  # fmt: skip
    assert SecretStr(PASSWORD) == settings.sasl_password

    def failing(call: Callable[[], object]) -> None:
        try:
            call()
        except Exception as exc:  # every kind: formatted with its whole chain, as a log would
            seen.extend(traceback.format_exception(exc))
            logging.getLogger("test").exception("client options failed")
        else:
            raise AssertionError("expected an error")

    for bad, _ in _failures(pki):
        for build in (bad.client_kwargs, bad.rdkafka_config, lambda s=bad: java_security(s)):
            failing(build)
        failing(lambda s=bad: broker_credentials(s))  # type: ignore[misc]
    # pydantic's own errors, for another field of settings that hold the passwords.
    failing(lambda: _secure(pki, partitions=0))
    failing(lambda: _secure(pki, sasl_mechanism="SCRAM-SHA-1"))

    captured = capsys.readouterr()
    everything = "\n".join([*seen, caplog.text, captured.out, captured.err])
    assert "SCRAM-SHA-1" in everything  # the checks above did produce output
    assert "client options failed" in caplog.text
    for secret in (PASSWORD, KEY_PASSWORD):
        assert secret not in everything


def test_validation_errors_do_not_echo_the_password() -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(sasl_password=PASSWORD, security_protocol="TLS")  # type: ignore[arg-type]
    assert "security_protocol" in str(caught.value)
    assert PASSWORD not in str(caught.value)


@pytest.mark.parametrize(
    ("protocol", "mechanism"),
    [
        ("SASL_SSL", "SCRAM-SHA-512"),
        ("SASL_SSL", "SCRAM-SHA-256"),
        ("SASL_PLAINTEXT", "PLAIN"),
        ("SSL", None),
        ("PLAINTEXT", None),
    ],
)
def test_faust_passes_the_mechanism_to_aiokafka(
    pki: dict[str, Path], tmp_path: Path, protocol: str, mechanism: str | None
) -> None:
    """faust-streaming hands SASLCredentials' mechanism (SCRAM included) on to aiokafka."""
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    from streams.app import create_app

    sasl = mechanism is not None
    tls = protocol in ("SSL", "SASL_SSL")
    settings = Settings(
        bootstrap_servers="kafka-1:9093",
        data_dir=tmp_path,
        worker_store="memory://",
        topic_prefix="unit",
        security_protocol=protocol,  # type: ignore[arg-type]
        sasl_mechanism=mechanism,  # type: ignore[arg-type]
        sasl_username="feed" if sasl else None,
        sasl_password=SecretStr(PASSWORD) if sasl else None,
        ssl_ca_file=pki["ca"] if tls else None,
    )
    app = create_app(settings, "c1")
    # The function Faust's worker consumer, client consumer and producer all build auth with.
    auth = credentials_to_aiokafka_auth(app.conf.broker_credentials, app.conf.ssl_context)
    ours = aiokafka_security(settings)
    assert auth["security_protocol"] == ours["security_protocol"] == protocol
    assert auth.get("sasl_mechanism") == ours.get("sasl_mechanism") == mechanism
    assert auth.get("sasl_plain_username") == ours.get("sasl_plain_username")
    assert auth.get("sasl_plain_password") == ours.get("sasl_plain_password")
    if tls:
        context = auth["ssl_context"]
        assert isinstance(context, ssl.SSLContext)
        assert _ca_names(context) == ["test CA"]
    else:
        assert auth.get("ssl_context") is None


def test_security_errors_are_not_retriable() -> None:
    for cls in (errors.ConnectionSecurityError, errors.AuthenticationError, errors.TLSError):
        assert not cls.retriable
        assert issubclass(cls, errors.ConfigurationError)
        assert not issubclass(cls, errors.BrokerError)
    check_security(Settings())  # the default, PLAINTEXT with nothing else, is fine
    assert rdkafka_security(Settings()) == {"security.protocol": "plaintext"}
