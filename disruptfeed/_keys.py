"""Ed25519 keys: the local signing keys and the keys a verifier trusts.

Two signing keys, each a PKCS#8 PEM file generated with mode 0600 on first use by whoever signs:
the checkpointer's (``DISRUPTFEED_AUDIT_KEY_FILE``, by default ``<data_dir>/audit-key.pem``) and
the publisher's (``DISRUPTFEED_PUBLISHER_KEY_FILE``, ``<data_dir>/publisher-key.pem``). A key's
id is the first 16 hex digits of the SHA-256 of its raw public key, so anyone holding the public
key can name it. A verifier trusts the public halves of its own keys and every PEM public key
listed in ``DISRUPTFEED_AUDIT_TRUSTED_KEYS``; a rotated-out key stays in that list, as
``FILE@TIME``, so what it signed before TIME stays valid and anything it signed later is
reported. All the cryptography is the ``cryptography`` package's.
"""

from __future__ import annotations

__all__ = ["SigningKey", "TrustedKey", "key_id", "load_signing_key", "trusted_keys"]

import datetime as dt
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from disruptfeed.errors import ConfigurationError
from disruptfeed.settings import Settings

_RAW = serialization.PublicFormat.Raw


def key_id(public: Ed25519PublicKey) -> str:
    """The id of a public key: 16 hex digits of SHA-256 over its 32 raw bytes."""
    raw = public.public_bytes(serialization.Encoding.Raw, _RAW)
    return hashlib.sha256(raw).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A private key and its id."""

    key_id: str
    private: Ed25519PrivateKey

    def sign(self, data: bytes) -> bytes:
        """The Ed25519 signature of ``data``."""
        return self.private.sign(data)


def load_signing_key(
    settings: Settings, *, create: bool = False, publisher: bool = False
) -> SigningKey:
    """The checkpoint signing key (or with ``publisher``, the event signing key).

    Generated in its file when ``create`` and the file does not exist.

    Raises:
        ConfigurationError: the file is missing (and not to be created), unreadable, or holds
            no Ed25519 private key; the message names the file and what to do.
    """
    path = settings.publisher_key_path if publisher else settings.audit_key_path
    setting = "DISRUPTFEED_PUBLISHER_KEY_FILE" if publisher else "DISRUPTFEED_AUDIT_KEY_FILE"
    first = "publish once" if publisher else "run 'disruptfeed audit checkpoint' once"
    role = "event" if publisher else "audit"
    if not path.exists() and create:
        _generate(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read the {role} signing key {path}: {exc.strerror}; set {setting} to a "
            f"readable Ed25519 PEM key, or {first} to generate one"
        ) from None
    try:
        private = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ConfigurationError(
            f"{path} is not an unencrypted PEM private key ({exc}); generate one with "
            "'openssl genpkey -algorithm ed25519 -out FILE'"
        ) from None
    if not isinstance(private, Ed25519PrivateKey):
        raise ConfigurationError(f"{path} holds a {type(private).__name__}, not an Ed25519 key")
    return SigningKey(key_id(private.public_key()), private)


def _generate(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    try:  # O_EXCL: of two processes starting together, the first key is kept
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "wb") as out:
        out.write(pem)


def public_pem(key: SigningKey) -> bytes:
    """The public half of ``key`` as PEM, to hand to verifiers."""
    return key.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@dataclass(frozen=True, slots=True)
class TrustedKey:
    """A public key a verifier accepts, until ``retired_at`` when set."""

    public: Ed25519PublicKey
    retired_at: dt.datetime | None = None


def trusted_keys(settings: Settings) -> dict[str, TrustedKey]:
    """Key id -> trusted key: the local signing keys' (if present) and every listed key.

    Raises:
        ConfigurationError: a listed file is unreadable, not an Ed25519 public key, or has a
            retirement time that is not RFC 3339.
    """
    keys: dict[str, TrustedKey] = {}
    for publisher in (False, True):
        path = settings.publisher_key_path if publisher else settings.audit_key_path
        if path.exists():
            own = load_signing_key(settings, publisher=publisher).private.public_key()
            keys[key_id(own)] = TrustedKey(own)
    for entry in settings.audit_trusted_key_files:
        name, _, when = entry.partition("@")
        public = _public_key(Path(name))
        keys[key_id(public)] = TrustedKey(public, _retired_at(entry, when) if when else None)
    return keys


def _retired_at(entry: str, when: str) -> dt.datetime:
    try:
        moment = dt.datetime.fromisoformat(when)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise ConfigurationError(
            f"DISRUPTFEED_AUDIT_TRUSTED_KEYS entry {entry!r}: {when!r} is not an RFC 3339 time "
            "with a UTC offset; write FILE@2026-12-01T00:00:00Z"
        )
    return moment


def _public_key(path: Path) -> Ed25519PublicKey:
    try:
        public = serialization.load_pem_public_key(path.read_bytes())
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read trusted key {path}: {exc.strerror}; fix "
            "DISRUPTFEED_AUDIT_TRUSTED_KEYS (comma-separated PEM public key files)"
        ) from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ConfigurationError(f"{path} is not a PEM public key ({exc})") from None
    if not isinstance(public, Ed25519PublicKey):
        raise ConfigurationError(f"{path} holds a {type(public).__name__}, not Ed25519")
    return public
