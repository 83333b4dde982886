"""Ingest throughput: ``POST /v1/events`` in batches, SQLite and PostgreSQL, against a baseline.

Every target is a real ``uvicorn`` subprocess on 127.0.0.1 and the load comes from a separate
process over keep-alive connections, with request bodies serialised before the clock starts.
The baseline is a tiny FastAPI app (:func:`baseline_app`) that parses and validates the same
bodies with the same schema (``smartrec.schemas.EventsIn``) and throws them away: the ratio to it
is what storing costs on top of HTTP + JSON + validation. Targets are measured in interleaved
rounds so that noise from other work on the machine falls on all of them alike.

Run from the repository root: ``.venv/bin/python benchmarks/ingest.py [--batches 200] [--json]``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import secrets
import sqlite3
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, status

from smartrec.schemas import EventsIn, EventsOut

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    BENCH_DIR,
    LoadGenerator,
    LoadResult,
    Server,
    http_request,
    machine_note,
    percentile,
    profiled,
    ratio,
    table,
    temp_dir,
    unwind_on_sigterm,
)

DEFAULT_PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def baseline_app() -> FastAPI:
    """Parse and validate an events batch exactly as smartrec does, then discard it."""
    app = FastAPI()

    @app.post("/v1/events", response_model=EventsOut, status_code=status.HTTP_202_ACCEPTED)
    def add_events(body: EventsIn) -> EventsOut:
        return EventsOut(accepted=len(body.events), duplicates=0)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


# --------------------------------------------------------------------------- request bodies
def make_batches(n_batches: int, batch_size: int, seed: int) -> list[bytes]:
    """Pre-serialised ``POST /v1/events`` requests; event ids are unique across all of them."""
    from smartrec.datasets.synthetic import EVENT_TYPES, generate

    data = generate(
        n_users=max(100, n_batches * batch_size // 20),
        n_items=max(100, n_batches * batch_size // 50),
        n_events=n_batches * batch_size,
        seed=seed,
    )
    users = data.event_user_ids().tolist()
    items = data.event_item_ids().tolist()
    types = [EVENT_TYPES[t] for t in data.event_type.tolist()]
    times = data.timestamp.tolist()
    tag = secrets.token_hex(4)
    out = []
    for b in range(n_batches):
        lo = b * batch_size
        events = [
            {
                "event_id": f"bench-{tag}-{b}-{j}",
                "user_id": users[lo + j],
                "item_id": items[lo + j],
                "type": types[lo + j],
                "timestamp": times[lo + j],
            }
            for j in range(batch_size)
        ]
        body = json.dumps({"events": events}, separators=(",", ":")).encode()
        out.append(http_request("POST", "/v1/events", body))
    return out


# --------------------------------------------------------------------------- PostgreSQL
def pg_admin(admin_url: str) -> Any:
    import psycopg

    return psycopg.connect(admin_url, autocommit=True, connect_timeout=5)


@contextlib.contextmanager
def pg_database(admin_url: str) -> Any:
    """Create a fresh database for one target and drop it afterwards; yields its URL."""
    from sqlalchemy.engine import make_url

    name = f"smartrec_bench_{secrets.token_hex(5)}"
    with pg_admin(admin_url) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with pg_admin(admin_url) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def count_events(target: str, where: str) -> int:
    """Rows in the events table of a target's database (the batches must all be there)."""
    if target == "sqlite":
        with contextlib.closing(sqlite3.connect(where)) as conn:
            return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])
    import psycopg

    url = where.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url, connect_timeout=5) as conn:
        row = conn.execute("SELECT count(*) FROM events").fetchone()
        return int(row[0]) if row else 0


