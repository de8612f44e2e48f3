"""TLS and SASL for every Kafka client, from the one settings object; and why a connection failed.

The settings' security fields (``DISRUPTFEED_SECURITY_PROTOCOL``, ``_SASL_*``, ``_SSL_*``) are
turned into each client's own options here and nowhere else: aiokafka keyword arguments (the
producer, the typed consumer, the dispatcher, the admin client, and Faust through
:mod:`streams._credentials`), librdkafka properties (confluent-kafka and Quix Streams in the
bench) and Java client properties (Kafka's perf tools in the bench).

Secrets stay :class:`~pydantic.SecretStr` until the line that hands them to a client. No message
built here holds one: errors name the setting to fix and, at most, a file path or user name.

aiokafka reports a failed bootstrap only as "Unable to bootstrap from [...]" (the cause goes to
its log). :func:`diagnose` connects once more, with aiokafka's own connection code and the same
options, and turns the cause into one line naming the setting at fault: a wrong password, an
untrusted certificate and a plaintext client at a TLS listener each fail within a second or two,
as a non-retriable :class:`~disruptfeed.errors.ConnectionSecurityError`, instead of looking like a
broker that is down.
"""

from __future__ import annotations

__all__ = [
    "aiokafka_security",
    "check_security",
    "connect_failure",
    "diagnose",
    "env_name",
    "java_properties_text",
    "java_security",
    "rdkafka_security",
    "ssl_context",
]

import asyncio
import contextlib
import ssl
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from disruptfeed.errors import (
    AuthenticationError,
    BrokerNotRunningError,
    ConfigurationError,
    ConnectionSecurityError,
    DisruptFeedError,
    TLSError,
)

if TYPE_CHECKING:
    from disruptfeed.settings import Settings

_TLS_PROTOCOLS = ("SSL", "SASL_SSL")
_SASL_PROTOCOLS = ("SASL_PLAINTEXT", "SASL_SSL")
_DIAGNOSE_TIMEOUT_MS = 10_000


def env_name(field: str) -> str:
    """The environment variable of a settings field (``sasl_password``: ``..._SASL_PASSWORD``)."""
    return f"DISRUPTFEED_{field.upper()}"


def _names(*fields: str) -> str:
    return " / ".join(env_name(f) for f in fields)


def check_security(settings: Settings) -> None:
    """Refuse security settings that are incomplete, or set but unused by the protocol.

    A SASL password given with ``PLAINTEXT`` would silently not be sent; a CA file given without
    TLS would silently not be checked. Both are mistakes worth one clear line.

    Raises:
        ConfigurationError: naming the settings at fault (never their values).
    """
    protocol = settings.security_protocol
    sasl = {
        "sasl_mechanism": settings.sasl_mechanism,
        "sasl_username": settings.sasl_username,
        "sasl_password": settings.sasl_password,
    }
    tls = {
        "ssl_ca_file": settings.ssl_ca_file,
        "ssl_cert_file": settings.ssl_cert_file,
        "ssl_key_file": settings.ssl_key_file,
        "ssl_key_password": settings.ssl_key_password,
    }
    prefix = f"{env_name('security_protocol')}={protocol}"
    if protocol in _SASL_PROTOCOLS:
        missing = [name for name, value in sasl.items() if not _given(value)]
        if missing:
            raise ConfigurationError(f"{prefix} needs {_names(*missing)}")
    elif given := [name for name, value in sasl.items() if _given(value)]:
        raise ConfigurationError(
            f"{_names(*given)} set, but {prefix} sends no SASL credentials: set "
            f"{env_name('security_protocol')}=SASL_SSL (or SASL_PLAINTEXT), or unset them"
        )
    if protocol not in _TLS_PROTOCOLS:
        if given := [name for name, value in tls.items() if value is not None]:
            raise ConfigurationError(
                f"{_names(*given)} set, but {prefix} does not use TLS: set "
                f"{env_name('security_protocol')}=SSL or SASL_SSL, or unset them"
            )
        return
    if (settings.ssl_cert_file is None) != (settings.ssl_key_file is None):
        raise ConfigurationError(
            f"{_names('ssl_cert_file', 'ssl_key_file')} go together (the client certificate "
            "and its private key, for mutual TLS): set both or neither"
        )
    if settings.ssl_key_password is not None and settings.ssl_key_file is None:
        raise ConfigurationError(
            f"{env_name('ssl_key_password')} set without {env_name('ssl_key_file')}"
        )


