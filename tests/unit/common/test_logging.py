"""JSON logs: one object per line, context attached, secrets and bodies never printed."""

from __future__ import annotations

import json
import logging

import pytest

from castghl.common.logging import JsonFormatter, configure_logging, log_context, redact

TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJsb2NhdGlvbiI6InNlY3JldCJ9.c2lnbmF0dXJlc2VjcmV0"
CAST_KEY = "cast_" + "ab12" * 16


def render(message: str, *args: object, exc: BaseException | None = None,
           **extra: object) -> dict[str, object]:
    record = logging.LogRecord("castghl.test", logging.INFO, __file__, 1, message, args,
                               (type(exc), exc, exc.__traceback__) if exc else None)
    for key, value in extra.items():
        setattr(record, key, value)
    line = JsonFormatter("castghl-test").format(record)
    assert "\n" not in line
    parsed: dict[str, object] = json.loads(line)
    return parsed


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("access_token", TOKEN), ("refresh_token", "r-123456"), ("token", "t-123456"),
        ("authorization", f"Bearer {TOKEN}"), ("api_key", CAST_KEY), ("x-api-key", CAST_KEY),
        ("client_secret", "s3cr3t"), ("cast_api_key", CAST_KEY), ("code", "oauth-code"),
        ("password", "hunter2"), ("inbound_api_key", "k" * 20),
    ],
)
def test_secret_fields_are_masked(field: str, value: str) -> None:
    entry = render("event", **{field: value})
    assert entry[field] == "***"
    assert value not in json.dumps(entry)


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (f"GET /x failed: Authorization: Bearer {TOKEN}", TOKEN),
        (f"key {CAST_KEY} refused", CAST_KEY),
        (f"jwt {TOKEN} expired", TOKEN),
        ("https://h/oauth/token?refresh_token=abcdef123&x=1", "abcdef123"),
        ('{"access_token": "zzz-secret-zzz", "a": 1}', "zzz-secret-zzz"),
        ('{"client_secret":"cs-secret-1"}', "cs-secret-1"),
        ("{'refresh_token': 'rt-secret-2', 'x': 1}", "rt-secret-2"),
        ("headers={'Authorization': 'Basic dXNlcjpwYXNz'}", "dXNlcjpwYXNz"),
        ("input_value={'api_key': 'k-secret-3'}", "k-secret-3"),
        ("callback?code=supersecretcode", "supersecretcode"),
        # Every key the JSON pattern knows (redact_text searches for these first).
        ('{"password": "hunter2-pw"}', "hunter2-pw"),
        ("{'X-API-KEY': 'k-5zz9q'}", "k-5zz9q"),
        ('{"token": "t-6qq8w"}', "t-6qq8w"),
        ('{"authorization": "a-7xx3v"}', "a-7xx3v"),
        ("cannot connect to amqp://castghl:br0ker-pass@rabbitmq:5672/", "br0ker-pass"),
        ("ServerSelectionTimeout mongodb://oauth:m0ngo-pass@mongo:27017/cast-ghl",
         "m0ngo-pass"),
        ("mongodb+srv://u:p%40ss-w0rd@cluster0.example.net/db", "p%40ss-w0rd"),
    ],
)
def test_secrets_inside_free_text_are_masked(text: str, secret: str) -> None:
    entry = render("failed: %s", text, detail=text)
    assert secret not in json.dumps(entry)


def test_exception_text_and_traceback_are_redacted() -> None:
    try:
        raise RuntimeError(f"GHL said no to Bearer {TOKEN}")
    except RuntimeError as exc:
        entry = render("call failed", exc=exc)
    assert "RuntimeError" in str(entry["error"])
    assert TOKEN not in json.dumps(entry)


@pytest.mark.parametrize("field", ["body", "text", "message_body", "sms_text"])
def test_message_bodies_are_logged_as_their_length_only(field: str) -> None:
    entry = render("sent", **{field: "Hi Juan, your OTP is 123456"})
    assert entry[field] == "<27 chars>"


def test_context_adds_ghl_ids_to_every_line_inside_it() -> None:
    with log_context(messageId="m1", locationId="loc1"):
        inside = render("inside")
        with log_context(messageId="m2"):
            nested = render("nested")
    outside = render("outside")
    assert (inside["messageId"], inside["locationId"]) == ("m1", "loc1")
    assert (nested["messageId"], nested["locationId"]) == ("m2", "loc1")
    assert "messageId" not in outside


def test_lines_carry_the_fixed_fields() -> None:
    entry = render("hello %s", "world", attempt=2)
    assert entry["msg"] == "hello world"
    assert (entry["level"], entry["service"], entry["logger"]) == ("info", "castghl-test",
                                                                   "castghl.test")
    assert entry["attempt"] == 2
    assert str(entry["ts"]).endswith("+00:00")


def test_nested_structures_are_redacted_too() -> None:
    assert redact({"headers": {"Authorization": "Bearer x", "Accept": "json"}}) == {
        "headers": {"Authorization": "***", "Accept": "json"}}


def test_third_party_loggers_share_the_json_format(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("castghl-test", "INFO")
    try:
        logging.getLogger("uvicorn.error").warning("listener %s", "up")
        logging.getLogger("castghl.mine").info("ours", extra={"token": "t-123"})
    finally:
        logging.getLogger().handlers.clear()
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["logger"] for line in lines] == ["uvicorn.error", "castghl.mine"]
    assert lines[1]["token"] == "***"


def test_ordinary_codes_are_not_mistaken_for_oauth_codes() -> None:
    entry = render("Basic.Return(reply_code=312, reply_text='NO_ROUTE')")
    assert "reply_code=312" in str(entry["msg"])


def test_uvicorns_coloured_copy_of_the_message_is_dropped() -> None:
    entry = render("Started server process [%d]", 42,
                   color_message="Started server process [\x1b[36m%d\x1b[0m]")
    assert "color_message" not in entry
