"""Every error Disruption Feed raises, in one hierarchy.

The ``retriable`` flag (as in aiokafka) tells a caller what to do with a failure: retry the same
operation later, or give up on the input and dead-letter or reject it.

    DisruptFeedError                    retriable
    ├── ConfigurationError              no    bad settings, rules or arguments
    │   ├── EndpointRefusedError        no    a webhook URL we will not call (private address)
    │   ├── NotFoundError               no    no subscription (or other object) with that id
    │   ├── TopicMismatchError          no    an existing topic is not configured as we need
    │   └── ConnectionSecurityError     no    the broker answers, but not to our TLS/SASL settings
    │       ├── AuthenticationError     no    SASL: wrong user, password or mechanism
    │       └── TLSError                no    TLS: untrusted certificate, client certificate
    │                                         refused, or plaintext spoken to a TLS listener
    ├── InvalidEventError               no    input that can never become a valid event
    │   ├── DecodeError                 no    bytes that are not UTF-8 JSON
    │   ├── SchemaValidationError       no    JSON that breaks a schema
    │   ├── FutureEventTimeError        no    occurred_at too far ahead of its publish time
    │   └── BeyondDedupeHorizonError    no    occurred_at too far behind to tell duplicates
    ├── BrokerError                     yes   the broker could not be reached or refused
    │   ├── BrokerNotRunningError       yes   no broker answers at the configured address
    │   └── PublishError                yes   a send failed after the client's own retries
    │       └── DeliveryTimeoutError    yes   not acknowledged by the delivery deadline
    ├── LauncherError                   no    the embedded broker cannot be started here
    │   ├── MissingToolError            no    java or mvn is not installed
    │   └── IntegrityError              no    a downloaded jar or Go module fails its checksum
    ├── ReplayIntegrityError            no    replayed history differs from its manifest
    └── DeliveryError                   yes   a webhook attempt failed; the schedule retries it
        └── EndpointGoneError           no    the endpoint answered 410: stop delivering
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "BeyondDedupeHorizonError",
    "BrokerError",
    "BrokerNotRunningError",
    "ConfigurationError",
    "ConnectionSecurityError",
    "DecodeError",
    "DeliveryError",
    "DeliveryTimeoutError",
    "DisruptFeedError",
    "EndpointGoneError",
    "EndpointRefusedError",
    "FieldProblem",
    "FutureEventTimeError",
    "IntegrityError",
    "InvalidEventError",
    "LauncherError",
    "MissingToolError",
    "NotFoundError",
    "PublishError",
    "ReplayIntegrityError",
    "SchemaValidationError",
    "TLSError",
    "TopicMismatchError",
]

from dataclasses import dataclass


class DisruptFeedError(Exception):
    """Base class of every error raised by the project."""

    retriable: bool = False


class ConfigurationError(DisruptFeedError):
    """Settings, rule files or command-line arguments that cannot work."""


class EndpointRefusedError(ConfigurationError):
    """A webhook or Alertmanager URL that resolves to an address deliveries must not reach."""


class NotFoundError(ConfigurationError):
    """No object (a subscription) has the id given."""


@dataclass(frozen=True, slots=True)
class FieldProblem:
    """One reason an event was rejected: where in the document, and why."""

    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}" if self.field else self.reason


class TopicMismatchError(ConfigurationError):
    """Existing topics whose partitions or settings differ from what the settings ask for.

    Going on would assume the wrong partition count (counts, alerts and replays are per
    partition) or keep data another way than documented, silently.
    """

    def __init__(self, differences: list[str]) -> None:
        self.differences = differences
        lines = "\n  ".join(differences)
        super().__init__(
            f"existing topics differ from the settings:\n  {lines}\n"
            "Set DISRUPTFEED_PARTITIONS / DISRUPTFEED_REPLICATION_FACTOR to match the cluster, "
            "change the topic with kafka-configs.sh, or use another DISRUPTFEED_TOPIC_PREFIX."
        )


class ConnectionSecurityError(ConfigurationError):
    """The broker answers, but the client's TLS or SASL settings do not fit its listener.

    Retrying with the same settings can only fail the same way, so it is not retriable; the
    message is one line that names the ``DISRUPTFEED_*`` setting to fix, and never holds a
    secret (see ``disruptfeed._security``).
    """

    retriable = False


class AuthenticationError(ConnectionSecurityError):
    """SASL authentication failed: wrong user name or password, or a mechanism not enabled."""

    retriable = False


class TLSError(ConnectionSecurityError):
    """TLS failed: an untrusted certificate, a refused client certificate, or one-sided TLS.

    One-sided: a plaintext client at a TLS listener, or a TLS client at a plaintext one.
    """

    retriable = False


class InvalidEventError(DisruptFeedError):
    """Input that can never become a valid event; retrying will not help."""

    def __init__(self, problems: list[FieldProblem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))

    @property
    def field(self) -> str:
        """The first offending field ('' when the whole document is at fault)."""
        return self.problems[0].field if self.problems else ""

    @property
    def reason(self) -> str:
        """The reason for the first problem."""
        return self.problems[0].reason if self.problems else ""


class DecodeError(InvalidEventError):
    """Bytes that are not a UTF-8 JSON object."""


class SchemaValidationError(InvalidEventError):
    """A JSON document that does not match the schema of its event type."""


class FutureEventTimeError(InvalidEventError):
    """An ``occurred_at`` further ahead of its publish time than the allowed clock skew.

    Counted, it would move its partition's stream time into the future, where every window
    reads 0 and no alert fires again; so it is rejected at publish and dead-lettered by the
    worker, whose reason starts with ``future-event-time``.
    """

    @classmethod
    def ahead(cls, occurred_ms: int, published_ms: int, limit_s: int) -> FutureEventTimeError:
        """The error for an event ``occurred_ms`` published at ``published_ms``."""
        ahead_s = (occurred_ms - published_ms) / 1000
        return cls(
            [
                FieldProblem(
                    "occurred_at",
                    f"{ahead_s:,.0f} s ahead of its publish time; the limit is {limit_s} s "
                    "(DISRUPTFEED_MAX_FUTURE_SKEW_SECONDS): fix the publisher's clock or the "
                    "event's time",
                )
            ]
        )

    def __str__(self) -> str:
        return f"future-event-time: {super().__str__()}"


class BeyondDedupeHorizonError(InvalidEventError):
    """An ``occurred_at`` further behind its partition's stream time than the dedupe horizon.

    The worker forgets the ids of events that old (so that memory and start-up time follow the
    horizon, not the whole history) and so cannot tell whether such an event was counted
    before: counting it could count it twice. It is dead-lettered, with a reason starting
    ``beyond-dedupe-horizon``, and can be redriven once the horizon is raised.
    """

    @classmethod
    def behind(
        cls, occurred_ms: int, stream_ms: int, horizon_days: int
    ) -> BeyondDedupeHorizonError:
        """The error for an event ``occurred_ms`` on a partition at stream time ``stream_ms``."""
        days = (stream_ms - occurred_ms) / 86_400_000
        return cls(
            [
                FieldProblem(
                    "occurred_at",
                    f"{days:,.1f} days behind its partition's stream time; the worker tells "
                    f"duplicates apart for {horizon_days} days (DISRUPTFEED_DEDUPE_HORIZON_DAYS): "
                    "raise it to backfill older history",
                )
            ]
        )

    def __str__(self) -> str:
        return f"beyond-dedupe-horizon: {super().__str__()}"


class BrokerError(DisruptFeedError):
    """The broker could not be reached or refused a request; worth retrying."""

    retriable = True


class BrokerNotRunningError(BrokerError):
    """Nothing answers at the configured bootstrap address."""

    @classmethod
    def at(cls, bootstrap: str) -> BrokerNotRunningError:
        """The error for ``bootstrap``, saying how to get a broker there."""
        return cls(
            f"no broker answers at {bootstrap}: start one with 'disruptfeed broker start' "
            "or set DISRUPTFEED_BOOTSTRAP_SERVERS"
        )


class PublishError(BrokerError):
    """A send failed after the Kafka client exhausted its own retries."""


class DeliveryTimeoutError(PublishError):
    """The broker did not acknowledge a record by ``DISRUPTFEED_DELIVERY_TIMEOUT_SECONDS``.

    The record may still arrive (the client kept it until the producer stopped): publishing it
    again is safe, since the worker counts an event id once.
    """


class LauncherError(DisruptFeedError):
    """The embedded broker cannot be started on this machine as configured."""


class MissingToolError(LauncherError):
    """A program the embedded broker needs (java, mvn) is not on PATH."""


class IntegrityError(LauncherError):
    """A downloaded artifact (a Kafka jar, a Go module) does not hash to its published value.

    Nothing from it is run: the bad file has been deleted by the time this is raised, so the
    next start downloads it again.

    Args:
        path: The file (or module) that failed the check.
        expected: The hash it should have (or what was expected in its place).
        actual: The hash it has (or what was found).
        source: Where ``expected`` comes from.
        action: What was done about it, and what happens next.
    """

    def __init__(self, path: object, expected: str, actual: str, source: str, action: str) -> None:
        self.path = str(path)
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"integrity check failed for {path}: expected {expected} ({source}), "
            f"got {actual}; {action}"
        )


class ReplayIntegrityError(DisruptFeedError):
    """Replayed history does not match what was recorded: missing, extra or altered events."""


class DeliveryError(DisruptFeedError):
    """One delivery attempt failed (an error status, a timeout, a refused connection).

    Retriable: the delivery goes back on the retry schedule until its attempts run out.
    """

    retriable = True


class EndpointGoneError(DeliveryError):
    """The endpoint answered 410 Gone: its subscription is disabled, nothing more is sent."""

    retriable = False
