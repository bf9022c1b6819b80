"""``[logging]``: level, destination (stdout, stderr, syslog, or a file), format (text or json)."""

from __future__ import annotations

import json
import logging
import logging.handlers
import sys
from pathlib import Path

from acmems.core.settings import LoggingSettings

__all__ = ["setup_logging"]


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def setup_logging(settings: LoggingSettings) -> None:
    """Configure the root logger once, at start."""
    handler: logging.Handler
    destination = settings.destination
    if destination == "stdout":
        handler = logging.StreamHandler(sys.stdout)
    elif destination == "stderr":
        handler = logging.StreamHandler(sys.stderr)
    elif destination in ("syslog", "journalctl"):
        handler = logging.handlers.SysLogHandler(address="/dev/log")
    else:
        Path(destination).parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(destination)
    if settings.format == "json":
        handler.setFormatter(_JsonFormatter())
    elif settings.format == "text":
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter(settings.format))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.level.upper())
    # The acme library logs whole requests and responses at debug level; keep it quieter.
    logging.getLogger("acme").setLevel(max(logging.INFO, root.level))
    logging.getLogger("urllib3").setLevel(max(logging.WARNING, root.level))
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
