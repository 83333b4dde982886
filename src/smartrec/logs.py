"""Logging set-up for every command: human text, or one JSON object per line for collectors
(CloudWatch, Cloud Logging, Azure Monitor parse it without a grok pattern).

One ``dictConfig`` serves the command's own process and, handed to uvicorn as ``log_config``,
each of its worker processes (``--workers N``), so every process logs the same way.
"""

from __future__ import annotations

import json
import logging
import logging.config
import os
from datetime import UTC, datetime
from typing import Any

#: LogRecord attributes that are not a caller's ``extra`` (uvicorn's ``color_message`` repeats
#: the message with terminal colours).
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "color_message",
}
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                body[key] = value
        if record.exc_info:
            body["exception"] = self.formatException(record.exc_info)
        return json.dumps(body, default=str)


def dict_config(level: str = "INFO", fmt: str = "text") -> dict[str, Any]:
    """Root handler on stderr; uvicorn's and MLflow's loggers propagate to it (one format)."""
    formatter: dict[str, Any] = (
        {"()": "smartrec.logs.JsonFormatter"} if fmt == "json" else {"format": TEXT_FORMAT}
    )
    quiet = {"handlers": [], "propagate": True}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"smartrec": formatter},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "smartrec",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["stderr"], "level": level.upper()},
        "loggers": {
            "uvicorn": quiet,
            "uvicorn.error": quiet,
            # smartrec's access log (SMARTREC_ACCESS_LOG) carries the model version and key.
            "uvicorn.access": {"handlers": [], "propagate": False},
            "mlflow": quiet,
        },
    }


def configure(level: str = "INFO", fmt: str = "text") -> dict[str, Any]:
    """Apply :func:`dict_config` here; returns it for uvicorn's ``log_config``."""
    os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")  # MLflow keeps its own handler
    config = dict_config(level, fmt)
    logging.config.dictConfig(config)
    return config
