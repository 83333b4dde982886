"""Shared parts of the benchmarks: uvicorn subprocesses, a cheap HTTP load generator, tables.

The load generator runs in its own process (``multiprocessing`` spawn), so that the client never
shares an interpreter (and a GIL) with the server under test. It speaks HTTP/1.1 over raw asyncio
streams on keep-alive connections, with every request pre-serialised to bytes: the per-request
client cost is a few tens of microseconds, small next to what is measured.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import http.client
import json
import math
import multiprocessing as mp
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
LOOPBACK = "127.0.0.1"
#: A request not answered in this time counts as an error (the connection is replaced).
REQUEST_TIMEOUT_S = 60.0


# --------------------------------------------------------------------------- servers
def free_port() -> int:
    """A TCP port on the loopback interface that nobody listens on right now."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def _get(
    port: int, path: str, timeout: float = 2.0, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def get_json(
    port: int, path: str, timeout: float = 10.0, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    """GET a path on a local server (with extra ``headers``); (status, decoded JSON or None)."""
    status, body = _get(port, path, timeout, headers)
    try:
        return status, json.loads(body)
    except ValueError:
        return status, None


def get_text(port: int, path: str, timeout: float = 10.0) -> tuple[int, str]:
    """GET a path on a local server; (status, body as text), e.g. ``/metrics``."""
    status, body = _get(port, path, timeout)
    return status, body.decode(errors="replace")


class Server:
    """One ``uvicorn`` subprocess on 127.0.0.1 (a free port), started and stopped by this object.

    ``app`` is an import string of an application factory (``module:function``); ``app_dir`` is
    put first on the server's ``sys.path``. Logs go to a temp file, printed if the start fails.
    """

    def __init__(
        self,
        name: str,
        app: str,
        *,
        env: dict[str, str] | None = None,
        workers: int = 1,
        app_dir: Path | None = None,
        ready_path: str = "/healthz",
        start_timeout_s: float = 120.0,
    ) -> None:
        self.name = name
        self.app = app
        self.env = env or {}
        self.workers = workers
        self.app_dir = app_dir
        self.ready_path = ready_path
        self.start_timeout_s = start_timeout_s
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed in stop()
            prefix=f"smartrec-bench-{name}-", suffix=".log", delete=False
        )

    def start(self) -> Server:
        self.port = free_port()
        cmd = [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            self.app,
            "--host",
            LOOPBACK,
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
            "--log-level",
            "warning",
            "--no-access-log",
        ]
        if self.app_dir is not None:
            cmd += ["--app-dir", str(self.app_dir)]
        env = {**os.environ, **self.env}
        self.proc = subprocess.Popen(
            cmd,
            cwd=REPO_ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: stop() reaches --workers children
        )
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server {self.name} exited at start:\n{self.log_text()}")
            with contextlib.suppress(OSError):
                status, _ = _get(self.port, self.ready_path, timeout=1.0)
                if status == 200:
                    return self
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"server {self.name} not ready in time:\n{self.log_text()}")
            time.sleep(0.1)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def log_text(self) -> str:
        self._log.flush()
        return Path(self._log.name).read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        """SIGTERM the server (and its workers), SIGKILL what is left after 15 s."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        if proc is not None:
            # Workers of a --workers N server share the group; make sure none outlives it.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        self._log.close()
        with contextlib.suppress(OSError):
            os.unlink(self._log.name)

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------- load generator
def http_request(
    method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> bytes:
    """A complete HTTP/1.1 keep-alive request as bytes (JSON body when given; extra
    ``headers``, e.g. ``Authorization``, on every request)."""
    head = f"{method} {path} HTTP/1.1\r\nHost: {LOOPBACK}\r\n"
    for name, value in (headers or {}).items():
        head += f"{name}: {value}\r\n"
    if body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + (body or b"")


@dataclass
class LoadResult:
    """What one load run measured: per-request latencies (s), errors, wall time."""

    latencies: list[float]
    errors: int
    elapsed_s: float
    bodies_checked: int = 0
    first_error: str | None = None

    @property
    def count(self) -> int:
        return len(self.latencies)

    @property
    def rate(self) -> float:
        return self.count / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def merge(self, other: LoadResult) -> LoadResult:
        return LoadResult(
            self.latencies + other.latencies,
            self.errors + other.errors,
            self.elapsed_s + other.elapsed_s,
            self.bodies_checked + other.bodies_checked,
            self.first_error or other.first_error,
        )


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = -1
    chunked = False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        lname = name.strip().lower()
        if lname == b"content-length":
            length = int(value)
        elif lname == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            data = await reader.readexactly(size + 2)
            if size == 0:
                break
            parts.append(data[:-2])
        return status, b"".join(parts)
    return status, await reader.readexactly(max(length, 0))


async def _load(
    port: int,
    requests: Sequence[bytes],
    concurrency: int,
    duration_s: float | None,
    expect_status: int,
    expect_json: dict[str, Any] | None,
) -> LoadResult:
    """Closed loop: ``concurrency`` connections send back to back.

    With ``duration_s`` the requests are cycled until the deadline; without it each request is
    sent exactly once. ``expect_json`` entries are checked in every response body. Latencies are
    kept for successful requests only; the others count as errors.
    """
    latencies: list[float] = []
    errors = 0
    first_error: str | None = None
    checked = 0
    nxt = 0
    total = len(requests)
    clock = time.perf_counter
    started = clock()
    deadline = started + duration_s if duration_s is not None else math.inf

    async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.wait_for(asyncio.open_connection(LOOPBACK, port), REQUEST_TIMEOUT_S)

    async def worker() -> None:
        nonlocal nxt, errors, first_error, checked
        conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        with contextlib.suppress(OSError, TimeoutError):
            conn = await connect()  # before the first request, so its latency leaves it out
        try:
            while True:
                if duration_s is None:
                    if nxt >= total:
                        return
                    req = requests[nxt]
                else:
                    if clock() >= deadline:
                        return
                    req = requests[nxt % total]
                nxt += 1
                t0 = clock()
                try:
                    if conn is None:
                        conn = await connect()
                    reader, writer = conn
                    writer.write(req)
                    await writer.drain()
                    status, body = await asyncio.wait_for(_read_response(reader), REQUEST_TIMEOUT_S)
                except (OSError, asyncio.IncompleteReadError, ValueError, TimeoutError) as exc:
                    errors += 1
                    first_error = first_error or f"{type(exc).__name__}: {exc}"
                    if conn is not None:
                        conn[1].close()
                        conn = None
                    await asyncio.sleep(0.01)  # a server that is down is not hammered
                    continue
                latency = clock() - t0
                ok = status == expect_status
                if ok and expect_json:
                    checked += 1
                    try:
                        doc = json.loads(body)
                        ok = all(doc.get(k) == v for k, v in expect_json.items())
                    except ValueError:
                        ok = False
                if ok:
                    latencies.append(latency)
                else:
                    errors += 1
                    first_error = first_error or f"HTTP {status}: {body[:300]!r}"
        finally:
            if conn is not None:
                conn[1].close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return LoadResult(latencies, errors, clock() - started, checked, first_error)


def _load_process(conn: Any) -> None:
    """The load generator's process: run each job received on ``conn``, send back the result."""
    with contextlib.suppress(ImportError):  # uvloop comes with uvicorn[standard]
        import uvloop

        uvloop.install()
    try:
        while True:
            job = conn.recv()
            if job is None:
                return
            try:
                conn.send(asyncio.run(_load(*job)))
            except Exception as exc:  # report to the parent instead of hanging it
                conn.send(exc)
    except (EOFError, KeyboardInterrupt):
        return


