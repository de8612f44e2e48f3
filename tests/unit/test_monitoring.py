"""deploy/prometheus/alerts.yml and deploy/grafana/disruptfeed.json name only metrics we export.

The names are read out of every PromQL expression with a regex (label matchers, ranges, strings
and grouping clauses removed first, function calls skipped) and compared with the sample names
the worker's and the dispatcher's collectors register, so a renamed or removed metric fails
here instead of leaving an alert that can never fire or a panel that stays empty.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr

from consumers._dispatcher import Dispatcher
from consumers._metrics import dispatcher_collectors
from disruptfeed._metrics import exported_names
from disruptfeed.settings import Settings
from streams._metrics import worker_collectors
from streams.app import create_app, worker_state

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "disruptfeed.json"

PROMETHEUS_OWN = {"up"}
"""Series Prometheus records for every target itself."""
_KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
             "group_right", "offset", "bool", "inf", "nan"}  # fmt: skip
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_NAME = re.compile(r"(?<![\w.:$])([A-Za-z_:][A-Za-z0-9_:]*)(?![\w:]|\s*\()")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"'(?:[^'\\]|\\.)*'", "''", text)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    text = _GROUPING.sub(" ", text)
    return {name for name in _NAME.findall(text) if name.lower() not in _KEYWORDS}


def test_the_name_reader_finds_metrics_and_nothing_else() -> None:
    expr = (
        'sum by (reason, le) (rate(a_total{job="x", le=~"1|2"}[5m] offset 1h)) / on(group) '
        "group_left(foo) b_seconds_bucket > bool 1e-9 and time() - c_info unless "
        'histogram_quantile(0.9, d_bucket{x="}"}) or label_replace(e, "dst", "$1", "src", "(.*)")'
    )
    assert metric_names(expr) == {"a_total", "b_seconds_bucket", "c_info", "d_bucket", "e"}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("monitoring"),
        worker_store="memory://",
        bootstrap_servers="127.0.0.1:9",  # never contacted
        api_token=SecretStr("t"),
    )
    state = worker_state(create_app(settings))
    return exported_names(worker_collectors(state)) | exported_names(
        dispatcher_collectors(Dispatcher(settings))
    )


def _rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def _dashboard_exprs() -> list[str]:
    board = json.loads(DASHBOARD.read_text())
    exprs: list[str] = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            exprs.extend(t["expr"] for t in panel.get("targets", []))
            walk(panel.get("panels", []))

    walk(board["panels"])
    return exprs


def test_alert_rules_name_only_exported_metrics(exported: set[str]) -> None:
    rules = _rules()
    names = {rule["alert"] for rule in rules}
    # The feed's own failure modes each have a rule.
    assert {"DisruptfeedWorkerDown", "DisruptfeedConsumerLagGrowing",
            "DisruptfeedDeadLettersRising", "DisruptfeedWebhookFailures"} <= names  # fmt: skip
    assert len(names) == len(rules), "alert names repeat"
    for rule in rules:
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert re.fullmatch(r"\d+[smh]", rule.get("for", "0s")), rule["alert"]
        read = metric_names(rule["expr"])
        assert read, rule["alert"]
        assert read <= exported | PROMETHEUS_OWN, (rule["alert"], read - exported)


def test_dashboard_names_only_exported_metrics(exported: set[str]) -> None:
    board = json.loads(DASHBOARD.read_text())
    exprs = _dashboard_exprs()
    assert len(exprs) >= 20
    for expr in exprs:
        read = metric_names(expr)
        assert read, expr
        assert read <= exported, (expr, read - exported)
    for variable in board["templating"]["list"]:
        query = variable["query"]["query"]
        [name] = re.findall(r"label_values\((\w+)", query)
        assert name in exported, query
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids repeat"


def test_alerts_and_dashboard_together_use_every_metric_family(exported: set[str]) -> None:
    used = {n for e in _dashboard_exprs() + [r["expr"] for r in _rules()] for n in metric_names(e)}

    def family(name: str) -> str:
        return re.sub(r"_(bucket|count|sum)$", "", name)

    families = {family(n) for n in exported}
    unused = families - {family(n) for n in used}
    assert not unused, f"exported but neither alerted on nor charted: {sorted(unused)}"
