"""``--log-format json``: every line ``gptoss serve`` writes to stderr is then one JSON object.

The access log has its own fields (``accesslog.format_line``); every other line — the CLI's progress and warnings,
the ready line, the ``gptoss.*`` and uvicorn loggers, the vLLM child's output, the final error — is
``{"ts", "level", "logger", "message", ...}``. ``logging_config("json")`` is handed to uvicorn, which applies it
when the server starts; in text mode nothing changes. No third-party imports.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from typing import Any

ACCESS_LOGGER = "gptoss.access"  # accesslog.py's logger (that module imports this one)


def timestamp() -> str:
    """Now, UTC, ISO 8601 with milliseconds and ``Z`` (the access log uses the same)."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def json_line(level: str, message: str, logger: str = "gptoss", **fields: Any) -> str:
    data = {"ts": timestamp(), "level": level, "logger": logger, "message": message}
    data.update({k: v for k, v in fields.items() if v is not None})
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


class JsonFormatter(logging.Formatter):
    """A ``logging`` record as one JSON line (a traceback, if any, goes into ``exception``, still one line)."""

    def format(self, record: logging.LogRecord) -> str:
        exception = self.formatException(record.exc_info) if record.exc_info else None
        return json_line(record.levelname.lower(), record.getMessage(), record.name, exception=exception)


def logging_config(fmt: str, level: str = "WARNING") -> dict[str, Any] | None:
    """uvicorn's ``log_config`` for ``fmt``: None (uvicorn's own) for text, JSON lines on stderr for json."""
    if fmt != "json":
        return None
    stderr = {"class": "logging.StreamHandler", "stream": "ext://sys.stderr"}
    loggers: dict[str, Any] = {
        name: {"handlers": ["json"], "level": level, "propagate": False}
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "gptoss")
    }
    # the access log's lines are JSON already (accesslog.format_line): written bare, at INFO
    loggers[ACCESS_LOGGER] = {"handlers": ["access"], "level": "INFO", "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}, "bare": {"format": "%(message)s"}},
        "handlers": {"json": {**stderr, "formatter": "json"}, "access": {**stderr, "formatter": "bare"}},
        "loggers": loggers,
        "root": {"handlers": ["json"], "level": level},
    }


__all__ = ["JsonFormatter", "json_line", "logging_config", "timestamp"]