class LoadGenerator:
    """A separate (spawned) process that runs load jobs; start once, ``run`` many times."""

    def __init__(self) -> None:
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_load_process, args=(child,), daemon=True)
        self._proc.start()
        child.close()

    def run(
        self,
        port: int,
        requests: Sequence[bytes],
        *,
        concurrency: int,
        duration_s: float | None = None,
        expect_status: int = 200,
        expect_json: dict[str, Any] | None = None,
        timeout_s: float = 600.0,
    ) -> LoadResult:
        """Send ``requests`` (once each, or cycled for ``duration_s``) and return the result."""
        job = (port, list(requests), concurrency, duration_s, expect_status, expect_json)
        self._conn.send(job)
        if not self._conn.poll(timeout_s):
            self.close()
            raise TimeoutError(f"load generator gave no result in {timeout_s:.0f}s")
        result = self._conn.recv()
        if isinstance(result, BaseException):
            raise result
        assert isinstance(result, LoadResult)
        return result

    def close(self) -> None:
        with contextlib.suppress(OSError, BrokenPipeError):
            self._conn.send(None)
        self._proc.join(timeout=5)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join()
        self._conn.close()

    def __enter__(self) -> LoadGenerator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------- stats and output
def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100, nearest rank) of values; nan when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def latency_ms(xs: Sequence[float]) -> dict[str, float]:
    """p50, p99 and mean of durations in seconds, in milliseconds."""
    return {
        "p50_ms": percentile(xs, 50) * 1000.0,
        "p99_ms": percentile(xs, 99) * 1000.0,
        "mean_ms": sum(xs) / len(xs) * 1000.0 if xs else math.nan,
    }


