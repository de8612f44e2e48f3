"""The official AsyncAPI 3.0.0 JSON Schema, from the npm package ``@asyncapi/specs``.

The schema (draft-07, every definition bundled under ``definitions`` with its own ``$id``) is
fetched once with ``npm pack`` and cached under ``$XDG_CACHE_HOME/disruptfeed``. Validation
resolves every ``$ref`` from the bundled definitions: nothing is fetched while validating.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any, Final

import pytest

# Untyped unless types-jsonschema is installed (not a dev dependency yet).
from jsonschema import Draft7Validator  # type: ignore[import-untyped, unused-ignore]
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

SPECS_PACKAGE: Final = "@asyncapi/specs"
SPECS_VERSION: Final = "6.11.1"
SCHEMA_ID: Final = "http://asyncapi.com/definitions/3.0.0/asyncapi.json"
_MEMBER: Final = "package/schemas/3.0.0.json"


def cache_path() -> Path:
    """Where the extracted schema is cached."""
    base = os.environ.get("XDG_CACHE_HOME")
    root = Path(base) if base else Path.home() / ".cache"
    return root / "disruptfeed" / f"asyncapi-specs-{SPECS_VERSION}" / "3.0.0.json"


def _download() -> bytes:
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail(
            "npm is not installed: install Node.js and npm (https://nodejs.org/) so the tests can "
            f"fetch the official AsyncAPI schema with 'npm pack {SPECS_PACKAGE}@{SPECS_VERSION}', "
            f"or put {_MEMBER} from that package at {cache_path()}",
            pytrace=False,
        )
    with tempfile.TemporaryDirectory(prefix="asyncapi-specs-") as tmp:
        done = subprocess.run(
            [npm, "pack", f"{SPECS_PACKAGE}@{SPECS_VERSION}", "--silent"],
            cwd=tmp,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        tarballs = sorted(Path(tmp).glob("*.tgz"))
        if done.returncode != 0 or len(tarballs) != 1:
            pytest.fail(
                f"'npm pack {SPECS_PACKAGE}@{SPECS_VERSION}' failed (exit {done.returncode}): "
                f"{done.stderr.strip() or done.stdout.strip()}",
                pytrace=False,
            )
        with tarfile.open(tarballs[0], "r:gz") as tar:
            member = tar.extractfile(_MEMBER)
            if member is None:  # pragma: no cover - a directory, not a file
                pytest.fail(f"{_MEMBER} is not a file in {tarballs[0].name}", pytrace=False)
            return member.read()


def asyncapi_schema() -> dict[str, Any]:
    """The official AsyncAPI 3.0.0 JSON Schema, parsed (downloaded and cached on first use)."""
    path = cache_path()
    if not path.is_file():
        data = _download()
        json.loads(data)  # never cache something that is not JSON
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        partial.write_bytes(data)
        partial.replace(path)
    schema: dict[str, Any] = json.loads(path.read_bytes())
    if schema.get("$id") != SCHEMA_ID or "definitions" not in schema:
        pytest.fail(f"{path} is not the bundled AsyncAPI 3.0.0 schema: delete it and re-run")
    return schema


def asyncapi_validator() -> Draft7Validator:
    """A draft-07 validator for AsyncAPI 3.0.0 documents that resolves ``$ref`` offline.

    Every bundled definition is registered under its ``$id``; the registry has no retrieval
    function, so a reference outside the bundle fails instead of reaching the network.
    """
    schema = asyncapi_schema()
    registry: Registry[Any] = Registry().with_resources(
        (uri, Resource.from_contents(contents, default_specification=DRAFT7))
        for uri, contents in schema["definitions"].items()
    )
    return Draft7Validator(schema, registry=registry, format_checker=Draft7Validator.FORMAT_CHECKER)


_DOC_URI: Final = "urn:disruptfeed:test:asyncapi"


def document_validator(doc: dict[str, Any], pointer: str) -> Draft7Validator:
    """A validator for the schema at ``pointer`` (a JSON pointer) inside an AsyncAPI document."""
    registry: Registry[Any] = Registry().with_resource(
        _DOC_URI, Resource.from_contents(doc, default_specification=DRAFT7)
    )
    return Draft7Validator(
        {"$ref": f"{_DOC_URI}#{pointer}"},
        registry=registry,
        format_checker=Draft7Validator.FORMAT_CHECKER,
    )
