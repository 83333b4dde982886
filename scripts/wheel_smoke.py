"""End-to-end smoke test of an installed smartrec (a wheel in a fresh virtual environment).

Run it with the environment's own Python, from a directory outside the source tree, so that
``import smartrec`` finds the installed package and nothing else::

    cd /tmp/somewhere && /path/to/venv/bin/python /path/to/scripts/wheel_smoke.py

It uses only the installed package, the standard library and httpx (a dependency). As a new
user would: it creates an API key with ``smartrec keys create``, starts ``smartrec serve`` with
keys required on a free port with a throw-away ``SMARTREC_HOME`` (the embedded defaults: SQLite,
MLflow on SQLite), loads a small seeded synthetic world over HTTP, trains through
``POST /v1/training-jobs`` (two single models, then the configured models with the default
multi-stage pipeline, which reads ``default_pipeline.toml`` from the package), and asks for
recommendations, similar items and a ranking, over HTTP and with the typed client. The server is
always stopped.

The last line is ``wheel smoke: N passed, M failed``; the exit status is 1 if any check failed.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from importlib import metadata, resources
from pathlib import Path
from typing import Any

import httpx

#: Models of the first job (fast); the second job trains the configured set (SMARTREC_MODELS
#: below, kept small) plus the default multi-stage pipeline.
FAST_MODELS = {"ease": {"l2": 50.0}, "popularity": {}}
START_TIMEOUT_S = 120.0
JOB_TIMEOUT_S = 300.0


class CheckFailed(Exception):
    pass


class Abort(Exception):
    """A required check failed: the checks after it depend on it."""


def require(condition: object, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def synthetic_world() -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Items, users and events of a small seeded world (the package's own generator)."""
    from smartrec.datasets import generate

    # Taste-driven enough that the pipeline usually beats the single models and is then served.
    syn = generate(300, 200, 12_000, n_categories=5, seed=7, taste=0.95, popularity_exponent=0.5)
    events = syn.events(id_prefix="e")
    users = [
        {"user_id": str(u), "attributes": {"cluster": int(c)}}
        for u, c in zip(syn.user_ids.tolist(), syn.user_cluster.tolist(), strict=True)
    ]
    return syn.items(), users, events