def ratio(value: float, base: float) -> str:
    """value/base as '1.23x' ('-' when undefined)."""
    if not base or math.isnan(base) or math.isnan(value):
        return "-"
    return f"{value / base:.2f}x"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain text table: first column left-aligned, the others right-aligned."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        pairs = enumerate(zip(cells, widths, strict=True))
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in pairs)

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


def machine_note() -> str:
    """One line about where the numbers come from (they depend on everything else running)."""
    load = os.getloadavg()
    return (
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
        f"load average {load[0]:.2f}/{load[1]:.2f}/{load[2]:.2f} at the start"
    )


def _interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def unwind_on_sigterm() -> None:
    """Make SIGTERM unwind like Ctrl-C, so that servers, databases and temp dirs are cleaned."""
    signal.signal(signal.SIGTERM, _interrupt)


# --------------------------------------------------------------------------- profiles
#: Leaf frames of a thread that waits (for work, a lock or the network), not works.
WAIT_LEAVES = ("Condition.wait ", "Queue.get ", "Event.wait ", "Thread.join ")
#: Frames every sample shares (process start-up, thread bootstrap): no information.
BOILERPLATE = ("threading.py", "<frozen runpy>", "click/core.py", "uvicorn/main.py", "_compat.py")


def _py_spy() -> str | None:
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    return exe if Path(exe).exists() else None


def profiled(pid: int, run: Callable[[], LoadResult]) -> tuple[LoadResult, str | None]:
    """Call ``run`` while ``py-spy record --gil`` samples process ``pid``; (result, summary).

    ``--gil`` samples only the thread holding the GIL: in a one-process Python server that is
    where the CPU that limits throughput goes (native code that releases the GIL, such as
    SQLite's query execution, shows up less than it runs). The summary is None without py-spy.
    """
    exe = _py_spy()
    if exe is None:
        print(
            "--profile: py-spy is not installed (pip install py-spy); no profile", file=sys.stderr
        )
        return run(), None
    with temp_dir("smartrec-bench-profile-") as tmp:
        out = tmp / "profile.txt"
        cmd = [exe, "record", "--pid", str(pid), "--duration", "600", "--rate", "250", "--gil"]
        cmd += ["--format", "raw", "--output", str(out), "--nonblocking"]
        spy = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            time.sleep(1.0)  # py-spy attaches
            result = run()
        finally:
            spy.send_signal(signal.SIGINT)  # py-spy writes what it has on Ctrl-C
            try:
                _, err = spy.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                spy.kill()
                _, err = spy.communicate()
        if not out.exists():
            return result, "py-spy failed: " + err.decode(errors="replace")[-500:]
        return result, summarise_profile(out)


def summarise_profile(raw: Path, top: int = 22) -> str:
    """Inclusive and self share of busy samples per function, from py-spy's collapsed stacks."""
    inclusive: collections.Counter[str] = collections.Counter()
    self_: collections.Counter[str] = collections.Counter()
    total = waiting = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        frames = [f.replace(str(REPO_ROOT) + "/", "") for f in stack.split(";")]
        frames = [f.split("site-packages/")[-1] for f in frames]
        if frames[-1].startswith(WAIT_LEAVES):
            waiting += n
            continue
        total += n
        for f in set(frames):
            inclusive[f] += n
        self_[frames[-1]] += n
    if not total:
        return "no busy samples"
    useful = [f for f, _ in inclusive.most_common() if not any(b in f for b in BOILERPLATE)]
    rows = [
        [f"{inclusive[f] / total:6.1%}", f"{self_[f] / total:6.1%}", f[:140]] for f in useful[:top]
    ]
    rows_self = [[f"{c / total:6.1%}", f[:140]] for f, c in self_.most_common(12)]
    return (
        f"{total} samples holding the GIL ({waiting} more in waits, left out); "
        "shares of the busy samples\n"
        + table(["incl", "self", "function (file:line)"], rows)
        + "\n\ntop self time:\n"
        + table(["self", "function (file:line)"], rows_self)
    )


@contextlib.contextmanager
def temp_dir(prefix: str) -> Iterator[Path]:
    """A temporary directory removed afterwards, whatever happens."""
    with tempfile.TemporaryDirectory(prefix=prefix, ignore_cleanup_errors=True) as d:
        yield Path(d)
