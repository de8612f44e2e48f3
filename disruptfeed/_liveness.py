"""Is a broker alive? Its process (process table), its port, and a real metadata request.

``wait_until_ready`` serves the embedded broker's start-up and anything else that must wait for
a cluster (the CLI, tests against an external cluster). The probes are sync and safe to call
with or without a running event loop.
"""

from __future__ import annotations

__all__ = [
    "is_broker_process",
    "poll_ready",
    "port_taken",
    "probe_once",
    "send_signal",
    "wait_until_ready",
]

import asyncio
import contextlib
import functools
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from disruptfeed.errors import BrokerNotRunningError, ConnectionSecurityError

_T = TypeVar("_T")
_CLOSE_WAIT_S = 2.0
"""At most this long for the probe's connections to finish closing (see :func:`_then_closed`)."""


def wait_until_ready(
    bootstrap: str, timeout: float, *, client_kwargs: Mapping[str, Any] | None = None
) -> None:
    """Block until a Kafka cluster answers a metadata request that lists a broker.

    Safe from sync code, even inside a running event loop (it then uses a worker thread).

    Args:
        bootstrap: ``host:port[,host:port...]``.
        timeout: Seconds to keep trying.
        client_kwargs: Extra aiokafka client options (TLS, SASL), e.g.
            ``settings.client_kwargs()``; its ``bootstrap_servers`` is ignored.

    Raises:
        BrokerNotRunningError: Nothing answered in time; the message gives the last error.
        ConnectionSecurityError: A broker answered, but not to the TLS/SASL settings in
            ``client_kwargs``: at once, since waiting cannot fix that.
    """
    deadline = time.monotonic() + timeout
    error = poll_ready(bootstrap, deadline, client_kwargs, lambda: None, fail_on_security=True)
    if error is not None:
        raise BrokerNotRunningError(f"no Kafka broker answered at {bootstrap} ({error})")


def probe_once(
    bootstrap: str, wait_s: float, client_kwargs: Mapping[str, Any] | None = None
) -> str | None:
    """Send one metadata request; return None if a broker answered, else a one-line reason.

    Raises:
        ConnectionSecurityError: with ``client_kwargs``, a broker answered but refused them.
    """
    return _run_sync(functools.partial(_probe, bootstrap, wait_s, client_kwargs))


def poll_ready(
    bootstrap: str,
    deadline: float,
    client_kwargs: Mapping[str, Any] | None,
    check_alive: Callable[[], None],
    *,
    fail_on_security: bool = False,
) -> str | None:
    """Probe until one succeeds (None) or the deadline (the last error); check_alive may raise.

    A TLS/SASL refusal is raised when ``fail_on_security``, else (a broker that is still
    starting) kept as the last error and tried again.
    """
    error = "no attempt was made"
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            result = probe_once(bootstrap, min(remaining, 5.0), client_kwargs)
        except ConnectionSecurityError as exc:
            if fail_on_security:
                raise
            result = str(exc)
        if result is None:
            return None
        error = result
        check_alive()
        time.sleep(max(0.0, min(0.25, deadline - time.monotonic())))
    return error


async def _probe(
    bootstrap: str, wait_s: float, client_kwargs: Mapping[str, Any] | None
) -> str | None:
    """Send one metadata request; return None if a broker answered, else a one-line reason."""
    from aiokafka.client import AIOKafkaClient
    from aiokafka.errors import KafkaConnectionError, KafkaError

    from disruptfeed._security import diagnose

    options: dict[str, Any] = {"client_id": "disruptfeed-readiness", **(client_kwargs or {})}
    options.update(bootstrap_servers=bootstrap, request_timeout_ms=max(1_000, int(wait_s * 1000)))
    with _quiet_aiokafka():
        client = AIOKafkaClient(**options)
        try:
            # aiokafka bounds each step by request_timeout_ms; this only guards against a hang.
            await asyncio.wait_for(client.bootstrap(), wait_s + 5.0)
            return None if client.cluster.brokers() else "the metadata lists no brokers yet"
        except (KafkaError, OSError, TimeoutError) as exc:
            if client_kwargs and isinstance(exc, KafkaConnectionError):
                found = await diagnose(options)  # a refused password must not look like "down"
                if isinstance(found, ConnectionSecurityError):
                    raise found from exc
            name, text = type(exc).__name__, str(exc)
            return text if text.startswith(name) else f"{name}: {text}".rstrip(": ")
        finally:
            await client.close()


class _ThisThreadFilter(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.thread = threading.get_ident()

    def filter(self, record: logging.LogRecord) -> bool:
        return record.thread != self.thread


@contextlib.contextmanager
def _quiet_aiokafka() -> Iterator[None]:
    # Each refused connection while the broker boots is an ERROR line from aiokafka. Drop only
    # this thread's records, so other aiokafka clients in the process still log normally.
    loggers = [logging.getLogger(name) for name in ("aiokafka", "aiokafka.conn")]
    quiet = _ThisThreadFilter()
    for logger in loggers:
        logger.addFilter(quiet)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(quiet)


def _run_sync(factory: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    """Run a coroutine to completion from sync code, even inside a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_then_closed(factory))
    # asyncio.run refuses to nest: use a private loop in a worker thread. It blocks the
    # caller's loop meanwhile, as any sync call made from async code does.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="disruptfeed-probe") as pool:
        return pool.submit(lambda: asyncio.run(_then_closed(factory))).result()


async def _then_closed(factory: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    """Run the coroutine, then wait (briefly) until the connections it closed are closed.

    Closing a TLS connection takes a round trip with the broker (close_notify), and aiokafka
    closes a connection that failed authentication without waiting for it. ``asyncio.run``
    closes its loop right after the probe, and a socket still closing then leaked (reported as
    an unclosed transport when garbage-collected).
    """
    try:
        return await factory()
    finally:
        loop = asyncio.get_running_loop()
        # Selector loops keep fd -> transport; a transport's socket is None once closed.
        transports = getattr(loop, "_transports", {})
        deadline = loop.time() + _CLOSE_WAIT_S
        while loop.time() < deadline and any(  # noqa: ASYNC110 - transports signal nothing
            getattr(t, "_sock", None) is not None for t in list(transports.values())
        ):
            await asyncio.sleep(0.01)


def is_broker_process(pid: int, props: Path) -> bool:
    """True if ``pid`` is a live ``kafka.Kafka`` JVM started with the config file ``props``."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False  # gone, or the pid was reused by another user's process
    if not Path("/proc/self").is_dir():
        return True  # no procfs (macOS): trust the pid file
    try:
        state = Path(f"/proc/{pid}/stat").read_text(errors="replace").rpartition(")")[2].split()[0]
        if state in ("Z", "X"):
            # A killed JVM's main thread turns zombie while its other threads are still exiting
            # and holding its sockets; only a lone zombie thread is really gone.
            return len(os.listdir(f"/proc/{pid}/task")) > 1
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, IndexError):
        return False
    return b"kafka.Kafka" in argv and os.fsencode(props) in argv  # not some reused pid


def send_signal(pid: int, sig: signal.Signals) -> None:
    """Send ``sig`` to ``pid``; a process that already exited is not an error."""
    with contextlib.suppress(ProcessLookupError):  # it may have exited on its own meanwhile
        os.kill(pid, sig)


def port_taken(port: int) -> bool:
    """True if a program listens on 127.0.0.1:``port`` (a bind would fail as Kafka's would)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Like Java's server sockets: TIME_WAIT leftovers of our own last run must not count.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False
