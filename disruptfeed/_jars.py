"""Resolve the jars of an Apache Kafka broker from Maven Central, plus small host helpers.

The Apache download mirrors are not reachable everywhere we run, but Maven Central is, and
``org.apache.kafka:kafka_2.13`` brings the whole broker transitively. Only the SLF4J 1.7 binding
for log4j 2 is missing from that tree (without it the broker logs nothing, not even a fatal
start-up error), and its version must match the log4j that the Kafka release itself ships.
"""

from __future__ import annotations

__all__ = ["JAR_MARKER", "check_tool", "file_lock", "resolve_kafka_jars", "write_atomic"]

import fcntl
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from xml.sax.saxutils import escape

from disruptfeed.errors import LauncherError, MissingToolError

JAR_MARKER = ".complete"
"""Written next to ``lib/`` once every jar is in place, so an interrupted download is redone."""

# Pinned because Maven 3.8 defaults to a dependency plugin too old for these options.
_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
_MVN_TIMEOUT_S = 900.0

_INSTALL_HINTS = {
    "java": "install a JDK 17+ (apt-get install openjdk-17-jre-headless)",
    "mvn": "install Maven (apt-get install maven); it downloads the Kafka jars once",
}

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_LOG4J_API = re.compile(r"^log4j-api-(\d+\.\d+\.\d+)\.jar$")


def check_tool(name: str) -> str:
    """Return the absolute path of ``name`` on PATH.

    Args:
        name: ``"java"`` or ``"mvn"``.

    Returns:
        The resolved executable path.

    Raises:
        MissingToolError: The program is not on PATH; the message says what to install.
    """
    path = shutil.which(name)
    if path is None:
        hint = _INSTALL_HINTS.get(name, f"install {name}")
        raise MissingToolError(
            f"{name!r} was not found on PATH; the embedded Kafka broker needs it: {hint}. "
            "Alternatively set DISRUPTFEED_BOOTSTRAP_SERVERS to use an existing cluster."
        )
    return path


def resolve_kafka_jars(
    version: str, cache_dir: Path, progress: Callable[[str], None] | None = None
) -> Path:
    """Download the broker and tools jars of one Kafka version, once.

    Args:
        version: Kafka release, e.g. ``"4.1.1"``.
        cache_dir: Root of the jar cache; jars land in ``cache_dir/kafka-<version>/lib``.
        progress: Called with a short human-readable line before each slow step.

    Returns:
        The ``lib`` directory, for a ``-cp '<lib>/*'`` class path.

    Raises:
        MissingToolError: ``mvn`` or ``java`` is not installed.
        LauncherError: Maven failed (the message ends with the tail of its output).
    """
    root = cache_dir / f"kafka-{version}"
    lib = root / "lib"
    if (root / JAR_MARKER).is_file() and lib.is_dir():
        return lib
    mvn = check_tool("mvn")
    check_tool("java")  # mvn itself runs on it, and fails obscurely without it
    root.mkdir(parents=True, exist_ok=True)
    # Two processes (pytest-xdist workers, a CLI beside a test run) may resolve at once.
    with file_lock(root / ".lock"):
        if (root / JAR_MARKER).is_file() and lib.is_dir():
            return lib
        say = progress or (lambda _msg: None)
        say(f"Resolving Kafka {version} jars from Maven Central (first run only) ...")
        with tempfile.TemporaryDirectory(prefix="resolve-", dir=root) as tmp:
            work = Path(tmp)
            staged = work / "lib"
            # Pass 1: the Kafka tree alone, to learn which log4j this release ships.
            _copy_dependencies(mvn, work, staged, _pom(version, log4j=None))
            log4j = _log4j_version(staged, version)
            say(f"Adding the log4j {log4j} SLF4J binding ...")
            # Pass 2: the same tree plus the binding; Maven only copies what is new.
            _copy_dependencies(mvn, work, staged, _pom(version, log4j=log4j))
            if not (staged / f"kafka_2.13-{version}.jar").is_file():
                raise LauncherError(f"Maven finished but kafka_2.13-{version}.jar is missing")
            (root / JAR_MARKER).unlink(missing_ok=True)
            if lib.exists():
                shutil.rmtree(lib)
            staged.rename(lib)
        (root / JAR_MARKER).write_text(f"kafka {version}\nlog4j {log4j}\n", encoding="utf-8")
        say(f"Kafka {version} jars ready in {lib}")
    return lib


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing) for the ``with`` block."""
    with path.open("a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so that a concurrent reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _dependency(group: str, artifact: str, version: str, exclude: str | None = None) -> str:
    exclusions = ""
    if exclude is not None:
        ex_group, ex_artifact = exclude.split(":")
        exclusions = (
            "<exclusions><exclusion>"
            f"<groupId>{ex_group}</groupId><artifactId>{ex_artifact}</artifactId>"
            "</exclusion></exclusions>"
        )
    return (
        f"    <dependency><groupId>{group}</groupId><artifactId>{artifact}</artifactId>"
        f"<version>{escape(version)}</version>{exclusions}</dependency>\n"
    )


def _pom(version: str, log4j: str | None) -> str:
    deps = _dependency("org.apache.kafka", "kafka_2.13", version)
    # The command-line tools; connect-runtime drags in Jetty and Jersey they never use.
    deps += _dependency(
        "org.apache.kafka", "kafka-tools", version, exclude="org.apache.kafka:connect-runtime"
    )
    if log4j is not None:
        # log4j-slf4j-impl, not -slf4j2-impl: Kafka logs through SLF4J 1.7.
        for artifact in ("log4j-slf4j-impl", "log4j-core", "log4j-api"):
            deps += _dependency("org.apache.logging.log4j", artifact, log4j)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<project xmlns="http://maven.apache.org/POM/4.0.0">\n'
        "  <modelVersion>4.0.0</modelVersion>\n"
        "  <groupId>local.disruptfeed</groupId>\n"
        "  <artifactId>kafka-broker-jars</artifactId>\n"
        "  <version>0</version>\n"
        "  <packaging>pom</packaging>\n"
        f"  <dependencies>\n{deps}  </dependencies>\n"
        "</project>\n"
    )


def _copy_dependencies(mvn: str, work: Path, out: Path, pom: str) -> None:
    pom_file = work / "pom.xml"
    pom_file.write_text(pom, encoding="utf-8")
    cmd = [
        mvn, "-B", "-q", "-f", str(pom_file),
        f"{_DEPENDENCY_PLUGIN}:copy-dependencies",
        f"-DoutputDirectory={out}",
        "-DincludeScope=runtime",
    ]  # fmt: skip
    try:
        done = subprocess.run(
            cmd,
            cwd=work,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=_MVN_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise LauncherError(f"mvn did not finish within {_MVN_TIMEOUT_S:.0f} s") from exc
    if done.returncode != 0:
        # Debian's mvn emits colour resets even in batch mode.
        output = _ANSI.sub("", done.stdout.decode(errors="replace"))
        tail = "\n".join(line for line in output.splitlines()[-30:] if line.strip())
        raise LauncherError(
            f"mvn failed (exit {done.returncode}) resolving the Kafka jars: is Maven Central "
            f"reachable, and does that Kafka version exist?\n$ {' '.join(cmd)}\n{tail}"
        )


def _log4j_version(lib: Path, version: str) -> str:
    found = sorted(m.group(1) for p in lib.iterdir() if (m := _LOG4J_API.match(p.name)))
    if len(found) != 1:
        raise LauncherError(
            f"cannot tell which log4j Kafka {version} uses: found log4j-api versions {found} "
            f"in its dependency tree (expected exactly one)"
        )
    return found[0]
