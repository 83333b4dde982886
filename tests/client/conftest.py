"""Fixtures of the client suite: a real ``smartrec serve`` process, and a scripted stdlib server.

The session's server runs in its own home with ``max_batch_size`` 500, so that loading the
synthetic world (3000 events) needs the client's batching. Tests that write must use their own
user and item ids and leave the world's users and the champion alone.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from smartrec.client import SmartRec
from smartrec.schemas import TrainingJobOut
from tests.serverproc import smartrec_serve
from tests.worlds import World, small_world

#: The server's ``max_batch_size`` in this suite; clients here batch by it.
SERVER_BATCH = 500
EASE_ONLY = {"ease": {"l2": 50.0}}


# --------------------------------------------------------------------------- the real server
@dataclass(frozen=True)
class Server:
    url: str
    home: Path
    log: Path


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``smartrec serve`` on a free loopback port (auth off, as by default on 127.0.0.1)."""
    home = tmp_path_factory.mktemp("client-home")
    with smartrec_serve(home, SMARTREC_MAX_BATCH_SIZE=str(SERVER_BATCH)) as url:
        yield Server(url, home, home / "server.log")


# --------------------------------------------------------------------------- data
@pytest.fixture(scope="session")
def world() -> World:
    return small_world()


@dataclass(frozen=True)
class Trained:
    url: str
    world: World
    job: TrainingJobOut

    @property
    def version(self) -> str:
        assert self.job.model_version is not None
        return self.job.model_version


@pytest.fixture(scope="session")
def trained(server: Server, world: World) -> Trained:
    """The world loaded through the client and one EASE model trained through it."""
    with SmartRec(server.url, batch_size=SERVER_BATCH) as client:
        assert client.items.upsert(world.items).upserted == len(world.items)
        sent = client.events.send(world.events)
        assert (sent.accepted, sent.duplicates) == (len(world.events), 0)
        created = client.training.start(EASE_ONLY)
        job = client.training.wait(created.job_id, timeout=180, poll_interval=0.2)
    assert job.status == "succeeded", job
    return Trained(server.url, world, job)


@pytest.fixture()
def client(trained: Trained) -> Iterator[SmartRec]:
    with SmartRec(trained.url, batch_size=SERVER_BATCH, backoff=0.05) as c:
        yield c


class CountingTransport(httpx.HTTPTransport):
    """A real HTTP transport that also records each request's method and path."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[tuple[str, str]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append((request.method, request.url.raw_path.decode()))
        return super().handle_request(request)


# --------------------------------------------------------------------------- a scripted server
@dataclass
class Reply:
    status: int = 200
    body: Any = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


class Scripted:
    """A loopback stdlib HTTP server answering the replies in order (the last one repeats)."""

    def __init__(self) -> None:
        self.replies: list[Reply] = [Reply()]
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        scripted = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                with scripted._lock:
                    scripted.seen.append(
                        Seen(
                            self.command,
                            self.path,
                            {k.lower(): v for k, v in self.headers.items()},
                            body,
                            time.monotonic(),
                        )
                    )
                    reply = (
                        scripted.replies.pop(0)
                        if len(scripted.replies) > 1
                        else scripted.replies[0]
                    )
                raw = (
                    reply.body.encode()
                    if isinstance(reply.body, str)
                    else json.dumps(reply.body).encode()
                )
                self.send_response(reply.status)
                self.send_header("content-type", reply.content_type)
                self.send_header("content-length", str(len(raw)))
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(raw)

            do_GET = do_POST = do_DELETE = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def script(self, *replies: Reply) -> None:
        with self._lock:
            self.replies = list(replies)
            self.seen = []

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def scripted() -> Iterator[Scripted]:
    server = Scripted()
    try:
        yield server
    finally:
        server.close()


def problem(status: int, title: str, detail: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": f"https://smartrec.dev/problems/{title.lower().replace(' ', '-')}",
        "title": title,
        "status": status,
        "detail": detail,
        **extra,
    }
