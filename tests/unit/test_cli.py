"""The command line without a broker: help, sample, schemas export, argument errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from disruptfeed.cli import main
from disruptfeed.sample import SampleSpec, build_sample
from schemas import codec

pytestmark = pytest.mark.unit


def test_every_command_has_help() -> None:
    runner = CliRunner()
    top = runner.invoke(main, ["--help"])
    assert top.exit_code == 0
    for command in (
        "broker",
        "topics",
        "schemas",
        "publish",
        "tail",
        "sample",
        "demo",
        "worker",
        "counts",
        "alerts",
    ):
        assert command in top.output
        result = runner.invoke(main, [command, "--help"])
        assert result.exit_code == 0, result.output
        assert "Usage:" in result.output


def test_sample_writes_the_data_set(tmp_path: Path) -> None:
    out = tmp_path / "sample.jsonl"
    result = CliRunner().invoke(main, ["sample", "-o", str(out), "--accounts-per-network", "3"])
    assert result.exit_code == 0, result.output
    lines = out.read_bytes().splitlines()
    events = [codec.decode(line) for line in lines]
    assert len(events) == 12 + 62 + 62 * 3
    assert [e.event_id for e in events] == [
        e.event_id for e in build_sample(SampleSpec(accounts_per_network=3))
    ]


def test_schemas_export_writes_files(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["schemas", "export", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert "asyncapi.json" in names
    assert "account.disrupted.schema.json" in names
    doc = json.loads((tmp_path / "out" / "asyncapi.json").read_text())
    assert doc["asyncapi"] == "3.0.0"


def test_publish_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["publish", str(tmp_path / "nope.jsonl")])
    assert result.exit_code == 2
    assert "does not exist" in result.output


def test_tail_rejects_a_bad_start_time() -> None:
    result = CliRunner().invoke(main, ["tail", "--from", "last tuesday"])
    assert result.exit_code == 2
    assert "ISO 8601" in result.output
