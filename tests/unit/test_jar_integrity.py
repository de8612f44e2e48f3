"""Kafka jars are checked against Maven Central's SHA-1s at download, and the cache at each start.

No network: a stand-in ``mvn`` copies jars out of a local repository laid out as Maven's (with
the ``.sha1`` files Maven keeps beside what it downloads) and lists them as Maven's
``build-classpath`` does. Everything after that, hashing, comparing, deleting, is the real code.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import sys
from pathlib import Path

import pytest

from disruptfeed._jars import JAR_MANIFEST, JAR_MARKER, resolve_kafka_jars
from disruptfeed.errors import IntegrityError, LauncherError

pytestmark = pytest.mark.unit

VERSION = "4.1.1"
LOG4J = "2.24.3"
ARTIFACTS = {
    "org/apache/kafka/kafka_2.13": ("kafka_2.13", VERSION),
    "org/apache/kafka/kafka-clients": ("kafka-clients", VERSION),
    "org/apache/logging/log4j/log4j-api": ("log4j-api", LOG4J),
    "org/apache/logging/log4j/log4j-slf4j-impl": ("log4j-slf4j-impl", LOG4J),
}

FAKE_MVN = """\
import os, shutil, sys
from pathlib import Path

args = sys.argv[1:]
with open(os.environ["FAKE_MVN_LOG"], "a") as log:
    log.write(" ".join(args) + "\\n")
if "--strict-checksums" not in args:
    sys.exit("called without --strict-checksums")
opts = dict(a[2:].split("=", 1) for a in args if a.startswith("-D"))
out, listed = Path(opts["outputDirectory"]), []
out.mkdir(parents=True, exist_ok=True)
for jar in sorted(Path(os.environ["FAKE_M2"]).rglob("*.jar")):
    listed.append(str(jar))
    if not (out / jar.name).exists():  # as copy-dependencies: never overwrites a release
        shutil.copyfile(jar, out / jar.name)
Path(opts["mdep.outputFile"]).write_text(os.pathsep.join(listed))
"""


def sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()  # Maven Central's checksum


class Repo:
    """A Maven local repository of a few jars, each with the ``.sha1`` Central publishes."""

    def __init__(self, root: Path) -> None:
        self.root = root
        for group_dir, (artifact, version) in ARTIFACTS.items():
            self.publish(group_dir, artifact, version)

    def publish(self, group_dir: str, artifact: str, version: str) -> Path:
        jar = self.root / group_dir / version / f"{artifact}-{version}.jar"
        jar.parent.mkdir(parents=True, exist_ok=True)
        content = f"bytecode of {artifact} {version}".encode()
        jar.write_bytes(content)
        # As Central serves some: the hash, two spaces and the file name.
        jar.with_name(jar.name + ".sha1").write_text(f"{sha1(content)}  {jar.name}\n")
        return jar

    def jar(self, name: str) -> Path:
        return next(self.root.rglob(name))


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Repo:
    """A fake repository, with stand-ins for ``mvn`` and ``java`` alone on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    mvn = bin_dir / "mvn"
    mvn.write_text(f"#!{sys.executable}\n{FAKE_MVN}")
    java = bin_dir / "java"
    java.write_text("#!/bin/sh\nexit 0\n")
    for tool in (mvn, java):
        tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("FAKE_M2", str(tmp_path / "m2"))
    monkeypatch.setenv("FAKE_MVN_LOG", str(tmp_path / "mvn.log"))
    return Repo(tmp_path / "m2")


def mvn_calls(tmp_path: Path) -> list[str]:
    log = tmp_path / "mvn.log"
    return log.read_text().splitlines() if log.exists() else []