def _given(value: object) -> bool:
    if value is None:
        return False
    secret = getattr(value, "get_secret_value", None)
    text = secret() if secret is not None else value
    return bool(str(text).strip())


def ssl_context(settings: Settings) -> ssl.SSLContext:
    """The client TLS context: the configured CA (or the system's), the client certificate if any.

    Certificates and host names are always verified.

    Raises:
        ConfigurationError: a file cannot be read or holds no usable PEM; the message names the
            setting and the file, never the key password.
    """
    ca = settings.ssl_ca_file
    try:
        context = ssl.create_default_context(cafile=None if ca is None else str(ca))
    except OSError as exc:  # ssl.SSLError is an OSError too: not PEM, or no certificate
        assert ca is not None
        why = exc.strerror if not isinstance(exc, ssl.SSLError) else "no PEM certificate in it"
        raise ConfigurationError(
            f"cannot use the CA file {ca} ({why}): check {env_name('ssl_ca_file')}"
        ) from None
    cert, key = settings.ssl_cert_file, settings.ssl_key_file
    if cert is not None and key is not None:
        secret = settings.ssl_key_password

        # Always a callable: without one, OpenSSL would prompt on the terminal for the password
        # of an encrypted key, and a worker without a terminal would hang there.
        def password() -> str:
            return secret.get_secret_value() if secret is not None else ""

        try:
            context.load_cert_chain(str(cert), str(key), password=password)
        except ssl.SSLError as exc:
            hint = (
                f"is the key encrypted? set {env_name('ssl_key_password')}"
                if secret is None
                else "a wrong password, or a key that does not match the certificate"
            )
            raise ConfigurationError(
                f"cannot load the client certificate {cert} with key {key} "
                f"({exc.reason or 'unreadable'}: {hint}): check "
                f"{_names('ssl_cert_file', 'ssl_key_file', 'ssl_key_password')}"
            ) from None
        except OSError as exc:
            raise ConfigurationError(
                f"cannot read the client certificate {cert} or key {key} ({exc.strerror}): "
                f"check {_names('ssl_cert_file', 'ssl_key_file')}"
            ) from None
    return context


def aiokafka_security(settings: Settings) -> dict[str, Any]:
    """Security keyword arguments for aiokafka clients (protocol, ``sasl_*``, ``ssl_context``)."""
    check_security(settings)
    out: dict[str, Any] = {"security_protocol": settings.security_protocol}
    if settings.security_protocol in _SASL_PROTOCOLS:
        assert settings.sasl_password is not None  # check_security
        out["sasl_mechanism"] = settings.sasl_mechanism
        out["sasl_plain_username"] = settings.sasl_username
        out["sasl_plain_password"] = settings.sasl_password.get_secret_value()
    if settings.security_protocol in _TLS_PROTOCOLS:
        out["ssl_context"] = ssl_context(settings)
    return out


def rdkafka_security(settings: Settings) -> dict[str, Any]:
    """Librdkafka's security properties (confluent-kafka, Quix Streams)."""
    check_security(settings)
    out: dict[str, Any] = {"security.protocol": settings.security_protocol.lower()}
    if settings.security_protocol in _SASL_PROTOCOLS:
        assert settings.sasl_password is not None
        out["sasl.mechanism"] = settings.sasl_mechanism
        out["sasl.username"] = settings.sasl_username
        out["sasl.password"] = settings.sasl_password.get_secret_value()
    if settings.security_protocol in _TLS_PROTOCOLS:
        ssl_context(settings)  # the same checks, and the same messages, as the other clients
        if settings.ssl_ca_file is not None:
            out["ssl.ca.location"] = str(settings.ssl_ca_file)
        if settings.ssl_cert_file is not None and settings.ssl_key_file is not None:
            out["ssl.certificate.location"] = str(settings.ssl_cert_file)
            out["ssl.key.location"] = str(settings.ssl_key_file)
        if settings.ssl_key_password is not None:
            out["ssl.key.password"] = settings.ssl_key_password.get_secret_value()
    return out


