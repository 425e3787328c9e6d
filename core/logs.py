"""Logging for every churnops process: plain text by default, JSON lines with ECS field names
when ``LOG_JSON=true``; optionally shipped to Logstash (``LOGSTASH_HOST=host:port``,
tcp json_lines).

Services call :func:`configure_logging` once at start (the API in its lifespan, the UI at import of
its entry page, the CLIs in ``main``). Shipping goes through a queue and a background listener, so a
slow or absent Logstash never blocks a request; records it cannot take are dropped there (stdout
keeps them).
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import queue
import socket
from datetime import UTC, datetime
from typing import Any

from core.settings import Settings

ECS_VERSION = "8.11.0"
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
_LISTENERS: list[logging.handlers.QueueListener] = []  # the running shipper (at most one)
#: Loggers that uvicorn configures with handlers of its own (plain text).
SERVER_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


class EcsJsonFormatter(logging.Formatter):
    """One JSON object per line with ECS names (``@timestamp``, ``log.level``, ``message``...)."""

    def __init__(self, service: str = "churnops") -> None:
        super().__init__()
        self.service = service
        self.host = socket.gethostname()

    def document(self, record: logging.LogRecord) -> dict[str, Any]:
        """The ECS document of a record (``extra={...}`` keys are merged in)."""
        doc: dict[str, Any] = {
            "@timestamp": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "log": {
                "level": record.levelname.lower(),
                "logger": record.name,
                "origin": {
                    "file": {"name": record.filename, "line": record.lineno},
                    "function": record.funcName,
                },
            },
            "message": record.getMessage(),
            "service": {"name": self.service},
            "host": {"name": self.host},
            "process": {"pid": record.process, "thread": {"name": record.threadName}},
            "event": {"dataset": f"{self.service}.log"},
            "ecs": {"version": ECS_VERSION},
        }
        if record.exc_info and record.exc_info[0] is not None:
            doc["error"] = {
                "type": record.exc_info[0].__name__,
                "message": str(record.exc_info[1]),
                "stack_trace": self.formatException(record.exc_info),
            }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                doc[key] = value
        return doc

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(self.document(record), default=str, separators=(",", ":"))


class JsonQueueHandler(logging.handlers.QueueHandler):
    """Formats the ECS line in the logging thread (where ``exc_info`` still exists)."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        line = (self.formatter or EcsJsonFormatter()).format(record)
        return logging.makeLogRecord({"msg": line, "levelno": record.levelno})


class JsonLinesSocketHandler(logging.handlers.SocketHandler):
    """TCP ``json_lines`` for Logstash's tcp input (the stdlib handler sends pickles)."""

    def makePickle(self, record: logging.LogRecord) -> bytes:  # noqa: N802 - stdlib name
        return (record.getMessage() + "\n").encode("utf-8")


def _logstash_target(settings: Settings) -> tuple[str, int] | None:
    target = (settings.logstash_host or "").strip()
    if not target:
        return None
    host, _, port = target.rpartition(":")
    return (host or target, int(port)) if port.isdigit() else (target, 50000)


def configure_logging(
    settings: Settings, service: str = "churnops", level: str | None = None
) -> None:
    """Configure the root logger once (calling it again replaces the previous setup).

    Args:
        settings: ``log_json`` selects JSON (ECS) lines instead of plain text.
        service: ``service.name`` in every JSON line (e.g. ``churnops-api``).
        level: log level name; default ``settings.log_level`` (``LOG_LEVEL``, ``INFO``).
    """
    while _LISTENERS:
        _LISTENERS.pop().stop()
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    root.setLevel((level or settings.log_level).upper())
    console = logging.StreamHandler()
    if settings.log_json:
        console.setFormatter(EcsJsonFormatter(service))
    else:
        console.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root.addHandler(console)
    if settings.log_json:  # the servers' own loggers (uvicorn's) go through the same lines
        for name in SERVER_LOGGERS:
            server_logger = logging.getLogger(name)
            for handler in list(server_logger.handlers):
                server_logger.removeHandler(handler)
            server_logger.propagate = True
    target = _logstash_target(settings)
    if settings.log_json and target is not None:
        records: queue.Queue[logging.LogRecord] = queue.Queue(10_000)
        enqueue = JsonQueueHandler(records)
        enqueue.setFormatter(EcsJsonFormatter(service))
        root.addHandler(enqueue)
        listener = logging.handlers.QueueListener(records, JsonLinesSocketHandler(*target))
        listener.start()
        _LISTENERS.append(listener)
