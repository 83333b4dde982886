"""The access log: one line per request (method, path, status, duration, model version, key
id), written by a background thread.

Python's ``logging`` costs about 57 us a line on the request path (record, format, a flushed
write): a quarter of the feed lane's throughput (BENCHMARKS §9). Here a request only appends a
tuple to a deque; every ``interval_s`` the writer formats the lines in the format of
:mod:`smartrec.logs` (text or one JSON object a line) and writes them in one call, and at
shutdown it writes what is left. Lines are written at log level ``info`` or ``debug``
(``SMARTREC_LOG_LEVEL``), whoever configured Python's logging.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections import deque
from datetime import UTC, datetime
from typing import IO

from starlette.types import Scope

from smartrec.api.auth import KEY

LOGGER = "smartrec.access"
_Line = tuple[float, str, str, int, float, str | None, str | None, str | None]


class AccessLog:
    def __init__(
        self,
        fmt: str = "text",
        stream: IO[str] | None = None,
        interval_s: float = 0.1,
        level: str = "info",
    ) -> None:
        self.fmt = fmt
        #: Whether lines are recorded at all (checked per request: an attribute, no call).
        self.wanted = logging.getLevelName(level.upper()) <= logging.INFO
        self.stream = stream
        self.interval_s = interval_s
        self._lines: deque[_Line] = deque()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._write_lock = threading.Lock()

    def record(self, scope: Scope, status: int, seconds: float) -> None:
        """Called once per request, on the event loop: no formatting, no I/O."""
        runtime = getattr(scope["app"].state, "runtime", None)
        path = scope.get("path", "")
        query = scope.get("query_string")
        if query:
            path = f"{path}?{query.decode('latin-1')}"
        client = scope.get("client")
        self._lines.append(
            (
                time.time(),
                scope.get("method", "GET"),
                path,
                status,
                seconds,
                runtime.service.model_version if runtime is not None else None,
                getattr(scope.get(KEY), "key_id", None),
                client[0] if client else None,
            )
        )

    # ----------------------------------------------------------------- writing
    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._run, name="smartrec-access-log", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self.flush()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.flush()

    def flush(self) -> int:
        """Write the lines recorded so far; returns how many."""
        lines: list[_Line] = []
        while self._lines:
            lines.append(self._lines.popleft())
        if not lines:
            return 0
        text = "".join(self._format(line) + "\n" for line in lines)
        stream = self.stream or sys.stderr
        with self._write_lock:
            try:
                stream.write(text)
                stream.flush()
            except (OSError, ValueError):  # a closed stream at interpreter exit
                return 0
        return len(lines)

    def _format(self, line: _Line) -> str:
        at, method, path, status, seconds, version, key_id, client = line
        ms = seconds * 1000
        if self.fmt == "json":
            return json.dumps(
                {
                    "time": datetime.fromtimestamp(at, tz=UTC).isoformat(timespec="milliseconds"),
                    "level": "info",
                    "logger": LOGGER,
                    "message": f"{method} {path} {status} {ms:.1f}ms",
                    "http": {
                        "method": method,
                        "path": path,
                        "status": status,
                        "duration_ms": round(ms, 3),
                        "model_version": version,
                        "key_id": key_id,
                        "client": client,
                    },
                }
            )
        stamp = datetime.fromtimestamp(at).strftime("%Y-%m-%d %H:%M:%S")
        return (
            f"{stamp},{int(at * 1000) % 1000:03d} INFO {LOGGER}: {method} {path} {status} "
            f"{ms:.1f}ms model={version or '-'} key={key_id or '-'}"
        )
