"""A real Prometheus Alertmanager, built from its Go module, for tests and local runs.

Docker and GitHub downloads are not reachable everywhere we run, but the Go module proxy is, so
the binary is built from module source once and cached next to the Kafka jars. The module zip
lacks the web UI that ``ui/web.go`` embeds; the API does not need it, so a placeholder will do.

What is built is checked, not trusted: the module's source must hash (Go's ``h1:`` directory
hash, as in ``go.sum``) to the value pinned here from the Go checksum database, which covers its
``go.sum``; go builds with ``-mod=readonly`` and checksum checking on, so every dependency must
match that ``go.sum``; ``go mod verify`` then re-hashes the dependencies in the module cache; and
the binary's SHA-256 is recorded and checked whenever the cached binary is used.
"""

from __future__ import annotations

__all__ = [
    "ALERTMANAGER_VERSION",
    "MODULE_SUMS",
    "Alertmanager",
    "alertmanager_binary",
    "find_go",
    "module_hash",
]

import base64
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, Self

from disruptfeed._jars import file_lock, write_atomic
from disruptfeed.broker import free_port
from disruptfeed.errors import IntegrityError, LauncherError, MissingToolError

log = logging.getLogger(__name__)

ALERTMANAGER_VERSION: Final = "0.35.0"
"""The Alertmanager release built by default (its module needs Go 1.26 or newer)."""

_MODULE: Final = "github.com/prometheus/alertmanager"

MODULE_SUMS: Final = {
    # The module's go.sum line, from the Go checksum database (sum.golang.org): whatever
    # GOSUMDB or GONOSUMDB say where we build, the source must hash to this. Add a line for
    # each version you build: `go mod download -json github.com/prometheus/alertmanager@vX`.
    "0.35.0": "h1:nbXMjr+P2JaoFd7aHNDxKifEwTPN+TWxM0gNPonuH5w=",
}
"""Known-good ``h1:`` hashes of the Alertmanager module, by version."""

_FALLBACK_GO: Final = "/usr/local/go/bin/go"
_GO_TIMEOUT_S: Final = 900.0
_TAIL_LINES: Final = 20
_POLL_S: Final = 0.1
_DIGEST_FILE: Final = "alertmanager.sha256"
# Settings that would let go skip the checksum database; GOFLAGS is set outright.
_UNCHECKED_ENV: Final = ("GONOSUMDB", "GONOSUMCHECK", "GONOVERIFY", "GOPRIVATE", "GOINSECURE")
_MISMATCH = re.compile(
    r"verifying (?P<module>\S+?)(?:/go\.mod)?: checksum mismatch\s+downloaded: (?P<actual>\S+)"
    r"\s+(?:go\.sum|sum\.golang\.org):\s+(?P<expected>\S+)"
)
_MODIFIED = re.compile(r"^(?P<module>\S+ \S+): (?:dir|zip) has been modified \((?P<path>.+)\)$")

# Never through an HTTP(S)_PROXY from the environment: the server is on loopback.
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def find_go() -> str | None:
    """Return the ``go`` executable: from PATH, else the official tarball's location, else None."""
    return shutil.which("go") or (_FALLBACK_GO if os.access(_FALLBACK_GO, os.X_OK) else None)


