"""Helpers of the end-to-end suites: ``smartrec`` run as a command, a small MovieLens-shaped
dataset on disk, and waiting on a condition instead of sleeping."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from smartrec.datasets.movielens import GENRES

T = TypeVar("T")
COMMAND_TIMEOUT_S = 300.0


def smartrec_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a ``smartrec`` command: no developer setting, its own home."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMARTREC_")}
    return env | {
        "SMARTREC_HOME": str(home),
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        **extra,
    }


def run_smartrec(
    home: Path, *args: str, timeout: float = COMMAND_TIMEOUT_S, **env: str
) -> subprocess.CompletedProcess[str]:
    """``smartrec ARGS`` as a user types it (the installed console script, a new process)."""
    command = [str(Path(sys.executable).with_name("smartrec")), *args]
    return subprocess.run(
        command,
        env=smartrec_env(home, **env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def wait_until(predicate: Callable[[], T | None], timeout: float, what: str) -> T:
    """Poll ``predicate`` until it returns a true value (returned); fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def write_movielens(root: Path, n_users: int = 40, n_items: int = 30) -> tuple[Path, int]:
    """A GroupLens-format ML-100K directory (u.data, u.item, u.user, u.genre): two taste groups
    rating their own half of the items, every user active throughout. Returns (root, ratings)."""
    root.mkdir(parents=True, exist_ok=True)
    ratings = []
    for u in range(1, n_users + 1):
        half = 0 if u % 2 else n_items // 2
        for k in range(10):
            item = half + (u * 7 + k * 3) % (n_items // 2) + 1
            ratings.append((u, item, 3 + (u + k) % 3, 880_000_000 + k * 10_000 + u))
    unique = {(u, i): (u, i, r, t) for u, i, r, t in ratings}
    (root / "u.data").write_text("".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in unique.values()))
    lines = []
    for i in range(1, n_items + 1):
        flags = "|".join("1" if g == GENRES[1 + i % 5] else "0" for g in GENRES)
        lines.append(f"{i}|Film {i} (1995)|01-Jan-1995||http://example.org/{i}|{flags}\n")
    (root / "u.item").write_bytes("".join(lines).encode("latin-1"))
    (root / "u.user").write_text("".join(f"{u}|30|M|writer|00000\n" for u in range(1, n_users + 1)))
    (root / "u.genre").write_text("".join(f"{g}|{i}\n" for i, g in enumerate(GENRES)) + "\n")
    return root, len(unique)
