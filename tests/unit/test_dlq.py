"""Dead letters without a broker: excerpts, header parsing, what a redrive would do, ``tail``."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from itertools import count

import pytest
from click.testing import CliRunner

from disruptfeed._dlq import (
    REDRIVE_OF_HEADER,
    REDRIVEN_TO_HEADER,
    DeadLetterRecord,
    excerpt,
    parse_since,
)
from disruptfeed._redrive import plan_redrive
from disruptfeed.cli import main
from disruptfeed.errors import ConfigurationError
from disruptfeed.settings import Settings
from disruptfeed.topics import ALERTS, DEAD_LETTER
from schemas import DLQ_REASON_HEADER, DLQ_TOPIC_HEADER, codec
from streams._processor import Processor
from tests.factories import account, report

pytestmark = pytest.mark.unit

SETTINGS = Settings(topic_prefix="t")
DLQ = SETTINGS.topic(DEAD_LETTER)


@pytest.mark.parametrize(
    ("value", "limit", "shown"),
    [
        (None, 80, "(no value)"),
        (b"", 80, "(empty)"),
        (b'{"type": "account.disrupted"}', 80, '{"type": "account.disrupted"}'),
        # Control characters escaped, so one dead letter is one line.
        (b'{"a":\n\t"b\x00"}\r\n', 80, '{"a":\\n\\t"b\\x00"}\\r\\n'),
        # Other unprintable characters too; printable non-ASCII text stays as it is.
        ("Zürich €\u200b\U0001f600".encode(), 80, "Zürich €\\u200b\U0001f600"),
        # Not UTF-8 but mostly ASCII: escaped bytes (a backslash doubled, so it reads back).
        (b"\xff\xfe not json \\ here", 80, "\\xff\\xfe not json \\\\ here"),
        # Mostly binary: hex.
        (bytes(range(8)) + b"\xff", 80, "hex: 00 01 02 03 04 05 06 07 ff"),
        # Cut at the limit, with the full size.
        (b"x" * 1_000_000, 20, "x" * 20 + "… (1,000,000 bytes)"),
        (bytes(reversed(range(256))), 20, "hex: ff fe fd fc fb… (256 bytes)"),
        # An escape is never cut in half.
        (b"abc\n" * 10, 9, "abc\\nabc… (40 bytes)"),
        # Nor a character whose bytes straddle the part looked at.
        ("é".encode() * 100, 10, "é" * 10 + "… (200 bytes)"),
    ],
)
def test_excerpt(value: bytes | None, limit: int, shown: str) -> None:
    assert excerpt(value, limit) == shown


def test_excerpt_is_printable_whatever_the_bytes() -> None:
    for start in range(0, 256, 16):
        data = bytes(range(start, start + 16)) * 3
        assert excerpt(data).isprintable()


def test_parse_since() -> None:
    now = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
    assert parse_since("30m", now) == now - dt.timedelta(minutes=30)
    assert parse_since("2h", now) == now - dt.timedelta(hours=2)
    assert parse_since("7d", now) == now - dt.timedelta(days=7)
    assert parse_since("2026-10-01T00:00Z") == dt.datetime(2026, 10, 1, tzinfo=dt.UTC)
    assert parse_since("2026-10-01T02:00") == dt.datetime(2026, 10, 1, 2, tzinfo=dt.UTC)
    with pytest.raises(ConfigurationError, match="neither an ISO 8601 time"):
        parse_since("yesterday")


class Dead:
    """Dead letters as the worker's own Processor makes them, stored in a fake DLQ."""

    def __init__(self) -> None:
        self.processor = Processor.for_settings(SETTINGS)
        self.offsets = count()
        self.records: list[DeadLetterRecord] = []

    def refuse(
        self,
        topic: str,
        value: bytes | None,
        headers: list[tuple[str, bytes]] | None = None,
        timestamp_ms: int | None = None,
    ) -> DeadLetterRecord:
        source = SETTINGS.topic(topic)
        outcome = self.processor.process(
            source, 1, 40 + len(self.records), b"RU", value, headers or [],
            timestamp_ms=timestamp_ms,
        )  # fmt: skip
        assert outcome.dead_letter is not None, "the processor counted it"
        letter = outcome.dead_letter
        return self.add(letter.key, letter.value, list(letter.headers))

    def add(
        self, key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes | None]]
    ) -> DeadLetterRecord:
        record = DeadLetterRecord(
            DLQ, 0, next(self.offsets), 1_700_000_000_000, key, value, tuple(headers)
        )
        self.records.append(record)
        return record


