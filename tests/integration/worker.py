"""Running the stream worker as a real process against the test broker."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from disruptfeed.broker import free_port
from disruptfeed.settings import Settings

POLL_SECONDS = 0.2
"""How often a wait-for-condition loop looks again; every wait has a deadline."""


class WorkerProcess:
    """``disruptfeed worker`` in a subprocess, with its own port, state dir and log file."""

    def __init__(
        self,
        settings: Settings,
        state_dir: Path,
        rules: Path | None = None,
        env: dict[str, str] | None = None,
        log_format: str | None = None,
    ) -> None:
        self.extra_env = env or {}
        self.log_format = log_format
        self.settings = settings
        self.port = free_port()
        self.state_dir = state_dir
        self.rules = rules
        self.log_path = state_dir / "worker.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.token = secrets.token_urlsafe(16)

    def start(self) -> None:
        env = {
            **os.environ,
            "DISRUPTFEED_BOOTSTRAP_SERVERS": self.settings.bootstrap,
            "DISRUPTFEED_TOPIC_PREFIX": self.settings.topic_prefix,
            "DISRUPTFEED_PARTITIONS": str(self.settings.partitions),
            "DISRUPTFEED_WORKER_PORT": str(self.port),
            "DISRUPTFEED_DATA_DIR": str(self.state_dir),
            "DISRUPTFEED_GRACE_SECONDS": str(self.settings.grace_seconds),
            "DISRUPTFEED_DEDUPE_HORIZON_DAYS": str(self.settings.dedupe_horizon_days),
            "DISRUPTFEED_REPLICATION_FACTOR": str(self.settings.replication_factor),
            "DISRUPTFEED_API_TOKEN": self.token,
        }
        if self.rules is not None:
            env["DISRUPTFEED_RULES_FILE"] = str(self.rules)
        env.update(self.extra_env)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            top = ["--log-format", self.log_format] if self.log_format else []
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "disruptfeed", *top, "worker", "--loglevel", "info"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def get(self, path: str) -> Any:
        url = f"http://127.0.0.1:{self.port}{path}"
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {self.token}"})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return json.load(response)
        except urllib.error.HTTPError as exc:
            exc.close()  # its socket, or pytest reports an unclosed resource
            raise
        except urllib.error.URLError:
            # A worker that crashed answers nothing: say so now, not when a wait times out.
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(
                    f"worker exited with {self.proc.returncode}:\n{self.tail()}"
                ) from None
            raise

    def header(self, path: str, name: str) -> str:
        """One response header of an authorized GET."""
        url = f"http://127.0.0.1:{self.port}{path}"
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(request, timeout=5) as response:
            return str(response.headers[name])

    def status(self, path: str, token: str | None) -> int:
        """The HTTP status of a GET with the given bearer token (None: no header)."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            exc.close()
            return int(exc.code)

    def wait_for(self, condition: Callable[[], bool], what: str, timeout: float = 120) -> None:
        """Poll ``condition`` until it holds; fail with the worker's log tail if it never does."""
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                if condition():
                    return
            except (OSError, urllib.error.URLError, KeyError) as exc:
                last_error = exc
            time.sleep(POLL_SECONDS)
        raise AssertionError(f"timed out waiting for {what} ({last_error}):\n{self.tail()}")

    def wait_healthy(self) -> None:
        def healthy() -> bool:
            return bool(self.get("/health")["status"] == "ok")

        self.wait_for(healthy, "worker health")

    def tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=30)
        self.proc = None

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self.proc = None
