"""requirements.lock pins, with hashes, everything pyproject.toml asks for, and is what we test.

``make install`` installs the lock with ``pip --require-hashes`` and the project with
``--no-deps``, so a dependency missing from the lock would be missing from every fresh machine.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements.lock"
EXTRAS = ("dev", "bench")  # what the Makefile installs: .[dev,bench]
# The platform the lock is resolved for (LOCK_FLAGS in the Makefile).
TARGET: dict[str, str] = {
    **{key: str(value) for key, value in default_environment().items()},
    "python_version": "3.11",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "os_name": "posix",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
}

_PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>\S+)(?: \\)?$")
_HASH = re.compile(r"^\s+--hash=sha256:(?P<hash>[0-9a-f]{64})(?: \\)?$")


@dataclass
class Pin:
    """One locked distribution: its version and the sha256 of each of its files on PyPI."""

    version: str
    hashes: list[str] = field(default_factory=list)


def parse_lock(text: str) -> dict[NormalizedName, Pin]:
    """Read a ``uv pip compile --generate-hashes`` file; fail on any line it cannot explain."""
    pins: dict[NormalizedName, Pin] = {}
    current: Pin | None = None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if pin := _PIN.match(line):
            name = canonicalize_name(pin["name"])
            assert name not in pins, f"line {number}: {name} is pinned twice"
            current = pins[name] = Pin(pin["version"])
        elif (digest := _HASH.match(line)) and current is not None:
            current.hashes.append(digest["hash"])
        else:
            raise AssertionError(f"requirements.lock line {number} is not a pin or hash: {line}")
    return pins


def direct_requirements() -> list[Requirement]:
    """pyproject.toml's dependencies, its dev and bench extras, and requirements-tools.in."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    lines = list(project["dependencies"])
    for extra in EXTRAS:
        lines += project["optional-dependencies"][extra]
    tools = (ROOT / "requirements-tools.in").read_text(encoding="utf-8").splitlines()
    lines += [kept for line in tools if (kept := line.split("#", 1)[0].strip())]
    return [Requirement(line) for line in lines]


def applies(req: Requirement, extra: str = "") -> bool:
    """Whether ``req`` is needed on the lock's platform (for ``extra`` of its parent)."""
    return req.marker is None or req.marker.evaluate(TARGET | {"extra": extra})


@pytest.fixture(scope="module")
def pins() -> dict[NormalizedName, Pin]:
    return parse_lock(LOCK.read_text(encoding="utf-8"))


def test_every_requirement_of_pyproject_is_pinned_within_its_range(
    pins: dict[NormalizedName, Pin],
) -> None:
    problems = []
    for req in filter(applies, direct_requirements()):
        pin = pins.get(canonicalize_name(req.name))
        if pin is None:
            problems.append(f"{req} is not in requirements.lock")
        elif not req.specifier.contains(pin.version, prereleases=True):
            problems.append(f"{req} is locked at {pin.version}, outside its range")
    assert not problems, "run `make lock`:\n" + "\n".join(problems)


def test_the_lock_is_closed_over_every_dependency_and_extra(
    pins: dict[NormalizedName, Pin],
) -> None:
    # Walk the installed distributions' metadata from pyproject's requirements, extras included
    # (aiokafka[lz4] brings cramjam): every distribution reached must be locked.
    seen: set[tuple[NormalizedName, str]] = set()
    todo = [(r, e) for r in filter(applies, direct_requirements()) for e in ("", *r.extras)]
    missing = set()
    while todo:
        req, extra = todo.pop()
        name = canonicalize_name(req.name)
        if (name, extra) in seen:
            continue
        seen.add((name, extra))
        if name not in pins:
            missing.add(name)
            continue
        for line in metadata.requires(name) or []:
            child = Requirement(line)
            if applies(child, extra):
                todo += [(child, e) for e in ("", *child.extras)]
    assert len(seen) > 50  # the walk really followed the graph
    assert not missing, f"needed but not in requirements.lock (run `make lock`): {sorted(missing)}"


def test_every_pin_carries_sha256_hashes(pins: dict[NormalizedName, Pin]) -> None:
    assert {"faust-streaming", "aiokafka", "pip", "setuptools", "uv"} <= pins.keys()
    unhashed = [name for name, pin in pins.items() if not pin.hashes]
    assert not unhashed, f"pinned without a hash: {unhashed}"


def test_the_tested_environment_is_the_locked_one(pins: dict[NormalizedName, Pin]) -> None:
    differences = []
    for name, pin in sorted(pins.items()):
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = "not installed"
        if installed != pin.version:
            differences.append(f"{name}: locked {pin.version}, installed {installed}")
    assert not differences, "run `make install`:\n" + "\n".join(differences)


def test_the_parser_rejects_what_pip_would_not_hash_check() -> None:
    good = "six==1.17.0 \\\n    --hash=sha256:" + "a" * 64 + "\n    # via x\n"
    assert parse_lock(good) == {"six": Pin("1.17.0", ["a" * 64])}
    for bad in ("six>=1.17\n", "-e .\n", "six @ https://example.org/six.whl\n"):
        with pytest.raises(AssertionError, match="not a pin or hash"):
            parse_lock(bad)
