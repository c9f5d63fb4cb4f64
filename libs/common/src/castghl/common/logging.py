"""Structured JSON logs, one format for our code and third-party loggers, secrets masked.

Every line is one JSON object: `ts`, `level`, `service`, `logger`, `msg`, the GHL
`messageId` / `locationId` of the work in hand (from `log_context`), and any `extra=`
fields. Redaction happens in the formatter, the one place every record passes through,
so a careless `extra={"token": ...}` or an exception text quoting a header cannot leak:
secret-named fields are masked, message-body fields are reduced to their length, and
bearer tokens, Cast API keys, JWTs and token query parameters are masked inside any text.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Final

MASK: Final = "***"

# Field names (compared lower-case, without - and _) whose values are secrets.
_SECRET_KEYS: Final = frozenset({
    "token", "accesstoken", "refreshtoken", "authorization", "apikey", "xapikey",
    "clientsecret", "secret", "password", "castapikey", "code", "idtoken",
    "encryptionkey", "tokenencryptionkeys", "inboundapikey", "adminapikey", "cookie",
})
# Field names whose values are message bodies: logged as a length only.
_BODY_KEYS: Final = frozenset({"body", "text", "smstext", "messagebody", "messagetext"})

_TEXT_PATTERNS: Final = (
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]+"), r"\1 " + MASK),
    (re.compile(r"\bcast_(?:test_)?[A-Za-z0-9]{8,}"), "cast_" + MASK),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]+\.?[A-Za-z0-9_-]*"), MASK),
    (re.compile(r"(?i)\b((?:access|refresh)_token|client_secret|api_key)=[^&\s\"']+"),
     r"\1=" + MASK),
    # A password inside a URL (amqp://user:pass@host, mongodb://user:pass@host, …).
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s/]+@"), r"\1" + MASK + "@"),
    # An OAuth code only in a URL query: "reply_code=312" elsewhere is not a secret.
    (re.compile(r"(?i)([?&]code=)[^&\s\"']+"), r"\1" + MASK),
    # A secret inside JSON or a Python dict repr (exception texts quote request bodies).
    (re.compile(r"""(?ix)(["'](?:access_token|refresh_token|client_secret|api_key|x-api-key
                      |token|password|authorization)["']\s*:\s*)(["'])(?:(?!\2).)+\2"""),
     r"\1\2" + MASK + r"\2"),
)

# Text none of the patterns above can match holds none of these (each pattern needs one):
# one search instead of every substitution, for the many lines that hold no secret.
_MAYBE_SECRET: Final = re.compile(
    r"(?i)bearer|cast_|eyj|token|secret|api[_-]key|://|code=|password|authorization")

_RESERVED: Final = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName",
    "color_message",  # uvicorn's copy of `msg` with terminal colours
}

_EMPTY: Final[Mapping[str, str]] = MappingProxyType({})
_context: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "castghl_log_context", default=_EMPTY)


def _norm(key: str) -> str:
    return key.lower().replace("-", "").replace("_", "")


def redact_text(text: str) -> str:
    """Mask credentials that appear inside free text (exception messages, URLs, headers)."""
    if _MAYBE_SECRET.search(text) is None:
        return text
    for pattern, replacement in _TEXT_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def redact(value: Any, key: str = "") -> Any:  # noqa: PLR0911 - one case per kind
    """Redact a value for logging, by its field name and by what its text looks like."""
    normal = _norm(key)
    if normal in _SECRET_KEYS or normal.endswith(("token", "apikey", "secret", "password")):
        return MASK if value not in (None, "") else value
    if normal in _BODY_KEYS and isinstance(value, str | bytes):
        return f"<{len(value)} chars>"
    if isinstance(value, Mapping):
        return {str(k): redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, int | float | bool) or value is None:
        return value
    return redact_text(str(value))


@contextmanager
def log_context(**fields: str | None) -> Iterator[None]:
    """Attach fields (e.g. messageId, locationId) to every log line inside the block."""
    current = dict(_context.get())
    current.update({k: v for k, v in fields.items() if v})
    token = _context.set(current)
    try:
        yield
    finally:
        _context.reset(token)


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": redact_text(record.getMessage()),
        }
        entry.update(_context.get())
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = redact(value, key)
        if record.exc_info and record.exc_info[0] is not None:
            entry["error"] = redact_text(f"{record.exc_info[0].__name__}: {record.exc_info[1]}")
            entry["traceback"] = redact_text(
                "".join(traceback.format_exception(*record.exc_info)[-6:]))
        return json.dumps(entry, default=str, ensure_ascii=False)


# Chatty libraries: their INFO lines repeat what our own logs say with context.
_QUIET: Final = {"httpx": logging.WARNING, "httpcore": logging.WARNING,
                 "aio_pika": logging.WARNING, "aiormq": logging.WARNING,
                 "pymongo": logging.WARNING, "faststream": logging.WARNING,
                 "uvicorn.access": logging.WARNING}


def configure_logging(service: str, level: str = "INFO") -> None:
    """Route every logger (ours, uvicorn's, FastStream's, …) to one JSON handler on stdout."""
    # A line holds none of where it was logged from (file, line, thread, process): not
    # looking them up saves a stack walk and three look-ups per record (the logging
    # HOWTO's "Optimization" section names these switches).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "faststream",
                 "faststream.access"):
        lib = logging.getLogger(name)
        lib.handlers.clear()
        lib.propagate = True
    for name, lib_level in _QUIET.items():
        logging.getLogger(name).setLevel(max(lib_level, logging.getLevelName(level)))
