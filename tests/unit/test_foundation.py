"""Settings, errors and the public API surface."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from disruptfeed import errors
from disruptfeed.settings import Settings
from disruptfeed.topics import topic_specs

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "module", ["schemas", "producers", "consumers", "streams", "disruptfeed", "disruptfeed.errors"]
)
def test_all_is_explicit_and_importable(module: str) -> None:
    mod = importlib.import_module(module)
    names = mod.__all__
    assert len(set(names)) == len(names), "duplicate names in __all__"
    for name in names:
        assert hasattr(mod, name), f"{module}.{name} is in __all__ but missing"
    root = module.split(".", maxsplit=1)[0]
    # Public classes and functions defined in this package must be exported explicitly.
    public = {
        n
        for n, obj in vars(mod).items()
        if not n.startswith("_")
        and callable(obj)
        and getattr(obj, "__module__", "").split(".")[0] == root
    }
    assert public - set(names) == set(), "public names missing from __all__"


def test_retriable_flags_drive_the_hierarchy() -> None:
    assert errors.BrokerError.retriable
    assert errors.PublishError.retriable
    assert errors.BrokerNotRunningError.retriable
    assert not errors.InvalidEventError.retriable
    assert not errors.ConfigurationError.retriable
    assert not errors.MissingToolError.retriable
    assert issubclass(errors.SchemaValidationError, errors.InvalidEventError)
    assert issubclass(errors.DecodeError, errors.InvalidEventError)
    assert issubclass(errors.MissingToolError, errors.LauncherError)


def test_settings_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISRUPTFEED_BOOTSTRAP_SERVERS", "kafka-1:9092,kafka-2:9092")
    monkeypatch.setenv("DISRUPTFEED_PARTITIONS", "6")
    monkeypatch.setenv("DISRUPTFEED_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("DISRUPTFEED_SASL_USERNAME", "feed")
    monkeypatch.setenv("DISRUPTFEED_SASL_PASSWORD", "s3cret")
    monkeypatch.setenv("DISRUPTFEED_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    settings = Settings()
    assert not settings.embedded
    assert settings.partitions == 6
    assert isinstance(settings.sasl_password, SecretStr)
    assert "s3cret" not in repr(settings)
    kwargs = settings.client_kwargs()
    assert kwargs["bootstrap_servers"] == "kafka-1:9092,kafka-2:9092"
    assert kwargs["sasl_plain_password"] == "s3cret"
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512"


def test_settings_default_to_the_embedded_broker() -> None:
    settings = Settings(_env_file=None)
    assert settings.embedded
    assert settings.bootstrap == f"127.0.0.1:{settings.broker_port}"
    with pytest.raises(ValidationError, match="frozen"):
        settings.partitions = 2  # type: ignore[misc]


def test_bad_settings_are_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISRUPTFEED_PARTITIONS", "0")
    with pytest.raises(ValidationError, match="partitions"):
        Settings()


def test_event_topics_keep_everything() -> None:
    specs = {s.name: s for s in topic_specs(Settings(topic_prefix="x", partitions=4))}
    assert set(specs) == {
        "x.account-disrupted",
        "x.network-identified",
        "x.report-released",
        "x.dead-letter",
        "x.alerts",
        "x.subscriptions",
        "x.dispatch-state",
        "x.deliveries",
        "x.delivery-dead-letter",
        "x.checkpoints",
    }
    assert specs["x.checkpoints"].partitions == 1
    assert specs["x.checkpoints"].config["retention.ms"] == "-1"
    for compacted in ("x.subscriptions", "x.dispatch-state"):
        assert specs[compacted].config["cleanup.policy"] == "compact"
        assert specs[compacted].partitions == 1
    for name in ("x.account-disrupted", "x.network-identified", "x.report-released"):
        assert specs[name].config["retention.ms"] == "-1"
        assert specs[name].config["cleanup.policy"] == "delete"
        assert specs[name].partitions == 4


def test_the_env_file_is_read_unless_switched_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text("DISRUPTFEED_TOPIC_PREFIX=from-dotenv\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DISRUPTFEED_TOPIC_PREFIX", raising=False)
    assert os.environ["DISRUPTFEED_NO_ENV_FILE"] == "1"  # set for the whole test session
    assert Settings().topic_prefix == "disruptfeed"
    monkeypatch.setenv("DISRUPTFEED_NO_ENV_FILE", "0")
    assert Settings().topic_prefix == "from-dotenv"