class Smoke:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.home = workdir / "home"
        self.log_path = workdir / "server.log"
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.server: subprocess.Popen[bytes] | None = None
        self.client = httpx.Client(base_url=self.base, timeout=60.0)
        self.passed: list[str] = []
        self.failed: list[str] = []
        self.world: tuple[list[dict[str, Any]], ...] = ()
        self.champion: str | None = None
        self.token = ""

    # ------------------------------------------------------------------ harness
    def check(self, name: str, fn: Callable[[], str | None], required: bool = False) -> bool:
        """Run one check; a failed ``required`` check stops the run (the rest depends on it)."""
        started = time.perf_counter()
        try:
            detail = fn()
        except Exception as exc:
            took = time.perf_counter() - started
            reason = str(exc)
            if not isinstance(exc, CheckFailed):
                reason = f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"
            self.failed.append(name)
            print(f"FAIL {name} ({took:.1f}s): {reason}", flush=True)
            if required:
                raise Abort(name) from None
            return False
        took = time.perf_counter() - started
        self.passed.append(name)
        print(f"ok   {name} ({took:.1f}s){': ' + detail if detail else ''}", flush=True)
        return True

    def finish(self) -> int:
        if self.failed:
            self.print_log_tail()
        print(f"wheel smoke: {len(self.passed)} passed, {len(self.failed)} failed", flush=True)
        return 1 if self.failed else 0

    def print_log_tail(self, lines: int = 60) -> None:
        if not self.log_path.exists():
            return
        tail = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        print(f"---- server log ({self.log_path}), last {len(tail)} lines ----", flush=True)
        print("\n".join(tail), flush=True)
        print("---- end of server log ----", flush=True)

    def get(self, path: str, **params: Any) -> Any:
        response = self.client.get(path, params=params)
        require(response.status_code == 200, f"GET {path}: {response.status_code} {response.text}")
        return response.json()

    def post(self, path: str, body: Any, status: int = 200) -> Any:
        response = self.client.post(path, json=body)
        require(
            response.status_code == status,
            f"POST {path}: {response.status_code} (expected {status}) {response.text[:2000]}",
        )
        return response.json()

    # ------------------------------------------------------------------ server
    def env(self) -> dict[str, str]:
        env = {
            **os.environ,
            "SMARTREC_HOME": str(self.home),
            "SMARTREC_HOST": "127.0.0.1",
            # Keys required, as on any address but loopback: the smoke test uses one.
            "SMARTREC_AUTH": "required",
            # The configured set of the second job: small, so that the pipeline trains fast.
            "SMARTREC_MODELS": json.dumps(FAST_MODELS),
        }
        for name in ("SMARTREC_CONFIG", "PYTHONPATH", "PYTHONHOME"):
            env.pop(name, None)  # the installed package, on its embedded defaults
        return env

    def create_key(self) -> str:
        """``smartrec keys create`` of the installed package; the client sends its token."""
        smartrec = Path(sys.executable).with_name("smartrec")
        out = subprocess.run(
            [str(smartrec), "keys", "create", "--scope", "read,ingest,admin", "--json"],
            cwd=self.workdir,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        require(out.returncode == 0, f"smartrec keys create failed: {out.stderr[-2000:]}")
        key = json.loads(out.stdout)
        self.token = str(key["token"])
        self.client.headers["Authorization"] = f"Bearer {self.token}"
        return f"key {key['key_id']} ({', '.join(key['scopes'])})"

    def check_auth(self) -> str:
        response = httpx.get(f"{self.base}/v1/popular", timeout=30.0)
        require(response.status_code == 401, f"no key: {response.status_code} {response.text}")
        require(self.client.get("/v1/popular").status_code == 200, "the key is refused")
        return "401 without the key, 200 with it"

    def check_typed_client(self) -> str:
        from smartrec.client import SmartRec

        user = self.world[1][0]["user_id"]
        with SmartRec(self.base, api_key=self.token) as client:
            answer = client.users.recommendations(user, n=5, fields=["title"])
            require(answer.items, f"the client got no items: {answer}")
            require(all(i.title for i in answer.items), f"no titles: {answer}")
            first = client.items.list(limit=50)
            require(next(iter(first), None) is not None, "items.list gave nothing")
        return f"{len(answer.items)} items with titles for user {user}"

    def start_server(self) -> str:
        smartrec = Path(sys.executable).with_name("smartrec")
        require(smartrec.exists(), f"no smartrec command next to {sys.executable}")
        env = self.env()
        with self.log_path.open("wb") as log:
            self.server = subprocess.Popen(
                [str(smartrec), "serve", "--port", str(self.port)],
                cwd=self.workdir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            code = self.server.poll()
            require(code is None, f"the server exited with status {code}")
            try:
                if self.client.get("/healthz", timeout=2.0).status_code == 200:
                    return self.base
            except httpx.TransportError:
                pass
            require(time.monotonic() < deadline, f"no /healthz after {START_TIMEOUT_S:.0f}s")
            time.sleep(0.2)

    def stop_server(self) -> None:
        if self.server is None or self.server.poll() is not None:
            return
        os.killpg(self.server.pid, signal.SIGTERM)
        try:
            self.server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.server.pid, signal.SIGKILL)
            self.server.wait(timeout=10)

    # ------------------------------------------------------------------ checks
    def check_version(self) -> str:
        smartrec = Path(sys.executable).with_name("smartrec")
        expected = f"smartrec {metadata.version('smartrec')}"
        for flag in ("--version", "-V"):
            out = subprocess.run(
                [str(smartrec), flag], capture_output=True, text=True, timeout=60, check=False
            )
            require(out.returncode == 0, f"smartrec {flag}: status {out.returncode} {out.stderr}")
            require(out.stdout.strip() == expected, f"smartrec {flag} printed {out.stdout!r}")
        return expected

    def check_installed(self) -> str:
        import smartrec
        from smartrec.pipeline.spec import load_spec

        where = Path(smartrec.__file__).resolve()
        prefix = Path(sys.prefix).resolve()
        require(prefix in where.parents, f"smartrec imported from {where}, not from {prefix}")
        spec = load_spec(None)  # default_pipeline.toml, read through importlib.resources
        require(spec.retrievers, "the default pipeline has no retriever")
        migrations = where.parent / "storage" / "sql" / "migrations"
        versions = sorted(p.name for p in (migrations / "versions").glob("*.py"))
        require((migrations / "env.py").is_file(), f"no env.py in {migrations}")
        require((migrations / "script.py.mako").is_file(), f"no script.py.mako in {migrations}")
        require(versions, f"no migration in {migrations / 'versions'}")
        require(resources.files("smartrec").joinpath("py.typed").is_file(), "no py.typed")
        return f"{where.parent}; {len(spec.retrievers)} retrievers; {len(versions)} migrations"

    def check_ingest(self) -> str:
        items, users, events = self.world = synthetic_world()
        upserted = self.post("/v1/items", {"items": items})
        require(upserted == {"upserted": len(items)}, f"items: {upserted}")
        upserted = self.post("/v1/users", {"users": users})
        require(upserted == {"upserted": len(users)}, f"users: {upserted}")
        for start in range(0, len(events), 2000):
            body = {"events": events[start : start + 2000]}
            stored = self.post("/v1/events", body, status=202)
            require(stored["accepted"] == len(body["events"]), f"events: {stored}")
        return f"{len(items)} items, {len(users)} users, {len(events)} events"

    def train(self, body: dict[str, Any] | None) -> dict[str, Any]:
        response = self.client.post("/v1/training-jobs", json=body)  # None: no body
        require(response.status_code == 202, f"POST /v1/training-jobs: {response.text}")
        job_id = response.json()["job_id"]
        deadline = time.monotonic() + JOB_TIMEOUT_S
        while True:
            job: dict[str, Any] = self.get(f"/v1/training-jobs/{job_id}")
            if job["status"] == "failed":
                raise CheckFailed(f"training job {job_id} failed: {job.get('error')}")
            if job["status"] == "succeeded":
                return job
            require(
                time.monotonic() < deadline,
                f"training job {job_id} still {job['status']} after {JOB_TIMEOUT_S:.0f}s",
            )
            time.sleep(0.5)

    def check_champion(self, job: dict[str, Any]) -> None:
        """The job's version is the champion in the registry and is served (``/readyz``)."""
        version = job["model_version"]
        models = self.get("/v1/models")
        champions = [v["version"] for v in models["versions"] if "champion" in v["aliases"]]
        require(champions == [version], f"champion {champions}, expected [{version}]: {models}")
        ready = self.get("/readyz")
        require(ready.get("model_version") == version, f"/readyz: {ready}, expected {version}")
        self.champion = version

    def check_fast_training(self) -> str:
        job = self.train({"pipeline": FAST_MODELS})
        result = job["result"]
        require(result["promoted"] is True, f"the first model was not promoted: {result}")
        require(set(result["candidates"]) == set(FAST_MODELS), f"candidates: {result}")
        self.check_champion(job)
        return f"version {job['model_version']} ({result['algorithm']}) is the champion"

    def check_pipeline_training(self) -> str:
        job = self.train(None)  # the configured models and the default multi-stage pipeline
        result = job["result"]
        skipped = [n for n in result.get("notes", []) if "skipped" in n]
        require(not skipped, f"training skipped a candidate: {skipped}")
        require("pipeline" in result["candidates"], f"no pipeline candidate: {result}")
        if result["promoted"]:
            self.check_champion(job)
        else:
            ready = self.get("/readyz")
            require(ready.get("model_version") == self.champion, f"/readyz: {ready}")
        return (
            f"version {job['model_version']} ({result['algorithm']}, "
            f"{'promoted' if result['promoted'] else 'not promoted'}) in {result['seconds']:.1f}s"
        )

    def _items(self, body: dict[str, Any], what: str) -> list[str]:
        ids = [i["item_id"] for i in body.get("items", [])]
        require(ids, f"{what}: no items: {body}")
        require(body.get("model_version") == self.champion, f"{what}: served by {body}")
        return ids

    def check_recommendations(self) -> str:
        _, users, _ = self.world
        user = users[0]["user_id"]
        ids = self._items(self.get(f"/v1/users/{user}/recommendations", n=10), "recommendations")
        return f"{user}: {len(ids)} items"

    def check_similar(self) -> str:
        items = self.world[0]
        item = items[0]["item_id"]
        ids = self._items(self.get(f"/v1/items/{item}/similar", n=10), "similar items")
        require(item not in ids, f"similar items of {item} include itself: {ids}")
        return f"{item}: {len(ids)} items"

    def check_ranking(self) -> str:
        items, users, _ = self.world
        candidates = [i["item_id"] for i in items[:20]]
        body = self.post("/v1/rankings", {"user_id": users[1]["user_id"], "item_ids": candidates})
        ids = self._items(body, "ranking")
        require(set(ids) <= set(candidates), f"ranking returned other items: {ids}")
        return f"{len(ids)} of {len(candidates)} ranked"

    def run(self) -> int:
        self.check("smartrec --version", self.check_version)
        self.check("installed package and its data files", self.check_installed)
        try:
            self.check("smartrec keys create", self.create_key, required=True)
            self.check("server starts (/healthz)", self.start_server, required=True)
            self.check("API key required", self.check_auth)
            self.check("ingest items, users, events", self.check_ingest, required=True)
            self.check("train ease + popularity, promoted", self.check_fast_training, required=True)
            self.check("train the default multi-stage pipeline", self.check_pipeline_training)
            self.check("GET /v1/users/{id}/recommendations", self.check_recommendations)
            self.check("GET /v1/items/{id}/similar", self.check_similar)
            self.check("POST /v1/rankings", self.check_ranking)
            self.check("typed client (smartrec.client)", self.check_typed_client)
        except Abort as exc:
            print(f"stopped: the checks after {str(exc)!r} need it", flush=True)
        finally:
            self.client.close()
            self.stop_server()
        return self.finish()


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="smartrec-smoke-") as tmp:
        return Smoke(Path(tmp)).run()


if __name__ == "__main__":
    sys.exit(main())