def test_dead_letter_headers_read_back() -> None:
    dead = Dead()
    letter = dead.refuse("account-disrupted", b"\xff\xfe not json")
    assert letter.source == "t.account-disrupted[1]@40"
    assert letter.position == "t.dead-letter[0]@0"
    assert letter.error_type == "DecodeError"
    assert letter.reason.startswith("not valid UTF-8: byte 0 is 0xff")
    assert letter.copied
    assert letter.value_excerpt() == "\\xff\\xfe not json"
    big = dead.refuse("account-disrupted", b"x" * 1_000_000)
    assert not big.copied
    assert big.value_excerpt() == "not copied: 1,000,000 bytes, see t.account-disrupted[1]@41"
    row = big.row()
    assert row["value_bytes"] == 1_000_000
    assert row["value"] == "not copied: 1,000,000 bytes, see t.account-disrupted[1]@41"
    assert row["dead_lettered_at"] == "2023-11-14T22:13:20Z"
    # Hostile headers on a record put straight on the topic never break the reading.
    odd = dead.add(None, None, [(DLQ_TOPIC_HEADER, b"\xff"), ("dlq_partition", b"-1")])
    assert (odd.source, odd.reason, odd.copied) == ("\ufffd[?]@?", "", True)


def test_a_dead_letter_is_found_by_the_reason_code_it_was_counted_under() -> None:
    # The worker counts dead letters by a short code (the reason label of
    # disruptfeed_events_dead_lettered_total), and an operator goes from the metric to
    # `dlq tail --reason CODE`: "internal" (a bug of the worker's) matched nothing, as no text
    # of the reason or error type holds it.
    from streams._processor import dead_letter_headers

    dead = Dead()
    bad = dead.refuse("account-disrupted", b"{not json")
    assert dead.processor.stats.dead_lettered_by_reason == {"decode": 1}
    assert bad.code == "decode"
    assert bad.matches(["DECODE"])
    assert bad.row()["code"] == "decode"
    bug = dead.add(None, b"{}", dead_letter_headers("t.account-disrupted", 0, 7, KeyError("x")))
    failed = dead.add(
        None, b"", dead_letter_headers("t.account-disrupted", 0, 8, OSError(), "handling-failed")
    )
    assert (bug.code, failed.code) == ("internal", "handling-failed")
    assert [r.matches(["internal"]) for r in (bad, bug, failed)] == [False, True, False]
    assert dead.add(None, b"", [("dlq_code", b"Internal")]).matches(["INTERNAL"])
    # Dead letters written before the code header: the code follows from the error type.
    older = [
        dead.add(r.key, r.value, [h for h in r.headers if h[0] != "dlq_code"]) for r in (bad, bug)
    ]
    assert [r.code for r in older] == ["decode", "internal"]