# --------------------------------------------------------------------------- the run
@dataclass
class Target:
    name: str
    server: Server
    count_where: str | None = None  # database to count rows in afterwards


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_config(
    args: argparse.Namespace,
    load: LoadGenerator,
    workers: int,
    warmup: list[bytes],
    measured: list[bytes],
    extra: list[bytes],
) -> dict[str, Any]:
    """Start the targets with ``workers`` uvicorn workers each, measure them, stop them."""
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(temp_dir("smartrec-bench-ingest-"))
        targets: list[Target] = [
            Target(
                "baseline",
                Server("baseline", "ingest:baseline_app", app_dir=BENCH_DIR, workers=workers),
            )
        ]
        envs: dict[str, tuple[dict[str, str], str]] = {}
        if "sqlite" in args.targets:
            home = tmp / "sqlite"
            envs["sqlite"] = ({"SMARTREC_HOME": str(home)}, str(home / "smartrec.db"))
        if "postgresql" in args.targets:
            url = stack.enter_context(pg_database(args.pg_url))
            envs["postgresql"] = (
                {"SMARTREC_HOME": str(tmp / "pg"), "SMARTREC_DATABASE_URL": url},
                url,
            )
        for name, (env, where) in envs.items():
            env["SMARTREC_LOG_LEVEL"] = "warning"
            if workers > 1:
                # Workers starting together on a fresh home race on the schema migrations (see
                # README): one single-worker start first creates the schema and MLflow's tables.
                log(f"[workers={workers}] initialising {name} with one worker first")
                with Server(name, args.smartrec_app, env=env, app_dir=args.smartrec_app_dir):
                    pass
            server = Server(
                name, args.smartrec_app, env=env, workers=workers, app_dir=args.smartrec_app_dir
            )
            targets.append(Target(name, server, where))
        for t in targets:
            log(f"[workers={workers}] starting {t.name} ...")
            stack.enter_context(t.server)

        expect = {"accepted": args.batch_size, "duplicates": 0}
        # Every phase posts the same way: one set of expectations for warm-up, rounds, profile.
        post = functools.partial(
            load.run, concurrency=args.concurrency, expect_status=202, expect_json=expect
        )
        warm_ok: dict[str, int] = {}
        for t in targets:
            log(f"[workers={workers}] warm-up {t.name}: {len(warmup)} batches")
            w = post(t.server.port, warmup)
            warm_ok[t.name] = w.count
            if w.errors:
                log(f"[workers={workers}] {t.name}: {w.errors} errors in warm-up: {w.first_error}")

        results: dict[str, LoadResult] = {}
        per_round = [measured[i :: args.rounds] for i in range(args.rounds)]
        for r, chunk in enumerate(per_round):
            order = targets[r % len(targets) :] + targets[: r % len(targets)]
            for t in order:
                res = post(t.server.port, chunk)
                log(
                    f"[workers={workers}] round {r + 1}/{args.rounds} {t.name}: "
                    f"{res.count * args.batch_size / res.elapsed_s:,.0f} events/s, "
                    f"{res.errors} errors"
                )
                results[t.name] = results[t.name].merge(res) if t.name in results else res

        extra_ok = dict.fromkeys(results, 0)
        profiles: dict[str, str] = {}
        for t in targets:
            if t.name not in args.profile or workers != 1 or t.server.pid is None:
                continue
            log(f"[workers={workers}] profiling {t.name} over {len(extra)} more batches")
            res, text = profiled(
                t.server.pid,
                functools.partial(post, t.server.port, extra),
            )
            extra_ok[t.name] = res.count
            if text:
                profiles[t.name] = text

        for t in targets:
            if results[t.name].errors:
                log(f"--- server log of {t.name} (it answered errors) ---\n{t.server.log_text()}")
        stored: dict[str, int] = {}
        for t in targets:
            if t.count_where is not None:
                stored[t.name] = count_events(t.name, t.count_where)
        log(f"[workers={workers}] stopping servers")
    accepted = {name: warm_ok[name] + res.count + extra_ok[name] for name, res in results.items()}
    summary = summarise(args, workers, results, stored, accepted)
    summary["profiles"] = profiles
    return summary


def summarise(
    args: argparse.Namespace,
    workers: int,
    results: dict[str, LoadResult],
    stored: dict[str, int],
    accepted_batches: dict[str, int],
) -> dict[str, Any]:
    rows = []
    base = results["baseline"]
    base_eps = base.count * args.batch_size / base.elapsed_s
    base_p50, base_p99 = percentile(base.latencies, 50), percentile(base.latencies, 99)
    for name, res in results.items():
        eps = res.count * args.batch_size / res.elapsed_s
        p50, p99 = percentile(res.latencies, 50), percentile(res.latencies, 99)
        expected = accepted_batches[name] * args.batch_size  # a failed batch stores nothing
        rows.append(
            {
                "target": name,
                "workers": workers,
                "batches": res.count,
                "errors": res.errors,
                "first_error": res.first_error,
                "events_per_s": eps,
                "batches_per_s": res.rate,
                "p50_ms": p50 * 1e3,
                "p99_ms": p99 * 1e3,
                "events_per_s_vs_baseline": eps / base_eps,
                "p50_vs_baseline": p50 / base_p50,
                "p99_vs_baseline": p99 / base_p99,
                "stored_events": stored.get(name),
                "stored_ok": None if name not in stored else stored[name] == expected,
            }
        )
    return {"workers": workers, "rows": rows}


