"""A throwaway certificate authority and broker certificate, for ``broker start --secure``.

Made with pyca/cryptography, never by hand: an ECDSA P-256 CA (self-signed, 1 year) and a broker
certificate it signs for ``localhost`` and ``127.0.0.1`` (server and client auth: the broker
presents it to clients and, on the controller listener, to itself). Everything is PEM, which
Kafka 4.x reads directly (``ssl.keystore.type=PEM``, one file holding the PKCS#8 key and the
certificate chain; ``ssl.truststore.type=PEM``), so no keytool and no keystore password.

The CA's private key is discarded once the broker certificate is signed: nothing else can ever be
issued under it. Private files are created mode 0600.
"""

from __future__ import annotations

__all__ = ["BrokerTLS", "make_broker_tls", "write_private"]

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = dt.timedelta(days=365)
_CA_KEY_USAGE = x509.KeyUsage(
    digital_signature=False, content_commitment=False, key_encipherment=False,
    data_encipherment=False, key_agreement=False, key_cert_sign=True,
    crl_sign=True, encipher_only=False, decipher_only=False,
)  # fmt: skip
BROKER_CN = "disruptfeed-broker"
"""The broker certificate's subject CN; its TLS principal is ``User:CN=disruptfeed-broker``."""


@dataclass(frozen=True, slots=True)
class BrokerTLS:
    """Where the broker's TLS material is.

    Attributes:
        ca_file: The CA certificate (PEM): clients trust it (``DISRUPTFEED_SSL_CA_FILE``).
        keystore_file: The broker's PKCS#8 key and certificate chain (PEM, mode 0600).
    """

    ca_file: Path
    keystore_file: Path


def write_private(path: Path, data: str | bytes) -> None:
    """Replace ``path`` with ``data``, readable by this user only, never half-written."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data.encode() if isinstance(data, str) else data)
    tmp.replace(path)


def make_broker_tls(directory: Path) -> BrokerTLS:
    """The TLS files in ``directory``: made once, reused while both files exist."""
    tls = BrokerTLS(directory / "ca.pem", directory / "broker-keystore.pem")
    if tls.ca_file.is_file() and tls.keystore_file.is_file():
        return tls
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)  # a little clock skew is harmless
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "disruptfeed throwaway CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_CA_KEY_USAGE, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, BROKER_CN)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_private(tls.keystore_file, key_pem + cert.public_bytes(pem) + ca_cert.public_bytes(pem))
    tls.ca_file.write_bytes(ca_cert.public_bytes(pem))
    return tls
