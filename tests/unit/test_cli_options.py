"""The common flags (flag > env > default, into the one Settings) and --output shapes."""

from __future__ import annotations

import http.server
import io
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from disruptfeed.cli import main
from disruptfeed.settings import Settings

pytestmark = pytest.mark.unit

COUNTS = {
    "RU": {"account.disrupted": {"1h": 1, "24h": 2, "7d": 3, "total": 4}},
    "CN": {
        "account.disrupted": {"1h": 0, "24h": 0, "7d": 5, "total": 9},
        "report.released": {"1h": 0, "24h": 1, "7d": 1, "total": 1},
    },
}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No DISRUPTFEED_* variable from the developer's shell; a data dir without a token file."""
    import os

    for name in list(os.environ):
        if name.startswith("DISRUPTFEED_") and name != "DISRUPTFEED_NO_ENV_FILE":
            monkeypatch.delenv(name)
    monkeypatch.setenv("DISRUPTFEED_DATA_DIR", str(tmp_path / "data"))


class _Seen:
    """What the fake worker API was asked: the path and the Authorization header."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str | None]] = []


@pytest.fixture
def fake_worker() -> Iterator[tuple[str, _Seen]]:
    """An HTTP server on a free port answering /counts and /alerts like the worker does."""
    seen = _Seen()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.requests.append((self.path, self.headers.get("Authorization")))
            if self.path.startswith("/counts"):
                body: Any = COUNTS
            else:
                body = {"alerts": [], "stream_time": "2026-01-01T00:00:00+00:00"}
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _dead_url() -> str:
    """A URL nothing listens on (a port bound, then released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


# --- precedence: flag > env > default, seen by a real HTTP server ---------------------------


def test_counts_flags_beat_the_environment(
    fake_worker: tuple[str, _Seen], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, seen = fake_worker
    monkeypatch.setenv("DISRUPTFEED_WORKER_URL", _dead_url())
    monkeypatch.setenv("DISRUPTFEED_API_TOKEN", "from-env")
    result = CliRunner().invoke(main, ["counts", "--url", url, "--token", "from-flag"])
    assert result.exit_code == 0, result.output
    assert seen.requests == [("/counts", "Bearer from-flag")]


def test_counts_environment_beats_the_defaults(
    fake_worker: tuple[str, _Seen], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, seen = fake_worker
    monkeypatch.setenv("DISRUPTFEED_WORKER_URL", url)
    monkeypatch.setenv("DISRUPTFEED_API_TOKEN", "from-env")
    result = CliRunner().invoke(main, ["counts", "--region", "RU"])
    assert result.exit_code == 0, result.output
    assert seen.requests == [("/counts/RU", "Bearer from-env")]


def test_counts_default_is_the_local_worker_without_a_token() -> None:
    settings = _captured(["counts"], "disruptfeed.cli._streams._worker_get")
    assert settings.worker_api_url == "http://127.0.0.1:6066"
    assert settings.api_token is None
    assert settings.bearer_tokens(create=False) == ()


# --- precedence, via the Settings object each command ends up with --------------------------


def _captured(args: list[str], target: str, obj: Settings | None = None) -> Settings:
    """Run the command with ``target`` replaced; return the Settings it was called with."""
    got: list[Settings] = []

    def fake(settings: Settings, *rest: Any, **kwargs: Any) -> Any:
        got.append(settings)
        return ({}, None) if target.endswith("._worker_get") else None

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(target, fake)
        result = CliRunner().invoke(main, args, obj=obj)
    assert result.exit_code == 0, result.output
    assert len(got) == 1
    return got[0]


@pytest.mark.parametrize(
    ("flags", "env", "want"),
    [
        ([], {}, (None, None, None)),
        (
            [],
            {"DISRUPTFEED_BOOTSTRAP_SERVERS": "env:9092", "DISRUPTFEED_API_TOKEN": "e"},
            ("env:9092", "e", None),
        ),
        (
            ["--bootstrap", "flag:9092", "--token", "f", "--rules", "RULES"],
            {"DISRUPTFEED_BOOTSTRAP_SERVERS": "env:9092", "DISRUPTFEED_API_TOKEN": "e"},
            ("flag:9092", "f", "RULES"),
        ),
    ],
)
def test_worker_settings_precedence(
    flags: list[str],
    env: dict[str, str],
    want: tuple[str | None, str | None, str | None],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text("")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DISRUPTFEED_RULES_FILE", str(tmp_path / "env-rules.toml"))
    args = ["worker", *(str(rules) if f == "RULES" else f for f in flags)]
    settings = _captured(args, "streams.app.run_worker")
    bootstrap, token, rules_flag = want
    assert settings.bootstrap_servers == bootstrap
    assert settings.bootstrap == (bootstrap or "127.0.0.1:19092")
    assert (settings.api_token.get_secret_value() if settings.api_token else None) == token
    assert settings.rules_file == (rules if rules_flag else tmp_path / "env-rules.toml")


def test_flags_apply_on_top_of_injected_settings(tmp_path: Path) -> None:
    base = Settings(topic_prefix="injected", bootstrap_servers="base:9092", data_dir=tmp_path)
    settings = _captured(["worker", "--bootstrap", "flag:9092"], "streams.app.run_worker", obj=base)
    assert settings.bootstrap_servers == "flag:9092"
    assert settings.topic_prefix == "injected"
    assert settings.data_dir == tmp_path
    assert _captured(["worker"], "streams.app.run_worker", obj=base) is base


def test_alerts_tail_url_goes_to_the_dispatcher_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISRUPTFEED_DISPATCHER_URL", "http://env-host:1")
    got: list[str] = []

    async def follow(url: str, **kwargs: Any) -> Any:
        got.append(url)
        got.append(kwargs["token"])
        return
        yield  # an async generator that ends at once

    monkeypatch.setattr("consumers._stream_client.follow_sse", follow)
    result = CliRunner().invoke(main, ["alerts", "tail"])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(main, ["alerts", "tail", "--url", "http://flag:2/", "--token", "t"])
    assert result.exit_code == 0, result.output
    assert got == ["http://env-host:1/stream/alerts", None, "http://flag:2/stream/alerts", "t"]


def test_a_bad_flag_value_names_the_flag() -> None:
    result = CliRunner().invoke(main, ["counts", "--url", "ftp://example.net"])
    assert result.exit_code == 4
    assert "--url sets worker_url" in result.output


@pytest.mark.parametrize(
    ("command", "variables"),
    [
        (
            ["worker"],
            ["DISRUPTFEED_BOOTSTRAP_SERVERS", "DISRUPTFEED_API_TOKEN", "DISRUPTFEED_RULES_FILE"],
        ),
        (["counts"], ["DISRUPTFEED_WORKER_URL", "DISRUPTFEED_API_TOKEN"]),
        (["alerts"], ["DISRUPTFEED_WORKER_URL", "DISRUPTFEED_BOOTSTRAP_SERVERS"]),
        (["alerts", "tail"], ["DISRUPTFEED_DISPATCHER_URL", "DISRUPTFEED_API_TOKEN"]),
        (["publish"], ["DISRUPTFEED_BOOTSTRAP_SERVERS"]),
        (["tail"], ["DISRUPTFEED_BOOTSTRAP_SERVERS"]),
        (["subscriptions", "list"], ["DISRUPTFEED_BOOTSTRAP_SERVERS"]),
        (["audit", "recount"], ["DISRUPTFEED_WORKER_URL", "DISRUPTFEED_RULES_FILE"]),
        (["replay"], ["DISRUPTFEED_BOOTSTRAP_SERVERS"]),
        (["dispatcher"], ["DISRUPTFEED_BOOTSTRAP_SERVERS", "DISRUPTFEED_API_TOKEN"]),
    ],
)
def test_help_shows_each_flag_with_its_variable_and_default(
    command: list[str], variables: list[str]
) -> None:
    result = CliRunner().invoke(main, [*command, "--help"], terminal_width=400)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    for variable in variables:
        assert f"[env var: {variable}; default: " in text


# --- --output shapes ------------------------------------------------------------------------


def test_counts_output_shapes(fake_worker: tuple[str, _Seen]) -> None:
    url, _ = fake_worker
    runner = CliRunner()

    def out(*flags: str) -> str:
        result = runner.invoke(main, ["counts", "--url", url, *flags])
        assert result.exit_code == 0, result.output
        return result.stdout

    assert json.loads(out("--output", "json")) == COUNTS
    assert json.loads(out("--json")) == COUNTS  # the older flag
    rows = [json.loads(line) for line in out("--output", "jsonl").splitlines()]
    assert rows == [
        {"region": "RU", "type": "account.disrupted", "1h": 1, "24h": 2, "7d": 3, "total": 4},
        {"region": "CN", "type": "account.disrupted", "1h": 0, "24h": 0, "7d": 5, "total": 9},
        {"region": "CN", "type": "report.released", "1h": 0, "24h": 1, "7d": 1, "total": 1},
    ]
    table = out().splitlines()
    assert table[0].split() == ["region", "event", "type", "1h", "24h", "7d", "total"]
    assert table[1].split() == ["RU", "account.disrupted", "1", "2", "3", "4"]


def test_alerts_output_shapes(fake_worker: tuple[str, _Seen]) -> None:
    url, _ = fake_worker
    runner = CliRunner()
    doc = runner.invoke(main, ["alerts", "--url", url, "--output", "json"])
    assert doc.exit_code == 0, doc.output
    assert json.loads(doc.stdout) == {"alerts": [], "stream_time": "2026-01-01T00:00:00+00:00"}
    lines = runner.invoke(main, ["alerts", "--url", url, "--output", "jsonl"])
    assert lines.exit_code == 0, lines.output
    assert lines.stdout == ""  # one line per firing alert: none
    table = runner.invoke(main, ["alerts", "--url", url])
    assert table.stdout.strip() == "no alerts firing (stream time 2026-01-01T00:00:00+00:00)"


# --- progress bars --------------------------------------------------------------------------


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bars_draw_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    from disruptfeed.cli._common import progress

    piped = io.StringIO()
    monkeypatch.setattr("sys.stderr", piped)
    with progress(10, "publishing", "events") as bar:
        assert bar.disable
        bar.update(10)
    assert piped.getvalue() == ""

    terminal = _Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    with progress(10, "publishing", "events") as bar:
        assert not bar.disable
        bar.update(10)
    assert "publishing" in terminal.getvalue()
    assert "/10 " in terminal.getvalue()  # drawn with its total


# --- status with nothing running --------------------------------------------------------------


def _dead_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_status_says_what_is_unreachable_instead_of_failing() -> None:
    bootstrap = f"127.0.0.1:{_dead_port()}"
    url = _dead_url()
    args = ["status", "--bootstrap", bootstrap, "--url", url]
    result = CliRunner().invoke(main, [*args, "--output", "json"])
    assert result.exit_code == 3, result.output
    doc = json.loads(result.stdout)
    assert doc["bootstrap"] == bootstrap
    assert doc["broker"]["ok"] is False
    assert bootstrap in doc["broker"]["error"]
    for section in ("topics", "lag", "dead_letters"):
        assert doc[section] == {"ok": False, "error": "skipped: the broker is not reachable"}
    assert doc["workers"]["api"]["ok"] is False
    assert doc["workers"]["api"]["error"].startswith(f"no worker answers at {url}")
    assert doc["alerts"]["ok"] is False

    lines = CliRunner().invoke(main, [*args, "--output", "jsonl"]).stdout.splitlines()
    sections = [json.loads(line)["section"] for line in lines]
    assert sections == ["broker", "topics", "workers", "lag", "alerts", "dead_letters"]

    table = CliRunner().invoke(main, args)
    assert table.exit_code == 3
    heads = [line.split()[0] for line in table.stdout.splitlines()[1:] if not line.startswith(" ")]
    assert heads == ["broker", "topics", "workers", "lag", "alerts", "dead"]
    assert "error" not in table.stderr.lower()  # the sections say it; no client log noise
