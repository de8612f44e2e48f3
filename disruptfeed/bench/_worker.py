"""The services as the benchmark runs them: ``python -m disruptfeed worker|dispatcher``.

Each child gets its whole configuration from ``DISRUPTFEED_*`` variables derived from one
:class:`Settings` object (the bench broker, a unique topic prefix, a free port for its HTTP
API, its own state directory), and is judged only through its ``/health`` and ``/proc``.
"""

from __future__ import annotations

__all__ = ["POLL_S", "BenchDispatcher", "BenchWorker", "drain_rate"]

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from pydantic import SecretStr

from disruptfeed.bench._errors import BenchError
from disruptfeed.broker import free_port
from disruptfeed.settings import Settings

POLL_S = 0.05
"""How often /health is read while timing: 50 ms is under 1% of any timed interval here."""
_START_TIMEOUT_S = 120.0
_STOP_TIMEOUT_S = 60.0


def _child_env(settings: Settings) -> dict[str, str]:
    """The child's environment: ours without any DISRUPTFEED_* variable, plus ``settings``.

    Every setting is passed explicitly, so the worker runs with exactly the configuration this
    process chose, whatever the caller's environment or ``.env`` file says.
    """
    prefix = str(Settings.model_config.get("env_prefix", "DISRUPTFEED_"))
    # Copied, not read: PATH, HOME and JAVA_HOME must reach the child as they are.
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(prefix.upper())}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        plain = value.get_secret_value() if isinstance(value, SecretStr) else value
        env[f"{prefix}{name.upper()}"] = str(plain)
    return env


class BenchWorker:
    """One worker process with its own port and state directory; a context manager.

    Args:
        settings: The bench settings (broker and topic prefix).
        state_dir: Worker state (RocksDB tables) and its log file; created if missing.
        rules: Alert rules file; None: the rules shipped with the project.
    """

    name = "worker"
    args: tuple[str, ...] = ("worker", "--loglevel", "warning")

    def __init__(self, settings: Settings, state_dir: Path, rules: Path | None = None) -> None:
        self.state_dir = state_dir
        self.settings = settings.model_copy(
            update={"worker_port": free_port(), "data_dir": state_dir, "rules_file": rules}
        )
        self.log_path = state_dir / f"{self.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def health_url(self) -> str:
        """Where the child's /health is served."""
        return f"http://{self.settings.worker_host}:{self.settings.worker_port}/health"

    def start(self) -> None:
        """Launch the child (returns at once; see :meth:`wait_healthy`)."""
        # The worker creates <data_dir>/worker but not its parents.
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "disruptfeed", *self.args],
                env=_child_env(self.settings),
                cwd=self.state_dir,  # no stray .env file of the caller's directory
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    @property
    def pid(self) -> int:
        """The worker's process id."""
        if self.proc is None:
            raise RuntimeError("the worker is not running")
        return self.proc.pid

    def health(self) -> dict[str, Any] | None:
        """The /health document while the child is healthy; None before (or if it fails)."""
        try:
            # An http URL built from our own settings, never a caller's.
            with urllib.request.urlopen(self.health_url, timeout=5) as response:  # noqa: S310
                data: dict[str, Any] = json.load(response)
        except urllib.error.HTTPError as exc:
            exc.close()  # 503 while recovering
            return None
        except (OSError, ValueError):
            return None
        return data if data.get("status") == "ok" else None

    def wait_for(
        self, condition: Callable[[dict[str, Any]], bool], what: str, timeout: float
    ) -> tuple[float, dict[str, Any]]:
        """Poll /health until ``condition`` holds; return the time it did and the document.

        Raises:
            BenchError: the worker exited, or ``timeout`` seconds passed.
        """
        deadline = time.monotonic() + timeout
        while True:
            if self.proc is None or self.proc.poll() is not None:
                code = None if self.proc is None else self.proc.returncode
                raise BenchError(
                    f"the {self.name} exited ({code}) waiting for {what}:\n{self.tail()}"
                )
            health = self.health()
            now = time.perf_counter()
            if health is not None and condition(health):
                return now, health
            if time.monotonic() > deadline:
                raise BenchError(
                    f"timed out after {timeout:g} s waiting for {what}:\n{self.tail()}"
                )
            time.sleep(POLL_S)

    def wait_healthy(self) -> dict[str, Any]:
        """Wait until the child reports healthy (a worker: joined its group, state rebuilt)."""
        return self.wait_for(lambda _h: True, f"{self.name} health", _START_TIMEOUT_S)[1]

    def peak_rss_mb(self) -> float:
        """The worker's peak resident set size so far (VmHWM), in MiB."""
        status = Path(f"/proc/{self.pid}/status").read_text(encoding="utf-8")
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # reported in kB
        raise BenchError("no VmHWM line in /proc/<pid>/status (Linux only)")

    def tail(self, lines: int = 25) -> str:
        """The last lines of the child's log."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM (a clean Faust shutdown) and wait; SIGKILL only if it does not exit."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class BenchDispatcher(BenchWorker):
    """One ``disruptfeed dispatcher`` process, allowed to deliver to loopback receivers."""

    name = "dispatcher"
    args = ("dispatcher",)

    def __init__(self, settings: Settings, state_dir: Path) -> None:
        super().__init__(settings, state_dir)
        self.settings = self.settings.model_copy(
            update={"dispatcher_port": free_port(), "webhook_allow_private": True}
        )

    @property
    def health_url(self) -> str:
        """The dispatcher API's open /health."""
        return f"http://{self.settings.dispatcher_host}:{self.settings.dispatcher_port}/health"


def drain_rate(worker: BenchWorker, total: int, timeout: float) -> tuple[float, dict[str, Any]]:
    """Time the worker through a pre-loaded backlog of ``total`` events.

    The clock starts the first time /health reports ``counted > 0`` and stops when ``counted``
    reaches ``total``; the events counted before the clock started are left out of the rate.

    Returns:
        Events per second, and what was observed (for the report's detail).
    """
    started, first = worker.wait_for(lambda h: h["counted"] > 0, "the first event", timeout)
    if first["counted"] >= total:
        raise BenchError(f"the whole backlog ({total}) was counted before it could be timed")
    ended, last = worker.wait_for(lambda h: h["counted"] >= total, f"{total} events", timeout)
    if last["counted"] != total or last["dead_lettered"]:
        raise BenchError(
            f"expected {total} events counted; /health says {last['counted']} counted, "
            f"{last['dead_lettered']} dead-lettered"
        )
    rate = (total - first["counted"]) / (ended - started)
    return rate, {"timed_events": total - first["counted"], "seconds": round(ended - started, 3)}