def alertmanager_binary(cache_dir: Path, version: str = ALERTMANAGER_VERSION) -> Path:
    """Return the cached Alertmanager binary of ``version``, building it first if missing.

    Args:
        cache_dir: Root of the project's cache; the binary lands in
            ``cache_dir/alertmanager-<version>/alertmanager``.
        version: Alertmanager release without the ``v``, e.g. ``"0.35.0"``.

    Returns:
        The path of the executable.

    Raises:
        MissingToolError: The binary is not cached and no ``go`` is installed.
        IntegrityError: The module or a dependency does not hash to its pinned or ``go.sum``
            value, or the cached binary changed since it was built. What was bad has been
            deleted, so the next call downloads (or builds) it again.
        LauncherError: Downloading or building failed (the message ends with go's output).
    """
    root = cache_dir / f"alertmanager-{version}"
    binary = root / "alertmanager"
    if _check_cached(binary):
        return binary
    go = find_go()
    if go is None:
        raise MissingToolError(
            f"'go' was not found on PATH or at {_FALLBACK_GO}; building Alertmanager {version} "
            "needs Go 1.26+: apt-get install golang-go (if new enough) or https://go.dev/dl"
        )
    root.mkdir(parents=True, exist_ok=True)
    # Two processes (pytest-xdist workers, a CLI beside a test run) may build at once.
    with file_lock(cache_dir / f"alertmanager-{version}.lock"):
        if _check_cached(binary):
            return binary
        for stale in root.glob("build-*"):  # left by a build that was killed
            shutil.rmtree(stale, ignore_errors=True)
        log.info("building Alertmanager %s from its Go module (about 90 s, once)", version)
        started = time.monotonic()
        # Inside root, so the final rename stays on one file system and is atomic.
        with tempfile.TemporaryDirectory(prefix="build-", dir=root) as tmp:
            work, env = Path(tmp), _go_env(cache_dir)
            download = ["mod", "download", "-json", f"{_MODULE}@v{version}"]
            info, src = json.loads(_go(go, download, work, env)), work / "src"
            shutil.copytree(info["Dir"], src)
            # The module cache is read-only and copytree keeps modes (module zips hold no links).
            for path in (src, *src.rglob("*")):
                path.chmod(path.stat().st_mode | 0o200)
            _check_module(info, src, version)
            dist = src / "ui" / "app" / "dist"
            dist.mkdir(parents=True, exist_ok=True)
            (dist / "index.html").write_text("<p>UI not built; use the API.</p>\n", "utf-8")
            staged = work / "alertmanager"
            # Stamped as a release build would be, so `alertmanager --version` tells the truth.
            stamp = f"-ldflags=-X github.com/prometheus/common/version.Version={version}"
            _go(go, ["build", stamp, "-o", str(staged), "./cmd/alertmanager"], src, env)
            # Dependencies were checked against go.sum as go downloaded them; ones it found in
            # the module cache are re-hashed here, in case they changed there since.
            _verify_dependencies(go, src, env)
            binary.unlink(missing_ok=True)
            write_atomic(root / _DIGEST_FILE, f"{_sha256(staged)}  alertmanager\n")
            staged.replace(binary)
        log.info("Alertmanager %s built in %.0f s: %s", version, time.monotonic() - started, binary)
    return binary


def module_hash(directory: Path, module: str, version: str) -> str:
    """Return the ``h1:`` hash of a module's extracted source, as ``go.sum`` records it.

    Go's ``dirhash.Hash1``: the SHA-256 of one line ``<sha256 hex>  <module>@v<version>/<path>``
    per file, sorted by that name, in base64.

    Args:
        directory: The module's root (as extracted from its zip: no VCS or build files).
        module: Its module path, e.g. ``github.com/prometheus/alertmanager``.
        version: Its version without the ``v``.
    """
    names = sorted(
        (f"{module}@v{version}/{path.relative_to(directory).as_posix()}", path)
        for path in directory.rglob("*")
        if path.is_file()
    )
    summary = "".join(f"{_sha256(path)}  {name}\n" for name, path in names)
    digest = hashlib.sha256(summary.encode()).digest()
    return "h1:" + base64.b64encode(digest).decode()


def _sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _check_cached(binary: Path) -> bool:
    """True if ``binary`` is there and unchanged since it was built; False if never built.

    A binary without a recorded digest (built before they were recorded) counts as never built.
    """
    recorded = binary.with_name(_DIGEST_FILE)
    if not (binary.is_file() and recorded.is_file()):
        return False
    expected = recorded.read_text(encoding="utf-8").split(" ", 1)[0]
    actual = _sha256(binary)
    if actual == expected:
        return True
    binary.unlink(missing_ok=True)
    recorded.unlink(missing_ok=True)
    raise IntegrityError(
        binary, f"SHA-256 {expected}", actual, f"recorded when it was built, in {recorded}",
        "it was deleted, so the next start builds it again",
    )  # fmt: skip


def _check_module(info: dict[str, Any], src: Path, version: str) -> None:
    """Check the downloaded module, and our copy of it, against the pinned ``h1:`` hash."""
    expected = MODULE_SUMS.get(version, info["Sum"])  # unpinned: what go checked with GOSUMDB
    source = (
        "pinned in disruptfeed/_alertmanager.py from the Go checksum database"
        if version in MODULE_SUMS
        else "go's Sum, checked against the Go checksum database"
    )
    for actual in (info["Sum"], module_hash(src, _MODULE, version)):
        if actual != expected:
            _discard_module(info)
            raise IntegrityError(
                f"{_MODULE}@v{version} ({info['Dir']})", expected, actual, source,
                "it was deleted from the Go module cache, so the next start downloads it again",
            )  # fmt: skip


def _discard_module(info: dict[str, Any]) -> None:
    """Delete one module's files from the (read-only) module cache."""
    for key in ("Dir", "Zip"):
        if path := info.get(key):
            _remove(Path(path))
    if zip_file := info.get("Zip"):
        _remove(Path(zip_file).with_suffix(".ziphash"))


