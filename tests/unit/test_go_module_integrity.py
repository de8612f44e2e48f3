"""The Alertmanager build is checked: module hash pinned, go.sum enforced, binary recorded.

No network and no compiler: a stand-in ``go`` answers ``mod download -json`` with a module laid
out in a temporary module cache, "builds" by writing a file, and answers ``mod verify`` as go
does. The hashing, comparing and deleting are the real code; ``module_hash`` is also checked
against a value computed with coreutils and, in the session that pinned it, against go's own.
"""

from __future__ import annotations

import hashlib
import json
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from disruptfeed._alertmanager import MODULE_SUMS, alertmanager_binary, module_hash
from disruptfeed.errors import IntegrityError, LauncherError

pytestmark = pytest.mark.unit

MODULE = "github.com/prometheus/alertmanager"
VERSION = "9.9.9"  # not a real release: each test pins (or not) what it needs

FAKE_GO = """\
import json, os, sys
from pathlib import Path

args = sys.argv[1:]
with open(os.environ["FAKE_GO_LOG"], "a") as log:
    seen = {k: os.environ.get(k) for k in ("GOFLAGS", "GOSUMDB", "GONOSUMDB", "GOPRIVATE")}
    log.write(json.dumps({"args": args, "env": seen}) + "\\n")
if args[:3] == ["mod", "download", "-json"]:
    print(json.dumps({"Path": args[3].split("@")[0], "Version": args[3].split("@")[1],
                      "Dir": os.environ["FAKE_DIR"], "Zip": os.environ["FAKE_ZIP"],
                      "Sum": os.environ["FAKE_SUM"]}))
elif args[0] == "build":
    if os.environ.get("FAKE_BUILD_MISMATCH"):
        sys.exit("go: downloading example.com/dep v1.0.0\\n"
                 "verifying example.com/dep@v1.0.0: checksum mismatch\\n"
                 "\\tdownloaded: h1:bad=\\n\\tgo.sum:     h1:good=\\n\\nSECURITY ERROR\\n...")
    Path(args[args.index("-o") + 1]).write_bytes(b"an alertmanager binary")
elif args == ["mod", "verify"]:
    modified = os.environ.get("FAKE_MODIFIED")
    if modified:
        sys.exit(f"example.com/dep v1.0.0: dir has been modified ({modified})")
    print("all modules verified")
else:
    sys.exit(f"unexpected: {args}")
"""


class ModCache:
    """A Go module cache holding the fake Alertmanager module and one dependency."""

    def __init__(self, root: Path) -> None:
        self.dir = root / f"{MODULE}@v{VERSION}"
        (self.dir / "cmd" / "alertmanager").mkdir(parents=True)
        (self.dir / "go.mod").write_text(f"module {MODULE}\n")
        (self.dir / "go.sum").write_text("example.com/dep v1.0.0 h1:good=\n")
        (self.dir / "cmd" / "alertmanager" / "main.go").write_text("package main\n")
        self.zip = root / "cache" / "download" / MODULE / "@v" / f"v{VERSION}.zip"
        self.zip.parent.mkdir(parents=True)
        self.zip.write_bytes(b"zip")
        self.zip.with_suffix(".ziphash").write_text("h1:whatever")
        self.dep = root / "example.com" / "dep@v1.0.0"
        self.dep.mkdir(parents=True)
        (self.dep / "dep.go").write_text("package dep\n")
        self.good_sum = module_hash(self.dir, MODULE, VERSION)
        for path in (*root.rglob("*"), root):  # go keeps its module cache read-only
            path.chmod(path.stat().st_mode & ~0o222)


@pytest.fixture
def modcache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModCache]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    go = bin_dir / "go"
    go.write_text(f"#!{sys.executable}\n{FAKE_GO}")
    go.chmod(go.stat().st_mode | stat.S_IXUSR)
    cache = ModCache(tmp_path / "gomod")
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("FAKE_GO_LOG", str(tmp_path / "go.log"))
    monkeypatch.setenv("FAKE_DIR", str(cache.dir))
    monkeypatch.setenv("FAKE_ZIP", str(cache.zip))
    monkeypatch.setenv("FAKE_SUM", cache.good_sum)
    # A user's settings that would skip the checksum database, or re-write go.sum.
    monkeypatch.setenv("GONOSUMDB", "*")
    monkeypatch.setenv("GOPRIVATE", "github.com/*")
    monkeypatch.setenv("GOSUMDB", "off")
    monkeypatch.setenv("GOFLAGS", "-mod=mod")
    monkeypatch.setitem(MODULE_SUMS, VERSION, cache.good_sum)
    yield cache
    for path in tmp_path.rglob("*"):  # so pytest can clean up the read-only tree
        if not path.is_symlink():
            path.chmod(path.stat().st_mode | 0o200)


def go_calls(tmp_path: Path) -> list[dict[str, Any]]:
    log = tmp_path / "go.log"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_module_hash_is_gos_h1_dirhash(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "go.mod").write_text("module example.com/m\n")
    (tmp_path / "a" / "b.go").write_text("package b\n")
    # ( for f in a/b.go go.mod; do printf '%s  %s\n' "$(sha256sum $f | cut -d' ' -f1)" \
    #   "example.com/m@v1.0.0/$f"; done ) | sha256sum | cut -d' ' -f1 | xxd -r -p | base64
    expected = "h1:rlnk9J6IkMFYxgLjJ4PmqawKtX8/V3WTV8D9KAEmLkE="
    assert module_hash(tmp_path, "example.com/m", "1.0.0") == expected
    assert MODULE_SUMS["0.35.0"].startswith("h1:")  # the release we build is pinned