def test_good_jars_are_resolved_and_their_hashes_recorded(repo: Repo, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    lib = resolve_kafka_jars(VERSION, cache)
    names = sorted(p.name for p in lib.iterdir())
    assert names == sorted(f"{a}-{v}.jar" for a, v in ARTIFACTS.values())
    manifest = (cache / f"kafka-{VERSION}" / JAR_MANIFEST).read_text().splitlines()
    assert manifest == [f"{sha1((lib / name).read_bytes())}  {name}" for name in names]
    calls = mvn_calls(tmp_path)
    assert len(calls) == 2  # the Kafka tree, then the tree plus the log4j binding
    assert all("copy-dependencies" in c and "build-classpath" in c for c in calls)
    # A later start checks the cache without Maven (which is gone from PATH now).
    (tmp_path / "bin" / "mvn").unlink()
    assert resolve_kafka_jars(VERSION, cache) == lib
    assert len(mvn_calls(tmp_path)) == 2


def test_a_jar_that_differs_from_its_published_sha1_is_named_and_deleted(
    repo: Repo, tmp_path: Path
) -> None:
    bad = repo.jar(f"kafka-clients-{VERSION}.jar")
    published = bad.read_bytes()
    bad.write_bytes(published + b" and a backdoor")
    cache = tmp_path / "cache"
    with pytest.raises(IntegrityError) as caught:
        resolve_kafka_jars(VERSION, cache)
    error = caught.value
    assert isinstance(error, LauncherError)  # the CLI reports it as a failed start
    assert error.path == str(bad)
    assert error.expected == sha1(published)
    assert error.actual == sha1(published + b" and a backdoor")
    for part in (bad.name, sha1(published), error.actual, "published by Maven Central"):
        assert part in str(error)
    # Deleted from the local repository (jar and checksum), so Maven downloads both again;
    # nothing was copied into the cache, nothing marks it complete.
    assert not bad.exists()
    assert not bad.with_name(bad.name + ".sha1").exists()
    root = cache / f"kafka-{VERSION}"
    assert not (root / "lib").exists()
    assert not (root / JAR_MARKER).exists()
    assert [p.name for p in root.iterdir()] == [".lock"]  # the staging directory is gone too

    repo.publish("org/apache/kafka/kafka-clients", "kafka-clients", VERSION)  # re-downloaded
    lib = resolve_kafka_jars(VERSION, cache)
    assert (lib / bad.name).read_bytes() == published


def test_a_cached_jar_changed_after_download_is_caught_at_start(repo: Repo, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    lib = resolve_kafka_jars(VERSION, cache)
    jar = lib / f"kafka_2.13-{VERSION}.jar"
    good = jar.read_bytes()
    jar.write_bytes(good[:-1] + b"!")
    with pytest.raises(IntegrityError) as caught:
        resolve_kafka_jars(VERSION, cache)
    assert caught.value.path == str(jar)
    assert caught.value.expected == sha1(good)
    assert caught.value.actual == sha1(good[:-1] + b"!")
    assert "recorded at download" in str(caught.value)
    assert not jar.exists()
    assert not (cache / f"kafka-{VERSION}" / JAR_MARKER).exists()

    assert resolve_kafka_jars(VERSION, cache) == lib  # resolved again, from the repository
    assert jar.read_bytes() == good
    assert len(mvn_calls(tmp_path)) == 4


def test_a_jar_added_to_the_cache_is_refused_and_deleted(repo: Repo, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    lib = resolve_kafka_jars(VERSION, cache)
    extra = lib / "aaa-agent.jar"  # `lib/*` would put it on the broker's class path
    extra.write_bytes(b"not ours")
    with pytest.raises(IntegrityError, match=re.escape(str(extra))) as caught:
        resolve_kafka_jars(VERSION, cache)
    assert caught.value.actual == sha1(b"not ours")
    assert not extra.exists()


def test_a_jar_missing_from_the_cache_is_reported(repo: Repo, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    lib = resolve_kafka_jars(VERSION, cache)
    (lib / f"log4j-api-{LOG4J}.jar").unlink()
    with pytest.raises(IntegrityError, match=rf"log4j-api-{LOG4J}\.jar: .* got no such file"):
        resolve_kafka_jars(VERSION, cache)
    assert (resolve_kafka_jars(VERSION, cache) / f"log4j-api-{LOG4J}.jar").is_file()


def test_a_cache_from_before_manifests_is_resolved_again(repo: Repo, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    resolve_kafka_jars(VERSION, cache)
    (cache / f"kafka-{VERSION}" / JAR_MANIFEST).unlink()
    resolve_kafka_jars(VERSION, cache)
    assert len(mvn_calls(tmp_path)) == 4
    assert (cache / f"kafka-{VERSION}" / JAR_MANIFEST).is_file()


def test_a_jar_without_a_published_sha1_is_not_trusted(repo: Repo, tmp_path: Path) -> None:
    jar = repo.jar(f"log4j-slf4j-impl-{LOG4J}.jar")
    jar.with_name(jar.name + ".sha1").unlink()
    with pytest.raises(LauncherError, match="no published SHA-1") as caught:
        resolve_kafka_jars(VERSION, tmp_path / "cache")
    assert not isinstance(caught.value, IntegrityError)
    assert str(jar.parent) in str(caught.value)  # what to delete so Maven fetches it again
    assert jar.exists()  # not ours to delete: it may be a jar someone installed by hand
    assert os.listdir(tmp_path / "cache" / f"kafka-{VERSION}") == [".lock"]