def _remove(path: Path) -> None:
    if path.is_dir():
        for child in (path, *path.rglob("*")):
            if not child.is_symlink():
                child.chmod(child.stat().st_mode | 0o200)
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _verify_dependencies(go: str, src: Path, env: dict[str, str]) -> None:
    done = subprocess.run(
        [go, "mod", "verify"], cwd=src, env=env, stdin=subprocess.DEVNULL, capture_output=True,
        timeout=_GO_TIMEOUT_S, check=False,
    )  # fmt: skip
    if done.returncode == 0:
        return
    output = (done.stdout + done.stderr).decode(errors="replace")
    modified = [m for line in output.splitlines() if (m := _MODIFIED.match(line.strip()))]
    if not modified:
        raise LauncherError(f"$ go mod verify failed (exit {done.returncode}):\n{output}")
    for match in modified:
        _remove(Path(match["path"]))
    raise IntegrityError(
        ", ".join(m["module"] for m in modified), "the hash in Alertmanager's go.sum",
        "files that hash differently", "go mod verify",
        "they were deleted from the Go module cache, so the next start downloads them again",
    )  # fmt: skip


def _go_env(cache_dir: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in _UNCHECKED_ENV}
    # A newer toolchain is never fetched behind our back. -mod=readonly: go.mod and go.sum are
    # used as the module ships them, so every dependency must match its go.sum hash (and a
    # user's -mod=vendor or -mod=mod cannot change that).
    env["GOTOOLCHAIN"] = "local"
    env["GOFLAGS"] = "-mod=readonly -buildvcs=false"
    if env.get("GOSUMDB", "").strip() == "off":
        # Only consulted for the module itself, whose hash is pinned anyway; but never off.
        env["GOSUMDB"] = "sum.golang.org"
    if not env.get("HOME") and not env.get("XDG_CACHE_HOME"):
        # Without either, go has no default GOCACHE/GOPATH and refuses to build.
        env = {"GOPATH": str(cache_dir / "go"), "GOCACHE": str(cache_dir / "go-build")} | env
    return env


