"""Resolve the jars of an Apache Kafka broker from Maven Central, plus small host helpers.

The Apache download mirrors are not reachable everywhere we run, but Maven Central is, and
``org.apache.kafka:kafka_2.13`` brings the whole broker transitively. Only the SLF4J 1.7 binding
for log4j 2 is missing from that tree (without it the broker logs nothing, not even a fatal
start-up error), and its version must match the log4j that the Kafka release itself ships.

Every jar is checked, not trusted: Maven runs with ``--strict-checksums`` (a download whose
SHA-1 differs from the ``.sha1`` Maven Central publishes next to it fails), each copied jar is
then hashed again against the ``.sha1`` kept beside its original in Maven's local repository
(which a download before this run, or a later change there, would otherwise slip past), and the
hashes go into a manifest that every start checks the cache against (``verify_jar_cache``).
"""

from __future__ import annotations

__all__ = [
    "JAR_MANIFEST",
    "JAR_MARKER",
    "check_tool",
    "file_lock",
    "resolve_kafka_jars",
    "sha1_of",
    "verify_jar_cache",
    "write_atomic",
]

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from xml.sax.saxutils import escape

from disruptfeed.errors import IntegrityError, LauncherError, MissingToolError

JAR_MARKER = ".complete"
"""Written next to ``lib/`` once every jar is in place, so an interrupted download is redone."""

JAR_MANIFEST = "jars.sha1"
"""Next to ``lib/``: the SHA-1 of every jar, checked at download (``sha1sum -c`` format)."""

# Pinned because Maven 3.8 defaults to a dependency plugin too old for these options.
_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
_MVN_TIMEOUT_S = 900.0

_INSTALL_HINTS = {
    "java": "install a JDK 17+ (apt-get install openjdk-17-jre-headless)",
    "mvn": "install Maven (apt-get install maven); it downloads the Kafka jars once",
}

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_LOG4J_API = re.compile(r"^log4j-api-(\d+\.\d+\.\d+)\.jar$")
_SHA1 = re.compile(r"^\s*([0-9a-fA-F]{40})\b")
_MANIFEST_LINE = re.compile(r"^([0-9a-f]{40})  ([^/\\]+\.jar)$")
_AGAIN = "the file was deleted, so the next start fetches it again"


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
        IntegrityError: A jar differs from the SHA-1 published for it (at download) or recorded
            for it (in the cache); the file was deleted, so the next call fetches it again.
        LauncherError: Maven failed (the message ends with the tail of its output).
    """
    root = cache_dir / f"kafka-{version}"
    lib = root / "lib"
    if _is_complete(root):
        # Locked: a concurrent call that finds a bad jar deletes it and the marker.
        with file_lock(root / ".lock"):
            if _is_complete(root):
                verify_jar_cache(root)
                return lib
    mvn = check_tool("mvn")
    check_tool("java")  # mvn itself runs on it, and fails obscurely without it
    root.mkdir(parents=True, exist_ok=True)
    # Two processes (pytest-xdist workers, a CLI beside a test run) may resolve at once.
    with file_lock(root / ".lock"):
        if _is_complete(root):
            verify_jar_cache(root)
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
            originals = _copy_dependencies(mvn, work, staged, _pom(version, log4j=log4j))
            if not (staged / f"kafka_2.13-{version}.jar").is_file():
                raise LauncherError(f"Maven finished but kafka_2.13-{version}.jar is missing")
            say(f"Checking {len(originals)} jars against the SHA-1 Maven Central publishes ...")
            manifest = verify_against_repository(staged, originals)
            (root / JAR_MARKER).unlink(missing_ok=True)
            if lib.exists():
                shutil.rmtree(lib)
            staged.rename(lib)
        write_atomic(root / JAR_MANIFEST, _format_manifest(manifest))
        (root / JAR_MARKER).write_text(f"kafka {version}\nlog4j {log4j}\n", encoding="utf-8")
        say(f"Kafka {version} jars ready in {lib}")
    return lib


def sha1_of(path: Path) -> str:
    """Return the SHA-1 of a file's bytes, in lower-case hex (as Maven's ``.sha1`` files)."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha1").hexdigest()


def verify_against_repository(staged: Path, originals: list[Path]) -> dict[str, str]:
    """Check each copied jar against the ``.sha1`` beside its original in Maven's repository.

    Maven's ``--strict-checksums`` checks a jar only as it downloads it; one already in the
    local repository (from an earlier run, or changed there since) is copied unchecked. Maven
    stores the ``.sha1`` Maven Central publishes beside each jar it downloads, so that is what
    the copy in ``staged`` must hash to.

    Args:
        staged: The directory Maven copied the jars into.
        originals: Each jar's path in the local repository, as Maven's class path lists them.

    Returns:
        The SHA-1 of every jar in ``staged``, by file name.

    Raises:
        IntegrityError: A copy differs from its published SHA-1. The copy and the original
            (with its ``.sha1``) are deleted, so that the next run downloads both again.
        LauncherError: A jar has no published SHA-1 to check against, or Maven copied a jar
            that is not on its class path.
    """
    by_name = {original.name: original for original in originals}
    copied = {path.name for path in staged.glob("*.jar")}
    if stray := sorted(copied - by_name.keys()):
        raise LauncherError(f"Maven copied jars that are not on its class path: {stray}")
    manifest: dict[str, str] = {}
    for name in sorted(copied):
        original, copy = by_name[name], staged / name
        published = original.with_name(original.name + ".sha1")
        try:
            expected = _SHA1.match(published.read_text(encoding="ascii", errors="replace"))
        except FileNotFoundError:
            expected = None
        if expected is None:
            raise LauncherError(
                f"{original} has no published SHA-1 to check it against ({published} is "
                f"missing or unreadable). Delete {original.parent} so that Maven downloads it "
                "again together with its checksum."
            )
        actual = sha1_of(copy)
        if actual != expected.group(1).lower():
            for bad in (copy, original, published):
                bad.unlink(missing_ok=True)
            raise IntegrityError(
                original, expected.group(1).lower(), actual,
                f"published by Maven Central: {published}", _AGAIN,
            )  # fmt: skip
        manifest[name] = actual
    return manifest