def java_security(settings: Settings) -> dict[str, str]:
    """A Java Kafka client's security properties (Kafka's own tools in the bench).

    TLS material is passed as PEM (``ssl.truststore.type=PEM``; the client certificate and key
    inline, as Kafka's PEM keystore takes them, which needs a PKCS#8 key).
    """
    check_security(settings)
    props: dict[str, str] = {"security.protocol": settings.security_protocol}
    if settings.security_protocol in _SASL_PROTOCOLS:
        assert settings.sasl_password is not None
        assert settings.sasl_mechanism is not None
        module = (
            "org.apache.kafka.common.security.plain.PlainLoginModule"
            if settings.sasl_mechanism == "PLAIN"
            else "org.apache.kafka.common.security.scram.ScramLoginModule"
        )
        user = _jaas_quote(settings.sasl_username or "")
        secret = _jaas_quote(settings.sasl_password.get_secret_value())
        props["sasl.mechanism"] = settings.sasl_mechanism
        props["sasl.jaas.config"] = f"{module} required username={user} password={secret};"
    if settings.security_protocol in _TLS_PROTOCOLS:
        ssl_context(settings)
        if settings.ssl_ca_file is not None:
            props["ssl.truststore.type"] = "PEM"
            props["ssl.truststore.location"] = str(settings.ssl_ca_file)
        if settings.ssl_cert_file is not None and settings.ssl_key_file is not None:
            props["ssl.keystore.type"] = "PEM"
            props["ssl.keystore.certificate.chain"] = settings.ssl_cert_file.read_text()
            props["ssl.keystore.key"] = settings.ssl_key_file.read_text()
        if settings.ssl_key_password is not None:
            props["ssl.key.password"] = settings.ssl_key_password.get_secret_value()
    return props


def _jaas_quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def java_properties_text(props: Mapping[str, str]) -> str:
    """``props`` as a ``.properties`` file (values escaped: PEM blocks span lines)."""

    def escape(value: str) -> str:
        return value.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")

    return "".join(f"{key}={escape(value)}\n" for key, value in props.items())


async def connect_failure(settings: Settings) -> DisruptFeedError:
    """The error to raise when a client of ``settings`` could not bootstrap: :func:`diagnose`."""
    return await diagnose(settings.client_kwargs())


async def diagnose(options: Mapping[str, Any]) -> DisruptFeedError:
    """Why an aiokafka client with these keyword arguments could not bootstrap.

    Connects to each bootstrap address once more, as aiokafka does (TLS, then the API version
    lookup, then SASL, then a metadata request), each step bounded by 10 s at most.

    Returns:
        An :class:`AuthenticationError`, :class:`TLSError` or :class:`ConnectionSecurityError`
        naming the setting to fix; else :class:`BrokerNotRunningError` (nothing answers, or it
        answered this time: retriable).
    """
    bootstrap = str(options["bootstrap_servers"])
    for host, port in _hosts(bootstrap):
        found = await _diagnose_one(host, port, options)
        if found is not None:
            return found
    return BrokerNotRunningError.at(bootstrap)


def _hosts(bootstrap: str) -> list[tuple[str, int]]:
    out = []
    for part in bootstrap.split(","):
        host, _, port = part.strip().rpartition(":")
        if host and port.isdigit():
            out.append((host.strip("[]"), int(port)))
    return out


async def _diagnose_one(  # noqa: PLR0911 - one return per diagnosis reads best
    host: str, port: int, options: Mapping[str, Any]
) -> DisruptFeedError | None:
    from aiokafka import errors as kafka_errors
    from aiokafka.conn import create_conn
    from aiokafka.protocol.metadata import MetadataRequest

    where = f"{host}:{port}"
    protocol = str(options.get("security_protocol", "PLAINTEXT"))
    mechanism = options.get("sasl_mechanism") or "PLAIN"
    user = options.get("sasl_plain_username")
    timeout_ms = min(int(options.get("request_timeout_ms", 30_000)), _DIAGNOSE_TIMEOUT_MS)
    try:
        conn = await asyncio.wait_for(
            create_conn(
                host,
                port,
                client_id=str(options.get("client_id", "disruptfeed")),
                request_timeout_ms=timeout_ms,
                security_protocol=protocol,
                ssl_context=options.get("ssl_context"),
                sasl_mechanism=mechanism,
                sasl_plain_username=user,
                sasl_plain_password=options.get("sasl_plain_password"),
            ),
            timeout_ms / 1000 + 5,
        )
    except kafka_errors.SaslAuthenticationFailed:
        return AuthenticationError(
            f"authentication failed at {where} for user {user!r} with {mechanism}: check "
            f"{_names('sasl_username', 'sasl_password')} (and {env_name('sasl_mechanism')})"
        )
    except kafka_errors.UnsupportedSaslMechanismError:
        return AuthenticationError(
            f"the broker at {where} does not enable SASL {mechanism}: check "
            f"{env_name('sasl_mechanism')}"
        )
    except kafka_errors.IllegalSaslStateError:
        return ConnectionSecurityError(
            f"the broker at {where} does not take SASL on this listener, but "
            f"{env_name('security_protocol')}={protocol}: check it (SSL or PLAINTEXT?)"
        )
    except ssl.SSLCertVerificationError as exc:
        return _untrusted(where, exc)
    except ssl.SSLError as exc:
        return await _tls_failed(host, port, protocol, exc)
    except (kafka_errors.KafkaConnectionError, ConnectionResetError, asyncio.IncompleteReadError):
        return await _closed_at_connect(host, port, protocol)
    except (OSError, TimeoutError, kafka_errors.KafkaError):
        return None  # refused, unreachable, or slow: not a security matter
    try:
        await asyncio.wait_for(conn.send(MetadataRequest([])), timeout_ms / 1000 + 5)
    except kafka_errors.KafkaConnectionError:
        if protocol not in _SASL_PROTOCOLS:
            return ConnectionSecurityError(
                f"the broker at {where} closed the connection when asked without SASL; it "
                f"likely requires it: set {env_name('security_protocol')}=SASL_SSL (or "
                f"SASL_PLAINTEXT) and {_names('sasl_mechanism', 'sasl_username', 'sasl_password')}"
            )
        return None
    except (kafka_errors.KafkaError, TimeoutError):
        return None
    finally:
        conn.close()
    return None