def _go(go: str, args: list[str], cwd: Path, env: dict[str, str]) -> str:
    cmd = [go, *args]
    try:
        done = subprocess.run(
            cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True,
            timeout=_GO_TIMEOUT_S, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        raise LauncherError(f"$ {' '.join(cmd)} took over {_GO_TIMEOUT_S:.0f} s") from exc
    if done.returncode != 0:
        output = (done.stdout + done.stderr).decode(errors="replace")
        if mismatch := _MISMATCH.search(output):
            # go discards a download whose hash differs; nothing of it reaches the cache.
            raise IntegrityError(
                mismatch["module"], mismatch["expected"], mismatch["actual"],
                "Alertmanager's go.sum or the Go checksum database",
                f"go discarded the download; if it happens again, something between here and "
                f"the module proxy alters files\n$ {' '.join(cmd)}",
            )  # fmt: skip
        tail = "\n".join(output.splitlines()[-_TAIL_LINES:])
        too_old = "requires go >=" in output  # and GOTOOLCHAIN=local forbids fetching one
        hint = "\nInstall a newer Go from https://go.dev/dl." if too_old else ""
        raise LauncherError(
            f"building Alertmanager failed (exit {done.returncode}):\n$ {' '.join(cmd)}\n"
            f"{tail}{hint}"
        )
    return done.stdout.decode()


class Alertmanager:
    """An Alertmanager subprocess on 127.0.0.1 that sends every alert to one webhook.

    Each distinct label set is its own notification group (``group_by: ['...']``) unless
    ``group_by`` says otherwise. Use it as a context manager to start and stop it.

    Args:
        binary: The executable, e.g. from :func:`alertmanager_binary`.
        work_dir: Where the config, storage (``data/``) and ``alertmanager.log`` go.
        webhook_url: Receives every notification, resolved ones included.
        port: HTTP port; None picks a free one.
        group_wait: Delay before a new group's first notification (a Prometheus duration).
        group_interval: Delay between notifications about changes to a group.
        repeat_interval: Delay before an unchanged notification is sent again.
        resolve_timeout: ``endsAt`` given to alerts posted without one.
        group_by: Labels that form a group; ``("...",)`` means all labels.
    """

    def __init__(
        self,
        binary: Path,
        work_dir: Path,
        webhook_url: str,
        *,
        port: int | None = None,
        group_wait: str = "1s",
        group_interval: str = "1s",
        repeat_interval: str = "1h",
        resolve_timeout: str = "5m",
        group_by: Sequence[str] = ("...",),
    ) -> None:
        self.binary = binary
        self.work_dir = work_dir
        self.webhook_url = webhook_url
        self.port = free_port() if port is None else port
        self.group_by = tuple(group_by)
        self._resolve_timeout = resolve_timeout
        self._route = {"receiver": "webhook", "group_by": list(self.group_by)}
        self._route |= {"group_wait": group_wait, "group_interval": group_interval}
        self._route |= {"repeat_interval": repeat_interval}
        self.config_file = work_dir / "alertmanager.yml"
        self.log_file = work_dir / "alertmanager.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL of the HTTP API, e.g. ``http://127.0.0.1:9093``."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> None:
        """Write the config, start the process and wait until ``/-/ready`` answers 200.

        Raises:
            LauncherError: It is already running, exited during start-up or was not ready
                within ``timeout`` seconds (then it is stopped; the message ends with its log).
        """
        if self._proc is not None and self._proc.poll() is None:
            raise LauncherError(f"Alertmanager already runs at {self.url} (pid {self._proc.pid})")
        self.work_dir.mkdir(parents=True, exist_ok=True)
        # JSON is YAML too, and json.dumps quotes whatever a URL may contain.
        receiver = {"url": self.webhook_url, "send_resolved": True}
        config = {
            "global": {"resolve_timeout": self._resolve_timeout},
            "route": self._route,
            "receivers": [{"name": "webhook", "webhook_configs": [receiver]}],
        }
        write_atomic(self.config_file, json.dumps(config, indent=2) + "\n")
        cmd = [
            str(self.binary),
            f"--config.file={self.config_file}",
            f"--storage.path={self.work_dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            f"--web.external-url={self.url}",  # else links in notifications use the host name
            "--cluster.listen-address=",  # no gossip: it would bind 9094 on every interface
        ]
        if self.log_file.exists():  # so the tail on failure shows this run only
            self.log_file.replace(self.log_file.with_name("alertmanager.log.1"))
        with self.log_file.open("ab") as out:
            self._proc = subprocess.Popen(
                cmd, cwd=self.work_dir, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        self._await_ready(timeout)

    def _await_ready(self, timeout: float) -> None:
        proc = self._proc
        assert proc is not None
        deadline, last_error = time.monotonic() + timeout, "no answer yet"
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self._proc = None
                raise LauncherError(f"Alertmanager exited (exit {proc.returncode}).{self._tail()}")
            try:
                with _HTTP.open(f"{self.url}/-/ready", timeout=2):
                    return  # urllib raises HTTPError for anything but 2xx, 503 while loading
            except urllib.error.HTTPError as exc:
                exc.close()  # its socket, or a ResourceWarning follows
                last_error = f"HTTP {exc.code}"
            except OSError as exc:  # URLError included: refused while it binds
                last_error = str(exc)
            time.sleep(_POLL_S)
        self.stop()
        raise LauncherError(
            f"Alertmanager was not ready at {self.url} within {timeout:g} s ({last_error}), "
            f"so it was stopped.{self._tail()}"
        )

    def alerts(self) -> list[dict[str, Any]]:
        """Return what ``GET /api/v2/alerts`` lists (active, silenced and inhibited alerts)."""
        return list(self._request("GET", "/api/v2/alerts"))

    def post_alerts(self, alerts: Sequence[dict[str, Any]]) -> None:
        """Send alerts as Prometheus does, with ``POST /api/v2/alerts``.

        Raises:
            LauncherError: Alertmanager refused them (the message carries its reason).
        """
        self._request("POST", "/api/v2/alerts", list(alerts))

    def _request(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 -- always our own http:// URL
            f"{self.url}{path}", data=data, method=method,
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )  # fmt: skip
        try:
            with _HTTP.open(request, timeout=10) as response:
                payload = response.read()
        except urllib.error.HTTPError as exc:
            with exc:
                reason = exc.read().decode(errors="replace").strip()
            raise LauncherError(f"{method} {path} answered HTTP {exc.code}: {reason}") from exc
        return json.loads(payload) if payload.strip() else None

    def stop(self, timeout: float = 10) -> None:
        """Stop it with SIGTERM, with SIGKILL only after ``timeout`` seconds; idempotent."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            log.warning("Alertmanager %d ignored SIGTERM for %g s; killed", proc.pid, timeout)
            proc.kill()
            proc.wait(timeout=10)

    def __enter__(self) -> Self:
        if self._proc is None:
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _tail(self) -> str:
        try:
            lines = self.log_file.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return f"\n(no log at {self.log_file})"
        text = "\n".join(lines[-_TAIL_LINES:])
        hint = "\nThe port was taken; pass another." if "address already in use" in text else ""
        return f"\nLast lines of {self.log_file}:\n{text}{hint}"
