"""Who owns a training job and whether its process is gone: shared by every adapter."""

from __future__ import annotations

import os
import socket

#: A job in one of these states is unfinished: it has an owner that should be alive.
UNFINISHED = ("queued", "running")
#: The error of a job failed because its process is gone.
STALE_REASON = "the server process running this job stopped before it finished"


def worker_id() -> str:
    """``host:pid`` of the process that owns a job."""
    return f"{socket.gethostname()}:{os.getpid()}"


def orphaned(worker: str | None, host: str) -> bool:
    """True when ``worker`` (``host:pid``) names a process of ``host`` that no longer exists;
    another machine's job is never judged here: only that machine can tell."""
    if not worker:
        return False
    worker_host, _, pid = worker.rpartition(":")
    if worker_host != host or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def is_orphan(
    worker: str | None, heartbeat_at: int | None, host: str, oldest_beat: int | None
) -> bool:
    """Dead owner on this host, or (any host) a heartbeat older than ``oldest_beat``."""
    return orphaned(worker, host) or (
        oldest_beat is not None and heartbeat_at is not None and heartbeat_at < oldest_beat
    )
