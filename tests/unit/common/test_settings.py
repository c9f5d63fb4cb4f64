"""Settings fail fast with one line naming every bad variable, and never echo values."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import Field

from castghl.common.settings import (
    AmqpUrl,
    BrokerSettings,
    MongoSettings,
    load_settings,
    startup_facts,
)
from castghl.sender.settings import SenderSettings


class ExampleSettings(BrokerSettings, MongoSettings):
    api_key: str = Field(min_length=8)
    workers: int = Field(1, ge=1)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        pytest.param({}, "API_KEY is missing", id="missing"),
        pytest.param({"API_KEY": "short"}, "API_KEY: String should have at least 8 characters",
                     id="too-short"),
        pytest.param({"API_KEY": "long-enough", "WORKERS": "many"},
                     "WORKERS: Input should be a valid integer", id="not-int"),
        pytest.param({"API_KEY": "long-enough", "RABBITMQ_URL": "http://x"},
                     "RABBITMQ_URL: URL scheme should be 'amqp' or 'amqps'", id="wrong-scheme"),
        pytest.param({"API_KEY": "long-enough", "LOG_LEVEL": "LOUD"},
                     "LOG_LEVEL: Input should be 'DEBUG', 'INFO', 'WARNING' or 'ERROR'",
                     id="bad-literal"),
    ],
)
def test_bad_settings_exit_with_one_line_naming_the_variable(
    env: dict[str, str], expected: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name in ("API_KEY", "WORKERS", "RABBITMQ_URL", "MONGO_URI", "LOG_LEVEL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exited:
        load_settings(ExampleSettings, "example")
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("example: cannot start, bad settings: ")
    assert expected in err


def test_every_bad_variable_is_named_at_once_and_no_value_is_echoed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("API_KEY", "sec")
    monkeypatch.setenv("WORKERS", "0")
    monkeypatch.setenv("MONGO_URI", "postgres://user:hunter2@db/x")
    with pytest.raises(SystemExit):
        load_settings(ExampleSettings, "example")
    err = capsys.readouterr().err
    for name in ("API_KEY", "WORKERS", "MONGO_URI"):
        assert name in err
    assert "hunter2" not in err
    assert "sec," not in err


def test_good_settings_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_KEY", "long-enough")
    monkeypatch.setenv("MONGO_URI", "mongodb://db:27017/bridge")
    settings = load_settings(ExampleSettings, "example")
    assert settings.api_key == "long-enough"
    assert settings.mongo_database == "bridge"
    assert settings.rabbitmq_url == AmqpUrl("amqp://guest:guest@localhost:5672/")


def test_mongo_database_defaults_when_the_uri_names_none() -> None:
    assert MongoSettings(mongo_uri="mongodb://db:27017").mongo_database == "cast-ghl"


@pytest.mark.parametrize(
    ("script", "required"),
    [
        ("castghl-gateway", ["INBOUND_API_KEY"]),
        ("castghl-sender", ["CAST_API_KEY", "ADMIN_API_KEY"]),
        ("castghl-oauth", ["BASE_URL", "GHL_CLIENT_ID", "GHL_CLIENT_SECRET", "GHL_APP_ID",
                           "TOKEN_ENCRYPTION_KEYS", "ADMIN_API_KEY", "CAST_API_KEY"]),
    ],
)
def test_each_service_refuses_to_start_without_its_settings(script: str, required: list[str]
                                                            ) -> None:
    """The real entry point, as an operator runs it: one line, no traceback, exit 2."""
    exe = str(Path(sys.executable).with_name(script))
    result = subprocess.run([exe], env={"LOG_LEVEL": "LOUD"}, capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"{script}: cannot start, bad settings: ")
    for name in [*required, "LOG_LEVEL"]:
        assert name in lines[0]


@pytest.mark.parametrize(("urls", "key", "mode"), [
    ({}, "cast_" + "a" * 64, "live"),
    ({"CAST_API_URL": "http://cast-sim:9102"}, "cast_" + "a" * 64,
     "sandbox (simulators or a Cast test key)"),
    ({}, "cast_test_" + "a" * 64, "sandbox (simulators or a Cast test key)"),
], ids=["live", "simulator", "test-key"])
def test_the_start_up_line_says_live_or_sandbox_and_names_hosts_only(
        monkeypatch: pytest.MonkeyPatch, urls: dict[str, str], key: str, mode: str) -> None:
    for name in ("GHL_API_URL", "CAST_API_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in {"CAST_API_KEY": key, "OAUTH_URL": "http://oauth:3003",
                        "SENDER_API_KEY": "s" * 16, "ADMIN_API_KEY": "a" * 16,
                        "RABBITMQ_URL": "amqp://sender:secret-pw@rabbitmq:5672/",
                        "MONGO_URI": "mongodb://sender:secret-pw@mongo:27017/cast-ghl",
                        **urls}.items():
        monkeypatch.setenv(name, value)
    facts = startup_facts(SenderSettings())
    assert facts["mode"] == mode
    assert facts["rabbitmq"] == "rabbitmq:5672"
    assert facts["mongo"] == "mongo:27017"
    assert "secret-pw" not in str(facts)
    assert key not in str(facts)