def print_report(args: argparse.Namespace, configs: list[dict[str, Any]], wall_s: float) -> None:
    headers = [
        "target",
        "workers",
        "batches",
        "events/s",
        "vs base",
        "batches/s",
        "p50 ms",
        "p99 ms",
        "p50 vs base",
        "p99 vs base",
        "errors",
        "stored",
    ]
    rows = []
    for cfg in configs:
        for r in cfg["rows"]:
            stored = "-" if r["stored_ok"] is None else ("all" if r["stored_ok"] else "MISSING")
            rows.append(
                [
                    r["target"],
                    str(r["workers"]),
                    str(r["batches"]),
                    f"{r['events_per_s']:,.0f}",
                    f"{r['events_per_s_vs_baseline']:.2f}x",
                    f"{r['batches_per_s']:.1f}",
                    f"{r['p50_ms']:.1f}",
                    f"{r['p99_ms']:.1f}",
                    ratio(r["p50_ms"], r["p50_ms"] / r["p50_vs_baseline"]),
                    ratio(r["p99_ms"], r["p99_ms"] / r["p99_vs_baseline"]),
                    str(r["errors"]),
                    stored,
                ]
            )
    print(
        f"POST /v1/events: {args.batches} batches of {args.batch_size} events per target "
        f"(+{args.warmup} warm-up), {args.concurrency} keep-alive connections, "
        f"{args.rounds} interleaved rounds"
    )
    print(machine_note())
    print(table(headers, rows))
    print(
        "vs base: events/s relative to the baseline (validate and discard) in the same run; "
        "latency ratios are target/baseline."
    )
    for cfg in configs:
        for r in cfg["rows"]:
            if r["first_error"]:
                print(f"first error of {r['target']} (workers={r['workers']}): {r['first_error']}")
    for cfg in configs:
        for name, text in cfg.get("profiles", {}).items():
            print(f"\nprofile of {name} (py-spy --gil on the server process):\n{text}")
    print(f"total wall time {wall_s:.0f}s")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--batches", type=int, default=200, help="measured batches per target")
    p.add_argument("--batch-size", type=int, default=1000, help="events per batch")
    p.add_argument("--warmup", type=int, default=10, help="unmeasured batches per target first")
    p.add_argument("--concurrency", type=int, default=4, help="keep-alive connections")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (noise control)")
    p.add_argument(
        "--workers",
        default="1",
        help="uvicorn workers per server; a comma list runs each in turn (e.g. 1,2)",
    )
    p.add_argument(
        "--targets", default="sqlite,postgresql", help="comma list of: sqlite, postgresql"
    )
    p.add_argument("--pg-url", default=DEFAULT_PG_ADMIN_URL, help="admin URL to create DBs with")
    p.add_argument(
        "--profile",
        default="",
        help="comma list of targets to profile with py-spy afterwards, over --profile-batches\n"
        "more batches (needs py-spy; only with 1 worker)",
    )
    p.add_argument("--profile-batches", type=int, default=100)
    p.add_argument(
        "--smartrec-app",
        default="smartrec.api:create_app",
        help="app factory of the smartrec server(s), to compare a candidate change",
    )
    p.add_argument("--smartrec-app-dir", type=Path, help="put this first on the server's path")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = p.parse_args(argv)
    args.targets = {t.strip() for t in args.targets.split(",") if t.strip()}
    if not args.targets <= {"sqlite", "postgresql"}:
        p.error("--targets takes sqlite and/or postgresql")
    args.profile = {t.strip() for t in args.profile.split(",") if t.strip()}
    if not args.profile <= {"baseline", "sqlite", "postgresql"}:
        p.error("--profile takes baseline, sqlite and/or postgresql")
    args.workers = [int(w) for w in str(args.workers).split(",")]
    if min(args.batches, args.batch_size, args.concurrency, args.rounds, *args.workers) < 1:
        p.error("sizes must be positive")
    if args.batches < args.rounds:
        p.error("--batches must be at least --rounds")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    unwind_on_sigterm()
    started = time.perf_counter()
    if "postgresql" in args.targets:
        try:
            pg_admin(args.pg_url).close()
        except Exception as exc:
            log(f"PostgreSQL at {args.pg_url} does not answer ({exc}); skipping it")
            args.targets.discard("postgresql")
    n_extra = args.profile_batches if args.profile else 0
    total = args.warmup + args.batches + n_extra
    log(f"serialising {total} batches of {args.batch_size} events ...")
    requests = make_batches(total, args.batch_size, args.seed)
    warmup = requests[: args.warmup]
    measured = requests[args.warmup : args.warmup + args.batches]
    extra = requests[args.warmup + args.batches :]
    with LoadGenerator() as load:
        configs = [run_config(args, load, w, warmup, measured, extra) for w in args.workers]
    wall = time.perf_counter() - started
    if args.json:
        print(json.dumps({"benchmark": "ingest", "wall_s": wall, "configs": configs}, indent=2))
    else:
        print_report(args, configs, wall)
    bad = any(r["errors"] or r["stored_ok"] is False for c in configs for r in c["rows"])
    return 1 if bad else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("interrupted: servers stopped, databases and temp dirs removed")
        sys.exit(130)