def verify_jar_cache(root: Path) -> None:
    """Check ``root/lib`` holds exactly the jars in ``root/jars.sha1``, each unchanged.

    Cheap enough for every start (hashing Kafka's ~45 MB of jars takes well under a second), so
    a jar changed after it was downloaded is not run.

    Raises:
        IntegrityError: A jar differs from its recorded SHA-1, is missing, or is not in the
            manifest (a class path of ``lib/*`` would load it). The odd file and the
            completion marker are deleted, so the next start resolves the jars again.
    """
    lib = root / "lib"
    manifest = _parse_manifest(root / JAR_MANIFEST)
    present = {path.name for path in lib.glob("*.jar")}
    problem: tuple[str, str, str] | None = None
    if extra := sorted(present - manifest.keys()):
        problem = (extra[0], "no such jar (it is not in the manifest)", sha1_of(lib / extra[0]))
    elif missing := sorted(manifest.keys() - present):
        problem = (missing[0], manifest[missing[0]], "no such file")
    else:
        for name in sorted(present):
            if (actual := sha1_of(lib / name)) != manifest[name]:
                problem = (name, manifest[name], actual)
                break
    if problem is None:
        return
    name, expected, actual = problem
    (root / JAR_MARKER).unlink(missing_ok=True)
    (lib / name).unlink(missing_ok=True)
    raise IntegrityError(
        lib / name, expected, actual,
        f"recorded at download in {root / JAR_MANIFEST}", _AGAIN,
    )  # fmt: skip


def _is_complete(root: Path) -> bool:
    # A cache from before manifests existed has no record of its hashes: resolve it again.
    return (
        all((root / name).is_file() for name in (JAR_MARKER, JAR_MANIFEST))
        and (root / "lib").is_dir()
    )


def _format_manifest(manifest: dict[str, str]) -> str:
    return "".join(f"{digest}  {name}\n" for name, digest in sorted(manifest.items()))


def _parse_manifest(path: Path) -> dict[str, str]:
    manifest: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if (entry := _MANIFEST_LINE.match(line)) is None:
            (path.parent / JAR_MARKER).unlink(missing_ok=True)
            raise IntegrityError(
                path, "lines of '<sha1>  <name>.jar'", f"line {number}: {line[:80]!r}",
                "the manifest written at download", "the next start resolves the jars again",
            )  # fmt: skip
        manifest[entry.group(2)] = entry.group(1)
    return manifest


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


def _copy_dependencies(mvn: str, work: Path, out: Path, pom: str) -> list[Path]:
    """Copy the pom's runtime dependencies into ``out``; return their local-repository paths."""
    pom_file, class_path = work / "pom.xml", work / "classpath.txt"
    pom_file.write_text(pom, encoding="utf-8")
    class_path.unlink(missing_ok=True)
    cmd = [
        # --strict-checksums: a download whose SHA-1 differs from the published one fails.
        mvn, "-B", "-q", "--strict-checksums", "-f", str(pom_file),
        f"{_DEPENDENCY_PLUGIN}:copy-dependencies",
        # The same tree's jars as paths in the local repository, where their .sha1 files are.
        f"{_DEPENDENCY_PLUGIN}:build-classpath",
        f"-DoutputDirectory={out}",
        f"-Dmdep.outputFile={class_path}",
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
        hint = (
            "a download did not match its published checksum (retry; if it happens again, "
            "something between here and Maven Central alters files)"
            if "checksum" in output.lower()
            else "is Maven Central reachable, and does that Kafka version exist?"
        )
        raise LauncherError(
            f"mvn failed (exit {done.returncode}) resolving the Kafka jars: {hint}\n"
            f"$ {' '.join(cmd)}\n{tail}"
        )
    try:
        listed = class_path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise LauncherError(f"mvn wrote no class path to {class_path}\n$ {' '.join(cmd)}") from None
    return [Path(entry) for entry in listed.split(os.pathsep) if entry]


def _log4j_version(lib: Path, version: str) -> str:
    found = sorted(m.group(1) for p in lib.iterdir() if (m := _LOG4J_API.match(p.name)))
    if len(found) != 1:
        raise LauncherError(
            f"cannot tell which log4j Kafka {version} uses: found log4j-api versions {found} "
            f"in its dependency tree (expected exactly one)"
        )
    return found[0]