def _untrusted(where: str, exc: ssl.SSLCertVerificationError) -> TLSError:
    message = str(exc.verify_message or exc.reason or "certificate verify failed")
    if "mismatch" in message.lower():  # "Hostname mismatch", "IP address mismatch"
        return TLSError(
            f"the certificate of the broker at {where} is not for that address ({message}): "
            f"check {env_name('bootstrap_servers')} (use a name the certificate holds)"
        )
    return TLSError(
        f"the certificate of the broker at {where} is not trusted ({message}): set "
        f"{env_name('ssl_ca_file')} to the CA that signed it"
    )


async def _tls_failed(host: str, port: int, protocol: str, exc: ssl.SSLError) -> TLSError:
    where = f"{host}:{port}"
    reason = str(exc.reason or type(exc).__name__)
    if "CERTIFICATE" in reason.upper() or "UNKNOWN_CA" in reason.upper():
        # The broker's alert: it wants a client certificate, or does not trust the one sent.
        return TLSError(
            f"the broker at {where} refused the TLS client certificate ({reason}): check "
            f"{_names('ssl_cert_file', 'ssl_key_file')}"
        )
    if await _speaks_plaintext(host, port):
        return _not_tls(where, protocol)
    return TLSError(
        f"TLS with the broker at {where} failed ({reason}): check "
        f"{env_name('security_protocol')} and the {env_name('ssl')}_* settings"
    )


async def _closed_at_connect(host: str, port: int, protocol: str) -> DisruptFeedError | None:
    where = f"{host}:{port}"
    if protocol in _TLS_PROTOCOLS:
        if await _speaks_plaintext(host, port):
            return _not_tls(where, protocol)
        return None
    if await _speaks_tls(host, port):
        return TLSError(
            f"the broker at {where} speaks TLS, but {env_name('security_protocol')}={protocol}: "
            f"set it to SSL or SASL_SSL (and {env_name('ssl_ca_file')} for a private CA)"
        )
    return None


def _not_tls(where: str, protocol: str) -> TLSError:
    return TLSError(
        f"the broker at {where} does not speak TLS, but {env_name('security_protocol')}="
        f"{protocol}: set it to PLAINTEXT or SASL_PLAINTEXT, or use the cluster's TLS listener"
    )


async def _speaks_tls(host: str, port: int) -> bool:
    """True if a TLS handshake completes at host:port (no certificate check: nothing is sent)."""
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    probe.check_hostname = False
    probe.verify_mode = ssl.CERT_NONE
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port, ssl=probe), 5.0)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError, TimeoutError):
        await asyncio.wait_for(writer.wait_closed(), 2.0)
    return True


async def _speaks_plaintext(host: str, port: int) -> bool:
    """True if the Kafka API version lookup succeeds at host:port without TLS or SASL."""
    from aiokafka.conn import create_conn
    from aiokafka.errors import KafkaError

    try:
        conn = await asyncio.wait_for(
            create_conn(host, port, request_timeout_ms=5_000, security_protocol="PLAINTEXT"), 10.0
        )
    except (OSError, TimeoutError, KafkaError, asyncio.IncompleteReadError):
        return False
    conn.close()
    return True