def test_plan_redrive_judges_each_dead_letter_again() -> None:
    dead = Dead()
    now_ms = time.time_ns() // 1_000_000
    hour = 3_600_000
    # Dead-lettered as future-event-time: its publisher's clock was two hours behind. Its time
    # is in the past now, so it is valid.
    late = account("RU", occurred_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    fixed = dead.refuse(
        "account-disrupted", codec.encode(late), codec.headers(late), timestamp_ms=now_ms - 2 * hour
    )
    assert fixed.reason.startswith("future-event-time: occurred_at: 3,600 s ahead")
    # Year 9999: still ahead of any clock.
    future = account("RU", occurred_at=dt.datetime(9999, 1, 1, tzinfo=dt.UTC))
    ahead = dead.refuse(
        "account-disrupted", codec.encode(future), codec.headers(future), timestamp_ms=now_ms
    )
    garbage = dead.refuse("account-disrupted", b"{truncated")
    wrong_topic = dead.refuse("account-disrupted", codec.encode(report()))
    big = dead.refuse("account-disrupted", b"x" * 1_000_000)
    # The dispatcher dead-letters bad alert records: not events, never redriven.
    alert = dead.add(
        b"k",
        b"{}",
        [(DLQ_REASON_HEADER, b"not an alert"), (DLQ_TOPIC_HEADER, SETTINGS.topic(ALERTS).encode())],
    )
    # Already dealt with by an earlier redrive: one published (its marker), one written again.
    done = dead.refuse(
        "account-disrupted", codec.encode(late), codec.headers(late), now_ms - 3 * hour
    )
    again = dead.refuse("account-disrupted", b"[]")
    marker = dead.add(
        b"RU",
        b"",
        [(REDRIVE_OF_HEADER, done.position.encode()), (REDRIVEN_TO_HEADER, b"t.x[0]@9")],
    )
    copy = dead.add(
        b"RU", again.value, [*again.headers, (REDRIVE_OF_HEADER, again.position.encode())]
    )

    items = plan_redrive(dead.records, SETTINGS)
    actions = {item.letter.position: (item.action, item.detail) for item in items}
    assert marker.position not in actions  # a marker is not a dead letter
    assert actions[fixed.position] == (
        "redriven",
        f"account.disrupted {late.event_id} to t.account-disrupted",
    )
    assert actions[ahead.position][0] == "failed-again"
    assert actions[ahead.position][1].startswith("future-event-time: occurred_at: ")
    assert actions[garbage.position][0] == "failed-again"
    assert actions[wrong_topic.position] == (
        "failed-again",
        "type: 'report.released' does not belong on topic 't.account-disrupted'",
    )
    assert actions[big.position] == (
        "skipped",
        "not copied: 1,000,000 bytes, see t.account-disrupted[1]@44",
    )
    assert actions[alert.position] == (
        "skipped",
        "not from an event topic of this feed: t.alerts[?]@?",
    )
    assert actions[done.position] == ("already-redriven", "already redriven: t.x[0]@9")
    assert actions[again.position] == ("already-redriven", f"already redriven: {copy.position}")
    assert actions[copy.position][0] == "failed-again"  # the copy is tried again

    only = plan_redrive(dead.records, SETTINGS, reasons=["FUTURE-event-time"])
    assert {i.letter.position for i in only} == {fixed.position, ahead.position, done.position}
    by_type = plan_redrive(dead.records, SETTINGS, reasons=["schemavalidationerror"])
    assert wrong_topic.position in {i.letter.position for i in by_type}


def test_tail_points_at_dlq_tail_for_the_dead_letter_topic() -> None:
    for name in ("dead-letter", "disruptfeed.dead-letter"):
        result = CliRunner().invoke(main, ["tail", name], obj=SETTINGS)
        assert result.exit_code == 2
        assert "not events: show them" in result.output
        assert "'disruptfeed dlq tail'" in result.output


def test_dlq_commands_refuse_bad_arguments() -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["dlq", "tail", "--since", "soon"], obj=SETTINGS)
    assert result.exit_code == 2
    assert "--since: 'soon' is neither an ISO 8601 time" in result.output
    result = runner.invoke(main, ["dlq", "tail", "--from", "latest", "--since", "1h"])
    assert result.exit_code == 2
    assert "pick one" in result.output
    result = runner.invoke(main, ["dlq", "redrive", "--since", "soon"], obj=SETTINGS)
    assert result.exit_code == 2


def test_tail_table_lines() -> None:
    from disruptfeed.cli._dlq import _Table

    dead = Dead()
    garbage = dead.refuse("account-disrupted", b"\xff\xfe not json").row()
    big = dead.refuse("account-disrupted", b"x" * 1_000_000).row(successor="t.x[0]@3")
    table = _Table([garbage, big])
    assert table.header().split() == ["DEAD-LETTERED", "SOURCE", "ERROR", "FIELD", "REASON"]
    lines = table.line(garbage).splitlines()
    assert lines[0].split()[:5] == [
        "2023-11-14",
        "22:13:20Z",
        "t.account-disrupted[1]@40",
        "DecodeError",
        "-",
    ]
    assert lines[0].endswith("not valid UTF-8: byte 0 is 0xff")
    assert lines[1] == "    value: \\xff\\xfe not json"
    # Columns line up under the header.
    assert lines[0].index("DecodeError") == table.header().index("ERROR")
    lines = table.line(big).splitlines()
    assert lines[1:] == [
        "    value: not copied: 1,000,000 bytes, see t.account-disrupted[1]@41",
        "    redriven: t.x[0]@3",
    ]
