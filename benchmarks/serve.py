"""Serving latency on MovieLens-100K: recommendations, similar items, popular, against a baseline.

The smartrec server is a real ``uvicorn`` subprocess on 127.0.0.1 whose ``SMARTREC_HOME`` holds
ML-100K ingested and a trained champion (prepared once with ``smartrec demo --no-serve`` into a
cache directory and reused). The baseline is a bare FastAPI endpoint (:func:`baseline_app`),
served the same way, that returns a fixed answer of the same JSON shape and size: the ratio to it
is what smartrec's work costs on top of HTTP and the framework. The load comes from a separate
process over keep-alive connections (closed loop, ``--concurrency`` connections), requests spread
over all 943 users (and all 1,682 items for similar items). Targets are measured in interleaved
rounds so that noise from other work on the machine falls on all of them alike.

Run from the repository root: ``.venv/bin/python benchmarks/serve.py [--duration 15] [--json]``.

``--pipeline`` measures the full multi-stage pipeline instead, on a seeded synthetic catalogue
(default 1M items, 100k users, 4M events; ``--items/--users/--events``): the home is prepared
once by ``_pipeline_home.prepare`` (data bulk-loaded into SQLite, pipeline fitted and registered
as the champion in the home's MLflow registry), the same uvicorn server loads it at start, the
requests spread over random active users, and an in-process stage profile of
``--profile-requests`` requests is printed after the table.

``--auth`` measures what API keys and the access log cost on the recommendation path instead:
the same requests to three smartrec servers on the ML-100K home, run side by side in the same
interleaved rounds (see :data:`AUTH_CONFIGS`): auth off, auth required with a read key created in
the home before the start (every request sends ``Authorization: Bearer <token>``), and auth off
without the access log. Each is served as ``smartrec serve`` serves it (logging configured at
``info``, so the access log writes its lines); the ratios to ``auth-off`` are the costs.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import functools
import json
import multiprocessing as mp
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from fastapi import FastAPI

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _pipeline_home
from _common import (
    BENCH_DIR,
    REPO_ROOT,
    LoadGenerator,
    LoadResult,
    Server,
    get_json,
    get_text,
    http_request,
    machine_note,
    percentile,
    profiled,
    ratio,
    table,
    unwind_on_sigterm,
)

DEFAULT_HOME = Path("~/.cache/smartrec/bench-ml100k").expanduser()
READY_MARKER = ".bench-ready"
ML100K_USERS = 943
ML100K_ITEMS = 1682
ML100K_RATINGS = 100_000
FIXED_ANSWER_ENV = "SMARTREC_BENCH_FIXED_ANSWER"
GOAL_P99_MS = 10.0
#: The multi-stage issue's goals (``--pipeline``): throughput, and share of the bare endpoint's.
GOAL_RATE = 1000
GOAL_SHARE = 0.5
#: ``--auth``'s goal: auth required keeps at least this share of the throughput without auth.
GOAL_AUTH_SHARE = 0.95

#: ``--auth``: the servers measured side by side: name -> (SMARTREC_AUTH, access log on, the
#: load sends the key). Everything else is the same in all three.
AUTH_CONFIGS: dict[str, tuple[str, bool, bool]] = {
    "auth-off": ("off", True, False),
    "auth-required": ("required", True, True),
    "auth-off-no-log": ("off", False, False),
}
#: The app factory (and the directory to import it from) that :func:`logged_app` serves.
APP_ENV = "SMARTREC_BENCH_APP"
APP_DIR_ENV = "SMARTREC_BENCH_APP_DIR"

#: Endpoints that can be measured: name -> the requests sent.
ENDPOINTS: dict[str, str] = {
    "recommendations": "GET /v1/users/{user}/recommendations?n=10 (943 users)",
    "similar": "GET /v1/items/{item}/similar?n=10 (1,682 items)",
    "popular": "GET /v1/popular?n=10",
    "popular-window": "GET /v1/popular?n=10&window=30d (reads the event log)",
}


def baseline_app() -> FastAPI:
    """A bare endpoint returning a fixed answer (a real smartrec answer, passed by env var)."""
    fixed = json.loads(os.environ.get(FIXED_ANSWER_ENV) or '{"model_version": null, "items": []}')
    app = FastAPI()

    @app.get("/v1/users/{user_id}/recommendations")
    async def recommendations(user_id: str, n: int = 10) -> dict[str, Any]:
        # `async` like smartrec's handler, which answers from a fresh feed on the event loop:
        # neither pays a thread-pool hop (the fastest bare endpoint, the stricter baseline).
        return {
            "user_id": user_id,
            "model_version": fixed["model_version"],
            "items": fixed["items"][:n],
            "next_page_token": None,
        }

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def logged_app() -> Any:
    """The smartrec app configured as ``smartrec serve`` configures it: logging set up from
    ``SMARTREC_LOG_LEVEL`` / ``SMARTREC_LOG_FORMAT`` first, so that the access log writes its
    lines (a bare ``uvicorn --factory smartrec.api:create_app`` leaves the root logger at
    WARNING, and the access log then skips every request). The factory is ``$SMARTREC_BENCH_APP``
    (``--smartrec-app``), imported from ``$SMARTREC_BENCH_APP_DIR`` when set."""
    import importlib

    if os.environ.get(APP_DIR_ENV):  # first: smartrec itself may come from there
        sys.path.insert(0, os.environ[APP_DIR_ENV])
    from smartrec.config import Settings
    from smartrec.logs import configure

    module, _, name = os.environ.get(APP_ENV, "smartrec.api:create_app").partition(":")
    factory = getattr(importlib.import_module(module), name)
    settings = Settings()
    configure(settings.log_level, settings.log_format)
    return factory()


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- the prepared home
def count_events(home: Path) -> int:
    db = home / "smartrec.db"
    if not db.exists():
        return 0
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])


def prepare_home(home: Path, rebuild: bool) -> None:
    """ML-100K ingested and a champion trained in ``home``, once (``smartrec demo --no-serve``)."""
    home.mkdir(parents=True, exist_ok=True)
    with open(home.parent / f".{home.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two benchmark runs never prepare it at once
        marker = home / READY_MARKER
        if rebuild:
            if any(home.iterdir()) and not (home / "smartrec.db").exists():
                raise SystemExit(f"{home} does not look like a smartrec home; not wiping it")
            log(f"--rebuild: wiping {home}")
            shutil.rmtree(home)
            home.mkdir(parents=True)
        if marker.exists():
            return
        log(f"preparing {home}: smartrec demo --no-serve (ML-100K ingest + training, once)")
        done = subprocess.run(
            [*smartrec_cli(), "demo", "--no-serve"],
            cwd=REPO_ROOT,
            env=home_env(home),
            capture_output=True,
            text=True,
            timeout=1800,
        )
        if done.returncode != 0:
            raise SystemExit(f"smartrec demo failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        stored = count_events(home)
        if stored != ML100K_RATINGS:
            raise SystemExit(
                f"{home} holds {stored} events, not {ML100K_RATINGS}: an earlier preparation was "
                "interrupted; run again with --rebuild"
            )
        marker.write_text("smartrec demo --no-serve completed\n")


def smartrec_cli() -> list[str]:
    exe = Path(sys.executable).with_name("smartrec")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "smartrec.cli"]


def home_env(home: Path) -> dict[str, str]:
    env = {**os.environ, "SMARTREC_HOME": str(home)}
    env.pop("SMARTREC_DATABASE_URL", None)
    return env


def create_key(home: Path) -> tuple[str, str]:
    """A read key in the home's database (``smartrec keys create``): (key id, token)."""
    done = subprocess.run(
        [*smartrec_cli(), "keys", "create", "--scope", "read", "--name", "bench-auth", "--json"],
        cwd=REPO_ROOT,
        env=home_env(home),
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        raise SystemExit(
            f"smartrec keys create failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
        )
    doc = json.loads(done.stdout.strip().splitlines()[-1])
    return str(doc["key_id"]), str(doc["token"])


def revoke_key(home: Path, key_id: str) -> None:
    """Revoke the run's key (its row stays, revoked: the home keeps no usable benchmark key)."""
    done = subprocess.run(
        [*smartrec_cli(), "keys", "revoke", key_id],
        cwd=REPO_ROOT,
        env=home_env(home),
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        log(f"could not revoke the benchmark key {key_id}: {done.stderr[-500:]}")


def prepare_pipeline(args: argparse.Namespace) -> None:
    """The synthetic pipeline home, prepared once in a spawned process (its memory is freed)."""
    home = args.home.expanduser().resolve()
    home.parent.mkdir(parents=True, exist_ok=True)
    with open(home.parent / f".{home.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if args.rebuild and home.exists():
            if any(home.iterdir()) and not (home / "smartrec.db").exists():
                raise SystemExit(f"{home} does not look like a smartrec home; not wiping it")
            log(f"--rebuild: wiping {home}")
            shutil.rmtree(home)
        if not (home / _pipeline_home.READY_MARKER).exists():
            log(f"preparing {home} (once): data, pipeline fit, registration")
            ctx = mp.get_context("spawn")
            proc = ctx.Process(
                target=_pipeline_home.prepare_entry,
                args=(
                    {
                        "home": home,
                        "n_items": args.items,
                        "n_users": args.users,
                        "n_events": args.events,
                        "seed": args.seed,
                        "content": not args.no_content,
                        "ranker_users": args.ranker_users,
                    },
                ),
            )
            proc.start()
            proc.join()
            if proc.exitcode != 0:
                raise SystemExit(f"preparing {home} failed (exit code {proc.exitcode})")
    info = json.loads((home / _pipeline_home.READY_MARKER).read_text())
    args.home = home
    args.pipeline_info = info
    if args.feed_users > 0:
        # The users the server builds feeds for: the most recently active, as it picks them.
        from smartrec.storage.sql import SqlStore

        store = SqlStore(f"sqlite:///{home / 'smartrec.db'}")
        try:
            users = store.active_users(args.feed_users)
        finally:
            store.close()
    else:
        users = list(info["user_ids"])
    random.Random(args.seed).shuffle(users)
    args.pipeline_users = users[:20_000]


def pipeline_profile(args: argparse.Namespace) -> str:
    """The in-process stage profile, in a spawned process (servers are stopped by then)."""
    log(f"in-process profile: {args.profile_requests} requests")
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(
        target=_pipeline_home.profile_entry,
        args=(
            child,
            {
                "home": args.home,
                "user_ids": args.pipeline_users,
                "requests": args.profile_requests,
                "seed": args.seed,
            },
        ),
    )
    proc.start()
    child.close()
    text = parent.recv() if parent.poll(1800) else "profile: no answer in 30 min"
    proc.join(timeout=60)
    return str(text)


# --------------------------------------------------------------------------- requests
def endpoint_requests(
    name: str,
    seed: int,
    users: list[str] | None = None,
    headers: dict[str, str] | None = None,
) -> list[bytes]:
    """Pre-serialised requests for an endpoint, spread over all users / items in a seeded order
    (``users``: the user ids to spread over, instead of ML-100K's; ``headers`` on each)."""
    rng = random.Random(seed)
    if name == "recommendations":
        ids = list(users) if users else [str(u) for u in range(1, ML100K_USERS + 1)]
        rng.shuffle(ids)
        return [
            http_request("GET", f"/v1/users/{u}/recommendations?n=10", headers=headers) for u in ids
        ]
    if name == "similar":
        ids = [str(i) for i in range(1, ML100K_ITEMS + 1)]
        rng.shuffle(ids)
        return [http_request("GET", f"/v1/items/{i}/similar?n=10") for i in ids]
    if name == "popular":
        return [http_request("GET", "/v1/popular?n=10")]
    if name == "popular-window":
        return [http_request("GET", "/v1/popular?n=10&window=30d")]
    raise ValueError(name)


def preflight(port: int, user: str = "1", headers: dict[str, str] | None = None) -> dict[str, Any]:
    """One answer of each kind: 10 items from the model, or the benchmark means nothing."""
    status, ready = get_json(port, "/readyz")
    if status != 200 or not ready or not ready.get("model_version"):
        raise SystemExit(f"smartrec is not serving a model: /readyz -> {status} {ready}")
    path = f"/v1/users/{user}/recommendations?n=10"
    status, recs = get_json(port, path, timeout=60.0, headers=headers)
    if status != 200 or len((recs or {}).get("items", [])) != 10:
        raise SystemExit(f"/v1/users/{user}/recommendations -> {status} {recs}")
    status, models = get_json(port, "/v1/models", headers=headers)
    algorithm = "?"
    with contextlib.suppress(Exception):
        for version in models.get("versions", []):
            if str(version.get("version")) == str(ready["model_version"]):
                algorithm = version.get("algorithm") or version.get("tags", {}).get("algorithm")
    if algorithm == "?":
        kinds = [r.get("algorithm") for r in recs["items"][0].get("reasons", [])]
        algorithm = next((k for k in kinds if k), "?")
    return {"model_version": ready["model_version"], "algorithm": algorithm, "sample": recs}


# --------------------------------------------------------------------------- profiling
# --------------------------------------------------------------------------- the run
def run_config(
    args: argparse.Namespace, load: LoadGenerator, workers: int, concurrencies: list[int]
) -> list[dict[str, Any]]:
    """Start both servers with ``workers`` workers, measure every endpoint at every concurrency,
    stop them; one result per concurrency."""
    tag = f"[workers={workers}]"
    users = args.pipeline_users if args.pipeline else None
    with contextlib.ExitStack() as stack:
        log(f"{tag} starting smartrec on {args.home} ...")
        started = time.perf_counter()
        smartrec = stack.enter_context(
            Server(
                "smartrec",
                args.smartrec_app,
                app_dir=args.smartrec_app_dir,
                env={
                    "SMARTREC_HOME": str(args.home),
                    "SMARTREC_LOG_LEVEL": "warning",
                    # 0 by default: every request computed, none answered from the user cache.
                    "SMARTREC_USER_CACHE_TTL_S": str(args.user_cache_ttl),
                    **feed_env(args),
                },
                workers=workers,
                start_timeout_s=1800.0 if args.pipeline else 120.0,
            )
        )
        start_s = time.perf_counter() - started
        log(f"{tag} smartrec ready in {start_s:.1f}s")
        # Feeds are on by default (ML-100K too): measure once they are built, not while.
        feeds = wait_for_feeds(smartrec.port, workers)
        info = preflight(smartrec.port, users[0] if users else "1")
        fixed = json.dumps(
            {"model_version": info["model_version"], "items": info["sample"]["items"]}
        )
        log(f"{tag} starting baseline ...")
        baseline = stack.enter_context(
            Server(
                "baseline",
                "serve:baseline_app",
                app_dir=BENCH_DIR,
                env={FIXED_ANSWER_ENV: fixed},
                workers=workers,
            )
        )
        targets: list[tuple[str, Server, list[bytes]]] = [
            ("baseline", baseline, endpoint_requests("recommendations", args.seed, users))
        ]
        targets += [(e, smartrec, endpoint_requests(e, args.seed, users)) for e in args.endpoints]
        configs = [measure(args, load, workers, c, targets, smartrec, info) for c in concurrencies]
        for name, server, _ in targets:
            if any(r["errors"] for cfg in configs for r in cfg["rows"] if r["endpoint"] == name):
                log(f"--- server log of {name} (it answered errors) ---\n{server.log_text()}")
        rss = server_rss_mib(smartrec.pid)
        log(f"{tag} stopping servers")
    for cfg in configs:
        cfg["start_s"] = start_s
        cfg["server_rss_mib"] = rss
        cfg["feeds"] = feeds
    return configs


def feed_env(args: argparse.Namespace) -> dict[str, str]:
    """Feeds built ahead for the users the requests go to (``--feed-users``), or none."""
    if not args.pipeline:
        return {}
    if args.feed_users <= 0:
        return {"SMARTREC_FEEDS_ENABLED": "false"}
    return {
        "SMARTREC_FEED_PRECOMPUTE_USERS": str(args.feed_users),
        "SMARTREC_FEED_ENTRIES": str(max(args.feed_users, 1000) * 2),
    }


def wait_for_feeds(port: int, workers: int) -> dict[str, Any] | None:
    """Wait until the server has built its feeds (``/readyz`` says), before measuring; None at
    once when its feeds are off. Each worker builds its own and any of them answers a given
    connection: wait until many answers in a row say done."""
    started = time.perf_counter()
    done_in_a_row = 0
    while True:
        _, ready = get_json(port, "/readyz", timeout=60.0)
        if not (ready or {}).get("model_version"):
            raise SystemExit(f"smartrec is not serving a model (its log says why): {ready}")
        if not (ready or {}).get("feeds", {}).get("enabled", False):
            return None
        build = (ready or {}).get("feeds", {}).get("build", {})
        if build.get("error"):
            raise SystemExit(f"feed build failed: {build['error']}")
        done_in_a_row = done_in_a_row + 1 if build.get("done") else 0
        if done_in_a_row < 10 * workers:
            time.sleep(0.2 if done_in_a_row else 2.0)
        else:
            log(
                f"feeds built: {build.get('built')} of {build.get('target')} users in "
                f"{build.get('seconds')}s"
            )
            return dict(build)
        if time.perf_counter() - started > 3600:
            raise SystemExit(f"feeds not built after an hour: {ready}")


def server_rss_mib(pid: int | None) -> float | None:
    """Resident memory of a server process (and its children), MiB; None if unknown."""
    if pid is None:
        return None
    try:
        done = subprocess.run(
            ["ps", "-o", "rss=", "--pid", str(pid), "--ppid", str(pid)],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return sum(int(x) for x in done.stdout.split()) / 1024
    except (OSError, ValueError, subprocess.SubprocessError):
        return None


def measure(
    args: argparse.Namespace,
    load: LoadGenerator,
    workers: int,
    concurrency: int,
    targets: list[tuple[str, Server, list[bytes]]],
    smartrec: Server,
    info: dict[str, Any],
) -> dict[str, Any]:
    """Warm up and measure every target at one concurrency, in interleaved rounds."""
    tag = f"[workers={workers} c={concurrency}]"
    for name, server, reqs in targets:
        log(f"{tag} warm-up {name} ({args.warmup:g}s)")
        w = load.run(server.port, reqs, concurrency=concurrency, duration_s=args.warmup)
        if w.errors:
            log(f"{tag} {name}: {w.errors} errors in warm-up: {w.first_error}")

    results: dict[str, LoadResult] = {}
    per_round = args.duration / args.rounds
    for r in range(args.rounds):
        order = targets[r % len(targets) :] + targets[: r % len(targets)]
        for name, server, reqs in order:
            res = load.run(server.port, reqs, concurrency=concurrency, duration_s=per_round)
            log(
                f"{tag} round {r + 1}/{args.rounds} {name}: {res.rate:,.0f} req/s, "
                f"p99 {percentile(res.latencies, 99) * 1e3:.1f} ms, {res.errors} errors"
            )
            results[name] = results[name].merge(res) if name in results else res

    profile_text = None
    if args.profile and workers == 1:
        profile_text = profile_run(args, load, smartrec, targets, concurrency)
    return {
        "workers": workers,
        "concurrency": concurrency,
        "model_version": info["model_version"],
        "algorithm": info["algorithm"],
        "rows": summarise(workers, concurrency, results),
        "profile": profile_text,
    }


def profile_run(
    args: argparse.Namespace,
    load: LoadGenerator,
    server: Server,
    targets: list[tuple[str, Server, list[bytes]]],
    concurrency: int,
) -> str | None:
    """An extra, unmeasured run of each profiled endpoint under py-spy; the summaries as text."""
    assert server.pid is not None
    texts = []
    for name, srv, reqs in targets:
        if srv is not server or name not in args.profile:
            continue
        log(f"profiling {name} for {args.profile_seconds:g}s")
        _, text = profiled(
            server.pid,
            functools.partial(
                load.run,
                server.port,
                reqs,
                concurrency=concurrency,
                duration_s=args.profile_seconds,
            ),
        )
        if text is None:
            return None
        texts.append(f"profile of {name} (py-spy --gil on the server process):\n{text}")
    return "\n\n".join(texts) or None


def summarise(
    workers: int, concurrency: int, results: dict[str, LoadResult]
) -> list[dict[str, Any]]:
    base = results["baseline"]
    base_p = {q: percentile(base.latencies, q) for q in (50, 90, 99)}
    rows = []
    for name, res in results.items():
        p = {q: percentile(res.latencies, q) for q in (50, 90, 99)}
        rows.append(
            {
                "endpoint": name,
                "workers": workers,
                "concurrency": concurrency,
                "requests": res.count,
                "errors": res.errors,
                "first_error": res.first_error,
                "req_per_s": res.rate,
                "req_per_s_vs_baseline": res.rate / base.rate,
                "p50_ms": p[50] * 1e3,
                "p90_ms": p[90] * 1e3,
                "p99_ms": p[99] * 1e3,
                "max_ms": max(res.latencies, default=float("nan")) * 1e3,
                "p50_vs_baseline": p[50] / base_p[50],
                "p99_vs_baseline": p[99] / base_p[99],
                "p99_goal_met": p[99] * 1e3 <= GOAL_P99_MS,
            }
        )
    return rows


# --------------------------------------------------------------------------- --auth
def run_auth(args: argparse.Namespace, load: LoadGenerator, workers: int) -> list[dict[str, Any]]:
    """Measure the :data:`AUTH_CONFIGS` on ``--server-sets`` fresh sets of servers, one set
    after another (a read key is created first and revoked at the end); one result per
    concurrency, pooled over the sets.

    Two servers of the same configuration differ by several percent in CPU per request (memory
    layout, the order they started in): a single set cannot tell a 5 % cost from that, so each
    set starts every configuration afresh and the sets are pooled.
    """
    tag = f"[auth workers={workers}]"
    key_id, token = create_key(args.home)
    log(f"{tag} created read key {key_id} in {args.home}")
    bearer = {"Authorization": f"Bearer {token}"}
    acc: dict[int, AuthRuns] = {c: AuthRuns() for c in args.concurrency}
    info: dict[str, Any] = {}
    feeds: list[dict[str, Any]] = []
    rss: list[dict[str, float | None]] = []
    profiles: dict[int, str | None] = {}
    try:
        for set_no in range(args.server_sets):
            stag = f"{tag} [set {set_no + 1}/{args.server_sets}]"
            with contextlib.ExitStack() as stack:
                servers = start_auth_servers(args, stack, workers, stag)
                feeds.append({n: wait_for_feeds(s.port, workers) for n, s in servers.items()})
                targets: list[tuple[str, Server, list[bytes]]] = []
                for name, srv in servers.items():
                    headers = bearer if AUTH_CONFIGS[name][2] else None
                    checked = preflight(srv.port, "1", headers)
                    info = info or checked
                    reqs = endpoint_requests("recommendations", args.seed, None, headers)
                    targets.append((name, srv, reqs))
                # Auth is really on where it should be: no key, no answer.
                for name, srv in servers.items():
                    status, _ = get_json(srv.port, "/v1/users/1/recommendations?n=10")
                    want = 401 if AUTH_CONFIGS[name][0] == "required" else 200
                    if status != want:
                        raise SystemExit(f"{name}: a request without a key -> {status}, not {want}")
                last = set_no == args.server_sets - 1
                for c in args.concurrency:
                    measure_auth(args, load, f"{stag} [c={c}]", c, targets, acc[c], set_no)
                    if last and args.profile and workers == 1:
                        profiles[c] = profile_auth(args, load, targets, c)
                for name, srv in servers.items():
                    if any(run.errors[name] for run in acc.values()):
                        log(f"--- server log of {name} (it answered errors) ---\n{srv.log_text()}")
                rss.append({name: server_rss_mib(srv.pid) for name, srv in servers.items()})
                log(f"{stag} stopping servers")
    finally:
        revoke_key(args.home, key_id)
    return [
        {
            "workers": workers,
            "concurrency": c,
            "server_sets": args.server_sets,
            "model_version": info["model_version"],
            "algorithm": info["algorithm"],
            "rows": summarise_auth(workers, c, acc[c]),
            "feeds": feeds,
            "server_rss_mib": rss,
            "key_id": key_id,
            "profile": profiles.get(c),
        }
        for c in args.concurrency
    ]


def start_auth_servers(
    args: argparse.Namespace, stack: contextlib.ExitStack[Any], workers: int, tag: str
) -> dict[str, Server]:
    """One server per :data:`AUTH_CONFIGS` entry, the same in everything else."""
    servers: dict[str, Server] = {}
    for name, (auth, access_log, _) in AUTH_CONFIGS.items():
        log(f"{tag} starting {name} (SMARTREC_AUTH={auth}, access log {access_log}) ...")
        servers[name] = stack.enter_context(
            Server(
                name,
                "serve:logged_app",
                app_dir=BENCH_DIR,
                env={
                    "SMARTREC_HOME": str(args.home),
                    # As `smartrec serve` runs by default: the access log writes.
                    "SMARTREC_LOG_LEVEL": "info",
                    "SMARTREC_AUTH": auth,
                    "SMARTREC_ACCESS_LOG": "true" if access_log else "false",
                    "SMARTREC_USER_CACHE_TTL_S": str(args.user_cache_ttl),
                    APP_ENV: args.smartrec_app,
                    APP_DIR_ENV: str(args.smartrec_app_dir or ""),
                },
                workers=workers,
            )
        )
    return servers


class AuthRuns:
    """What the rounds measured at one concurrency, per configuration, over all server sets."""

    def __init__(self) -> None:
        names = list(AUTH_CONFIGS)
        self.results: dict[str, list[LoadResult]] = {n: [] for n in names}
        self.cpu: dict[str, list[float | None]] = {n: [] for n in names}  # us per request
        self.sets: list[int] = []  # the server set of each round
        self.lane: dict[str, list[float]] = {n: [0.0, 0.0] for n in names}  # answered, routed
        self.errors: dict[str, int] = dict.fromkeys(names, 0)


def process_cpu_s(pid: int | None) -> float | None:
    """User + system CPU seconds of a server process and its direct children (uvicorn's
    workers), from ``/proc``; None where that cannot be read."""
    if pid is None:
        return None
    try:
        pids = [pid]
        children = Path(f"/proc/{pid}/task/{pid}/children")
        if children.exists():
            pids += [int(c) for c in children.read_text().split()]
        ticks = 0
        for p in pids:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
        return ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def lane_counts(port: int) -> dict[str, float]:
    """The feed lane's counters (answered, routed) from ``/metrics`` (one worker's, with
    several)."""
    counts = {"answered": 0.0, "routed": 0.0}
    with contextlib.suppress(Exception):
        _, body = get_text(port, "/metrics")
        for line in body.splitlines():
            if line.startswith("smartrec_feed_lane_requests_total{"):
                for outcome in counts:
                    if f'outcome="{outcome}"' in line:
                        counts[outcome] = float(line.rsplit(" ", 1)[1])
    return counts


def measure_auth(
    args: argparse.Namespace,
    load: LoadGenerator,
    tag: str,
    concurrency: int,
    targets: list[tuple[str, Server, list[bytes]]],
    runs: AuthRuns,
    set_no: int,
) -> None:
    """Warm up, then measure every configuration at one concurrency in interleaved rounds (the
    order rotating), adding each round's result and server CPU to ``runs``."""
    for name, server, reqs in targets:
        log(f"{tag} warm-up {name} ({args.warmup:g}s)")
        w = load.run(server.port, reqs, concurrency=concurrency, duration_s=args.warmup)
        if w.errors:
            log(f"{tag} {name}: {w.errors} errors in warm-up: {w.first_error}")
    before = {name: lane_counts(server.port) for name, server, _ in targets}
    per_round = args.duration / (args.rounds * args.server_sets)
    for r in range(args.rounds):
        shift = (r + set_no) % len(targets)
        for name, server, reqs in targets[shift:] + targets[:shift]:
            cpu0 = process_cpu_s(server.pid)
            res = load.run(server.port, reqs, concurrency=concurrency, duration_s=per_round)
            cpu1 = process_cpu_s(server.pid)
            cpu = None
            if cpu0 is not None and cpu1 is not None and res.count:
                cpu = (cpu1 - cpu0) / res.count * 1e6
            log(
                f"{tag} round {r + 1}/{args.rounds} {name}: {res.rate:,.0f} req/s, "
                f"p50 {percentile(res.latencies, 50) * 1e3:.2f} ms, "
                f"p99 {percentile(res.latencies, 99) * 1e3:.2f} ms, "
                f"server CPU {cpu if cpu is not None else float('nan'):.0f} us/request, "
                f"{res.errors} errors"
            )
            runs.results[name].append(res)
            runs.cpu[name].append(cpu)
            runs.errors[name] += res.errors
        runs.sets.append(set_no)
    for name, server, _ in targets:
        after = lane_counts(server.port)
        runs.lane[name][0] += after["answered"] - before[name]["answered"]
        runs.lane[name][1] += after["routed"] - before[name]["routed"]


def _merged(results: list[LoadResult]) -> LoadResult:
    total = results[0]
    for res in results[1:]:
        total = total.merge(res)
    return total


def summarise_auth(workers: int, concurrency: int, runs: AuthRuns) -> list[dict[str, Any]]:
    """One row per configuration: pooled figures; ratios to ``auth-off`` pooled, per round and
    per server set; server CPU per request (median of the rounds) and its difference to
    ``auth-off`` round by round."""
    base = _merged(runs.results["auth-off"])
    base_rates = [r.rate for r in runs.results["auth-off"]]
    base_cpu = runs.cpu["auth-off"]
    sets = sorted(set(runs.sets))
    rows = []
    for name, results in runs.results.items():
        res = _merged(results)
        p = {q: percentile(res.latencies, q) * 1e3 for q in (50, 90, 99)}
        rates = [r.rate for r in results]
        per_set = []
        for s in sets:
            mine = _merged([r for r, k in zip(results, runs.sets, strict=True) if k == s])
            off = _merged(
                [r for r, k in zip(runs.results["auth-off"], runs.sets, strict=True) if k == s]
            )
            per_set.append(mine.rate / off.rate if off.rate else float("nan"))
        cpus = [c for c in runs.cpu[name] if c is not None]
        cpu_diff = [
            a - b
            for a, b in zip(runs.cpu[name], base_cpu, strict=True)
            if a is not None and b is not None
        ]
        answered, routed = runs.lane[name]
        rows.append(
            {
                "config": name,
                "auth": AUTH_CONFIGS[name][0],
                "access_log": AUTH_CONFIGS[name][1],
                "workers": workers,
                "concurrency": concurrency,
                "requests": res.count,
                "errors": res.errors,
                "first_error": res.first_error,
                "req_per_s": res.rate,
                "req_per_s_rounds": rates,
                "vs_auth_off": res.rate / base.rate if base.rate else float("nan"),
                "vs_auth_off_rounds": [
                    a / b if b else float("nan") for a, b in zip(rates, base_rates, strict=True)
                ],
                "vs_auth_off_sets": per_set,
                "p50_ms": p[50],
                "p90_ms": p[90],
                "p99_ms": p[99],
                "p50_vs_auth_off_ms": p[50] - percentile(base.latencies, 50) * 1e3,
                "lane_share": answered / (answered + routed) if answered + routed else None,
                "cpu_us_per_request": statistics.median(cpus) if cpus else None,
                "cpu_us_per_request_rounds": runs.cpu[name],
                "cpu_us_vs_auth_off_rounds": cpu_diff,
            }
        )
    return rows


def profile_auth(
    args: argparse.Namespace,
    load: LoadGenerator,
    targets: list[tuple[str, Server, list[bytes]]],
    concurrency: int,
) -> str | None:
    """An extra, unmeasured run of each configuration named in ``--profile`` under py-spy."""
    texts = []
    for name, srv, reqs in targets:
        if name not in args.profile or srv.pid is None:
            continue
        log(f"profiling {name} for {args.profile_seconds:g}s")
        _, text = profiled(
            srv.pid,
            functools.partial(
                load.run, srv.port, reqs, concurrency=concurrency, duration_s=args.profile_seconds
            ),
        )
        if text is None:
            return None
        texts.append(f"profile of {name}, c={concurrency} (py-spy --gil):\n{text}")
    return "\n\n".join(texts) or None


def _spread(values: list[float], fmt: str) -> str:
    """min-max (median) of per-round values."""
    if not values:
        return "-"
    lo, mid, hi = min(values), statistics.median(values), max(values)
    return f"{fmt.format(lo)} to {fmt.format(hi)} (median {fmt.format(mid)})"


def print_auth_report(
    args: argparse.Namespace, configs: list[dict[str, Any]], wall_s: float
) -> None:
    cfg0 = configs[0]
    print(
        "Auth and access log overhead: GET /v1/users/{user}/recommendations?n=10 (943 users), "
        f"ML-100K champion version {cfg0['model_version']} ({cfg0['algorithm']}), home {args.home}"
    )
    per_round = args.duration / (args.rounds * args.server_sets)
    print(
        f"{args.duration:g}s per configuration and concurrency: {args.server_sets} fresh server "
        f"set(s) x {args.rounds} interleaved rounds of {per_round:g}s (+{args.warmup:g}s warm-up "
        "per set), closed loop on keep-alive connections"
    )
    print(machine_note())
    print("  auth-off         SMARTREC_AUTH=off, access log on (SMARTREC_LOG_LEVEL=info), no key")
    print(
        "  auth-required    SMARTREC_AUTH=required, a read key; every request sends "
        "'Authorization: Bearer <token>'; access log on"
    )
    print("  auth-off-no-log  SMARTREC_AUTH=off, SMARTREC_ACCESS_LOG=false")
    for i, feeds in enumerate(cfg0["feeds"]):
        builds = [
            f"{n} {(b or {}).get('built')}/{(b or {}).get('target')} in {(b or {}).get('seconds')}s"
            for n, b in feeds.items()
        ]
        print(f"  set {i + 1}: feeds built before measuring: {'; '.join(builds)}")
    headers = ["config", "workers", "conc", "requests", "req/s", "vs auth-off", "p50 ms"]
    headers += ["p90 ms", "p99 ms", "CPU us/req", "lane", "errors"]
    rows = []
    for cfg in configs:
        for r in cfg["rows"]:
            rows.append(
                [
                    r["config"],
                    str(r["workers"]),
                    str(r["concurrency"]),
                    f"{r['requests']:,}",
                    f"{r['req_per_s']:,.0f}",
                    f"{r['vs_auth_off']:.3f}x",
                    f"{r['p50_ms']:.2f}",
                    f"{r['p90_ms']:.2f}",
                    f"{r['p99_ms']:.2f}",
                    "-" if r["cpu_us_per_request"] is None else f"{r['cpu_us_per_request']:.0f}",
                    "-" if r["lane_share"] is None else f"{r['lane_share']:.0%}",
                    str(r["errors"]),
                ]
            )
    print(table(headers, rows))
    print(
        "CPU us/req: the server process's user+system CPU per request (median of the rounds, "
        "from /proc);\nlane: share of the requests the feed lane answered (the rest went "
        "through FastAPI)."
    )
    for cfg in configs:
        by = {r["config"]: r for r in cfg["rows"]}
        on, off, nolog = by["auth-required"], by["auth-off"], by["auth-off-no-log"]
        where = f"workers={cfg['workers']}, c={cfg['concurrency']}"
        share = on["vs_auth_off"]
        verdict = "met" if share >= GOAL_AUTH_SHARE else "NOT met"
        print(
            f"auth cost ({where}): auth-required / auth-off throughput {share:.3f}x "
            f"({1 - share:+.1%} cost; goal <= {1 - GOAL_AUTH_SHARE:.0%}: {verdict}); p50 "
            f"{on['p50_vs_auth_off_ms']:+.3f} ms"
        )
        print(
            f"  per round {_spread(on['vs_auth_off_rounds'], '{:.3f}')}; per server set "
            + ", ".join(f"{x:.3f}" for x in on["vs_auth_off_sets"])
        )
        if on["cpu_us_vs_auth_off_rounds"]:
            print(
                f"  server CPU per request, auth-required - auth-off, per round: "
                f"{_spread(on['cpu_us_vs_auth_off_rounds'], '{:+.0f}')} us "
                f"(of {off['cpu_us_per_request']:.0f} us)"
            )
        log_rounds = [
            a / b for a, b in zip(off["req_per_s_rounds"], nolog["req_per_s_rounds"], strict=True)
        ]
        log_sets = [1 / x for x in nolog["vs_auth_off_sets"]]
        print(
            f"access log cost ({where}): auth-off / auth-off-no-log throughput "
            f"{off['req_per_s'] / nolog['req_per_s']:.3f}x; p50 "
            f"{off['p50_ms'] - nolog['p50_ms']:+.3f} ms"
        )
        print(
            f"  per round {_spread(log_rounds, '{:.3f}')}; per server set "
            + ", ".join(f"{x:.3f}" for x in log_sets)
        )
        if nolog["cpu_us_vs_auth_off_rounds"]:
            saved = [-x for x in nolog["cpu_us_vs_auth_off_rounds"]]
            print(
                f"  server CPU per request, auth-off - auth-off-no-log, per round: "
                f"{_spread(saved, '{:+.0f}')} us"
            )
        for r in cfg["rows"]:
            if r["first_error"]:
                print(f"  {r['config']} first error: {r['first_error']}")
    for cfg in configs:
        if cfg["profile"]:
            print()
            print(cfg["profile"])
    print(f"total wall time {wall_s:.0f}s")


def print_report(args: argparse.Namespace, configs: list[dict[str, Any]], wall_s: float) -> None:
    headers = ["endpoint", "workers", "conc", "requests", "req/s", "vs base"]
    headers += ["p50 ms", "p90 ms", "p99 ms", "p50 vs base", "p99 vs base", "errors"]
    rows = []
    for cfg in configs:
        for r in cfg["rows"]:
            base_p50 = r["p50_ms"] / r["p50_vs_baseline"]
            base_p99 = r["p99_ms"] / r["p99_vs_baseline"]
            rows.append(
                [
                    r["endpoint"],
                    str(r["workers"]),
                    str(r["concurrency"]),
                    f"{r['requests']:,}",
                    f"{r['req_per_s']:,.0f}",
                    f"{r['req_per_s_vs_baseline']:.2f}x",
                    f"{r['p50_ms']:.2f}",
                    f"{r['p90_ms']:.2f}",
                    f"{r['p99_ms']:.2f}",
                    ratio(r["p50_ms"], base_p50),
                    ratio(r["p99_ms"], base_p99),
                    str(r["errors"]),
                ]
            )
    cfg0 = configs[0]
    if args.pipeline:
        print_pipeline_header(args, configs)
    else:
        print(
            f"MovieLens-100K, champion version {cfg0['model_version']} ({cfg0['algorithm']}), "
            f"home {args.home}"
        )
    print(
        f"{args.duration:g}s per endpoint in {args.rounds} interleaved rounds "
        f"(+{args.warmup:g}s warm-up), closed loop on keep-alive connections"
    )
    print(machine_note())
    for name in ["baseline", *args.endpoints]:
        what = ENDPOINTS.get(name, "GET /v1/users/{user}/recommendations, fixed answer (bare app)")
        if args.pipeline:
            what = what.replace("(943 users)", f"({len(args.pipeline_users):,} active users)")
        print(f"  {name:<16} {what}")
    print(table(headers, rows))
    print("vs base: relative to the bare FastAPI baseline measured in the same run.")
    for cfg in configs:
        for r in cfg["rows"]:
            if r["endpoint"] == "baseline":
                continue
            verdict = "met" if r["p99_goal_met"] else "NOT met"
            print(
                f"goal p99 <= {GOAL_P99_MS:g} ms, {r['endpoint']} (workers={r['workers']}, "
                f"c={r['concurrency']}): {verdict} ({r['p99_ms']:.2f} ms)"
            )
            if args.pipeline:
                rate_ok = r["req_per_s"] >= GOAL_RATE
                share_ok = r["req_per_s_vs_baseline"] >= GOAL_SHARE
                print(
                    f"  goal >= {GOAL_RATE:,} req/s: {'met' if rate_ok else 'NOT met'} "
                    f"({r['req_per_s']:,.0f}, {r['req_per_s'] / GOAL_RATE:.2f}x the goal); "
                    f"goal >= {GOAL_SHARE:.0%} of the baseline: "
                    f"{'met' if share_ok else 'NOT met'} ({r['req_per_s_vs_baseline']:.1%})"
                )
            if r["first_error"]:
                print(f"  first error: {r['first_error']}")
    for cfg in configs:
        if cfg["profile"]:
            print()
            print(cfg["profile"])
    if args.pipeline and args.pipeline_profile:
        print()
        print(args.pipeline_profile)
    print(f"total wall time {wall_s:.0f}s")


def print_pipeline_header(args: argparse.Namespace, configs: list[dict[str, Any]]) -> None:
    info = args.pipeline_info
    cfg0 = configs[0]
    spec = info["spec"]
    retrievers = ", ".join(
        f"{r['name']} ({r['kind']}{', ' + r['model'] if r.get('model') else ''}, n={r['n']})"
        for r in spec["retrievers"]
    )
    pinfo = info["pipeline_info"]
    print(
        f"synthetic catalogue (seed {info['seed']}): {info['items']:,} items "
        f"({info['items_with_events']:,} with events), {info['users']:,} users "
        f"({info['active_users']:,} active, {info['events_per_active_user']:.1f} events each), "
        f"{info['events']:,} events; home {args.home}"
    )
    print(f"pipeline champion version {cfg0['model_version']}: retrievers {retrievers}")
    print(
        f"  ranker {pinfo.get('ranker')} ({pinfo.get('users', '?')} users, "
        f"{pinfo.get('rows', '?')} rows), {spec['ranker']['candidates']} candidates; "
        f"ANN {spec['ann']}; item-kNN {info['itemknn_nnz']:,} similarities"
    )
    if not info["content"]:
        print("  content retriever left out (--no-content)")
    t = info["timings"]
    print(
        f"  preparation (once, cached): generate {t['generate_s']:.0f}s, database "
        f"{t['database_s']:.0f}s, fit {t['fit_pipeline_s']:.0f}s, register {t['register_s']:.0f}s"
    )
    for cfg in configs[:1]:
        build = cfg.get("feeds")
        if build:
            rate = build["built"] / build["seconds"] if build.get("seconds") else 0.0
            print(
                f"  feeds built ahead for {build['built']:,} of the {build['target']:,} most "
                f"recently active users in {build['seconds']:.0f}s ({rate:,.0f} users/s); the "
                f"requests go to {len(args.pipeline_users):,} of them"
            )
        else:
            print("  feeds off: every request retrieves and ranks (users at random)")
        rss = cfg.get("server_rss_mib")
        print(
            f"  smartrec server start (load champion + catalogue) {cfg.get('start_s', 0):.0f}s, "
            f"RSS after the run {rss:,.0f} MiB"
            if rss is not None
            else f"  smartrec server start {cfg.get('start_s', 0):.0f}s"
        )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--duration", type=float, default=15.0, help="measured seconds per endpoint")
    p.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds per endpoint")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (noise control)")
    p.add_argument(
        "--concurrency",
        default=None,
        help="connections; a comma list runs each (default 8; 1,4,8,16 with --pipeline)",
    )
    p.add_argument("--workers", default="1", help="uvicorn workers; a comma list runs each")
    p.add_argument(
        "--endpoints",
        default="recommendations,similar,popular",
        help="comma list of: " + ", ".join(ENDPOINTS),
    )
    p.add_argument("--home", type=Path, default=DEFAULT_HOME, help="prepared SMARTREC_HOME")
    p.add_argument("--rebuild", action="store_true", help="prepare the home again from scratch")
    p.add_argument(
        "--profile",
        default="",
        help="comma list of endpoints to profile with py-spy afterwards (needs py-spy)",
    )
    p.add_argument("--profile-seconds", type=float, default=8.0)
    p.add_argument(
        "--smartrec-app",
        default="smartrec.api:create_app",
        help="app factory of the smartrec server(s), to compare a candidate change",
    )
    p.add_argument("--smartrec-app-dir", type=Path, help="put this first on the server's path")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument(
        "--user-cache-ttl",
        type=float,
        default=0.0,
        help="server's SMARTREC_USER_CACHE_TTL_S (0: measure the uncached path)",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    a = p.add_argument_group("--auth: API keys and the access log on the recommendation path")
    a.add_argument(
        "--server-sets",
        type=int,
        default=3,
        help="--auth: start the servers afresh this many times, one set after another, and pool "
        "them (two servers of one configuration differ by several %%; --duration is split over "
        "sets x rounds)",
    )
    a.add_argument(
        "--auth",
        action="store_true",
        help="measure recommendations with auth off, auth required (a read key, sent on every "
        "request) and auth off without the access log, side by side (default --concurrency "
        "1,4; --profile takes the configuration names: " + ", ".join(AUTH_CONFIGS) + ")",
    )
    g = p.add_argument_group("--pipeline: the full pipeline on a synthetic catalogue")
    g.add_argument("--pipeline", action="store_true", help="measure the multi-stage pipeline")
    g.add_argument("--items", type=int, default=1_000_000)
    g.add_argument("--users", type=int, default=100_000)
    g.add_argument("--events", type=int, default=4_000_000)
    g.add_argument(
        "--ranker-users", type=int, default=2000, help="users sampled to train the ranker"
    )
    g.add_argument("--no-content", action="store_true", help="leave the content retriever out")
    g.add_argument(
        "--feed-users",
        type=int,
        default=20_000,
        help="feeds built ahead for this many of the most recently active users, who are the "
        "ones requested (0: feeds off, every request runs the whole pipeline, users at random)",
    )
    g.add_argument(
        "--profile-requests",
        type=int,
        default=500,
        help="in-process requests timed stage by stage after the HTTP runs (0: none)",
    )
    args = p.parse_args(argv)
    if args.auth and args.pipeline:
        p.error("--auth measures the ML-100K home; it does not go with --pipeline")
    if args.concurrency is None:
        args.concurrency = "1,4,8,16" if args.pipeline else "1,4" if args.auth else "8"
    if args.pipeline:
        if args.home == DEFAULT_HOME:
            content = "" if args.no_content else "-content"
            args.home = Path(
                f"~/.cache/smartrec/bench-pipeline-{args.items}i-{args.users}u-"
                f"{args.events}e-s{args.seed}{content}"
            ).expanduser()
        if not any(a.startswith("--endpoints") for a in (argv or sys.argv[1:])):
            args.endpoints = "recommendations"
    args.endpoints = [e.strip() for e in args.endpoints.split(",") if e.strip()]
    args.profile = {e.strip() for e in args.profile.split(",") if e.strip()}
    if args.auth:
        args.endpoints = ["recommendations"]
    known = set(AUTH_CONFIGS) if args.auth else set(ENDPOINTS)
    unknown = (set(args.endpoints) | args.profile) - known - set(ENDPOINTS)
    if args.auth and args.profile - known:
        unknown = args.profile - known
    if unknown:
        p.error(f"unknown names {sorted(unknown)}; choose from {', '.join(sorted(known))}")
    args.workers = [int(w) for w in args.workers.split(",")]
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    if (
        min(*args.workers, *args.concurrency, args.rounds, args.server_sets) < 1
        or args.duration <= 0
    ):
        p.error("sizes must be positive")
    args.home = args.home.expanduser().resolve()
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    unwind_on_sigterm()
    started = time.perf_counter()
    if args.pipeline:
        prepare_pipeline(args)
    else:
        prepare_home(args.home, args.rebuild)
    with LoadGenerator() as load:
        if args.auth:
            configs = [cfg for w in args.workers for cfg in run_auth(args, load, w)]
        else:
            configs = [
                cfg for w in args.workers for cfg in run_config(args, load, w, args.concurrency)
            ]
    args.pipeline_profile = None
    if args.pipeline and args.profile_requests > 0:
        args.pipeline_profile = pipeline_profile(args)
    wall = time.perf_counter() - started
    if args.json:
        name = "serve-auth" if args.auth else "serve"
        doc: dict[str, Any] = {"benchmark": name, "wall_s": wall, "configs": configs}
        if args.pipeline:
            doc["pipeline"] = {k: v for k, v in args.pipeline_info.items() if k != "user_ids"}
            doc["pipeline_profile"] = args.pipeline_profile
        print(json.dumps(doc, indent=2))
    elif args.auth:
        print_auth_report(args, configs, wall)
    else:
        print_report(args, configs, wall)
    return 1 if any(r["errors"] for c in configs for r in c["rows"]) else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("interrupted: servers stopped, databases and temp dirs removed")
        sys.exit(130)