def test_a_module_matching_its_pin_is_built_with_checksums_enforced(
    modcache: ModCache, tmp_path: Path
) -> None:
    binary = alertmanager_binary(tmp_path / "cache", VERSION)
    assert binary.read_bytes() == b"an alertmanager binary"
    digest = hashlib.sha256(b"an alertmanager binary").hexdigest()
    assert (binary.parent / "alertmanager.sha256").read_text() == f"{digest}  alertmanager\n"
    calls = go_calls(tmp_path)
    assert [c["args"][0] + " " + c["args"][1] for c in calls] == [
        "mod download",
        f"build -ldflags=-X github.com/prometheus/common/version.Version={VERSION}",
        "mod verify",
    ]
    for call in calls:
        assert call["env"] == {
            "GOFLAGS": "-mod=readonly -buildvcs=false",
            "GOSUMDB": "sum.golang.org",
            "GONOSUMDB": None,
            "GOPRIVATE": None,
        }
    # Used again: checked against its recorded digest, nothing rebuilt.
    assert alertmanager_binary(tmp_path / "cache", VERSION) == binary
    assert len(go_calls(tmp_path)) == 3


def test_module_source_changed_in_the_cache_is_named_and_deleted(
    modcache: ModCache, tmp_path: Path
) -> None:
    main = modcache.dir / "cmd" / "alertmanager" / "main.go"
    main.chmod(0o644)
    main.write_text("package main // and a backdoor\n")
    with pytest.raises(IntegrityError) as caught:
        alertmanager_binary(tmp_path / "cache", VERSION)
    error = caught.value
    assert isinstance(error, LauncherError)
    assert f"{MODULE}@v{VERSION}" in error.path
    assert error.expected == modcache.good_sum
    assert error.actual.startswith("h1:")
    assert error.actual != modcache.good_sum
    assert "pinned in disruptfeed/_alertmanager.py" in str(error)
    assert not modcache.dir.exists()
    assert not modcache.zip.exists()
    assert not modcache.zip.with_suffix(".ziphash").exists()
    assert not (tmp_path / "cache" / f"alertmanager-{VERSION}" / "alertmanager").exists()
    assert [c["args"][0] for c in go_calls(tmp_path)] == ["mod"]  # never built


def test_a_download_that_differs_from_the_pin_is_refused(
    modcache: ModCache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(MODULE_SUMS, VERSION, "h1:pinnedpinnedpinnedpinnedpinnedpinnedpinnedp=")
    with pytest.raises(IntegrityError) as caught:
        alertmanager_binary(tmp_path / "cache", VERSION)
    assert caught.value.expected == MODULE_SUMS[VERSION]
    assert caught.value.actual == modcache.good_sum
    assert not modcache.dir.exists()


def test_a_dependency_that_differs_from_go_sum_stops_the_build(
    modcache: ModCache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_BUILD_MISMATCH", "1")
    with pytest.raises(IntegrityError) as caught:
        alertmanager_binary(tmp_path / "cache", VERSION)
    assert caught.value.path == "example.com/dep@v1.0.0"
    assert (caught.value.expected, caught.value.actual) == ("h1:good=", "h1:bad=")
    assert "go discarded the download" in str(caught.value)
    assert not (tmp_path / "cache" / f"alertmanager-{VERSION}" / "alertmanager").exists()


def test_a_dependency_changed_in_the_module_cache_is_deleted(
    modcache: ModCache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_MODIFIED", str(modcache.dep))
    with pytest.raises(IntegrityError) as caught:
        alertmanager_binary(tmp_path / "cache", VERSION)
    assert caught.value.path == "example.com/dep v1.0.0"
    assert not modcache.dep.exists()  # read-only in the module cache, deleted all the same
    root = tmp_path / "cache" / f"alertmanager-{VERSION}"
    assert not (root / "alertmanager").exists()  # the build that used it is thrown away
    assert not list(root.glob("build-*"))


def test_a_cached_binary_changed_after_its_build_is_deleted(
    modcache: ModCache, tmp_path: Path
) -> None:
    binary = alertmanager_binary(tmp_path / "cache", VERSION)
    binary.write_bytes(b"another binary")
    with pytest.raises(IntegrityError) as caught:
        alertmanager_binary(tmp_path / "cache", VERSION)
    assert caught.value.path == str(binary)
    assert caught.value.actual == hashlib.sha256(b"another binary").hexdigest()
    assert not binary.exists()
    assert (
        alertmanager_binary(tmp_path / "cache", VERSION).read_bytes() == b"an alertmanager binary"
    )


def test_a_binary_built_before_digests_were_recorded_is_rebuilt(
    modcache: ModCache, tmp_path: Path
) -> None:
    binary = alertmanager_binary(tmp_path / "cache", VERSION)
    (binary.parent / "alertmanager.sha256").unlink()
    binary.write_bytes(b"unverifiable")
    assert (
        alertmanager_binary(tmp_path / "cache", VERSION).read_bytes() == b"an alertmanager binary"
    )
    assert len(go_calls(tmp_path)) == 6
