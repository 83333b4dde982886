"""The large synthetic home of ``serve.py --pipeline``: data, a pipeline champion, a profile.

:func:`prepare` builds, once, a ``SMARTREC_HOME`` holding a seeded synthetic catalogue, its users
and its event log in SQLite (bulk-loaded with ``sqlite3``: the ingest path is measured by
``ingest.py``, and 4M events through it would take minutes), and a multi-stage pipeline bundle
registered in the home's MLflow registry and aliased ``champion``, so that a plain
``uvicorn smartrec.api:create_app`` loads it at start exactly as in production.

:func:`profile` loads the same champion in-process (``Runtime.build`` + ``reload``, as a server
worker does) and times the stages of single requests through ``RecommendationService.recommend``
and the router's serialisation.
"""

from __future__ import annotations

import collections
import cProfile
import io
import json
import os
import pstats
import random
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

READY_MARKER = ".bench-ready.json"
#: Item rows of a catalogue written through the API arrive in batches: one ``updated_at`` per
#: batch of this many, so the start-up ``refresh_catalog`` re-reads one batch, not everything.
CATALOG_BATCH = 1000


def log(msg: str) -> None:
    print(msg, file=__import__("sys").stderr, flush=True)


# --------------------------------------------------------------------------- item-kNN, faster
# --------------------------------------------------------------------------- the spec
def pipeline_spec(content: bool) -> dict[str, Any]:
    """The default pipeline adapted to 1M items: item-kNN instead of EASE, IVF retrieval."""
    retrievers: list[dict[str, Any]] = [
        {
            "name": "embedding",
            "kind": "embedding",
            "model": "als",
            "params": {"factors": 64, "iterations": 15},
            "n": 100,
            "weight": 1.0,
        },
        {
            "name": "neighbours",
            "kind": "neighbours",
            "model": "itemknn",
            "params": {"k": 100, "shrink": 10.0},
            "n": 100,
            "recent": 50,
            "weight": 1.0,
        },
        {"name": "popular", "kind": "popular", "n": 50, "windows": ["7d", "30d"], "weight": 0.2},
    ]
    if content:
        retrievers.append(
            {
                "name": "content",
                "kind": "content",
                "n": 30,
                "recent": 20,
                "scope": "cold",
                "weight": 0.3,
            }
        )
    return {
        "retrievers": retrievers,
        "ranker": {"kind": "lightgbm", "candidates": 300},
        "ann": {"exact_below": 50_000, "nprobe": 32, "build_threads": 2},
    }


# --------------------------------------------------------------------------- preparation
def _bulk_load(db: Path, syn: Any, now_ms: int) -> None:
    """Items, users and events straight into the migrated SQLite database."""
    conn = sqlite3.connect(db)
    try:
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("PRAGMA cache_size=-1000000")
        width = len(str(syn.n_events - 1))
        started = time.perf_counter()
        with conn:
            conn.executemany(
                "INSERT INTO items (item_id, title, categories, attributes, text, available, "
                "published_at, placeholder, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, NULL, 1, NULL, 0, ?, ?)",
                (
                    (
                        str(syn.item_ids[i]),
                        syn.item_titles[i],
                        json.dumps(syn.item_categories[i]),
                        json.dumps(
                            {"price": float(syn.item_price[i]), "brand": str(syn.item_brand[i])}
                        ),
                        now_ms + i // CATALOG_BATCH,
                        now_ms + i // CATALOG_BATCH,
                    )
                    for i in range(syn.n_items)
                ),
            )
            conn.executemany(
                "INSERT INTO users (user_id, attributes, created_at, updated_at) "
                "VALUES (?, '{}', ?, ?)",
                ((str(u), now_ms, now_ms) for u in syn.user_ids.tolist()),
            )
        log(f"  catalogue + users loaded in {time.perf_counter() - started:.0f}s")
        started = time.perf_counter()
        from smartrec.datasets.synthetic import EVENT_TYPES

        types = list(EVENT_TYPES)
        users = syn.user_ids[syn.event_user].tolist()
        items = syn.item_ids[syn.event_item].tolist()
        kinds = syn.event_type.tolist()
        stamps = (syn.timestamp * 1000).tolist()
        with conn:
            conn.executemany(
                "INSERT INTO events (event_id, user_id, item_id, type, value, ts, received_at) "
                "VALUES (?, ?, ?, ?, NULL, ?, ?)",
                (
                    (f"e{j:0{width}d}", users[j], items[j], types[kinds[j]], stamps[j], now_ms)
                    for j in range(syn.n_events)
                ),
            )
        log(f"  {syn.n_events:,} events loaded in {time.perf_counter() - started:.0f}s")
    finally:
        conn.close()


def prepare(
    home: Path,
    n_items: int,
    n_users: int,
    n_events: int,
    seed: int,
    content: bool,
    ranker_users: int,
) -> dict[str, Any]:
    """Build the home (see module docstring) unless its ready marker exists; the marker's info."""
    marker = home / READY_MARKER
    if marker.exists():
        info: dict[str, Any] = json.loads(marker.read_text())
        return info
    if home.exists() and any(home.iterdir()):
        raise SystemExit(
            f"{home} exists without {READY_MARKER}: an interrupted preparation; "
            "run again with --rebuild"
        )
    home.mkdir(parents=True, exist_ok=True)
    os.environ["SMARTREC_HOME"] = str(home)
    os.environ.pop("SMARTREC_DATABASE_URL", None)
    from smartrec.config import Settings
    from smartrec.datasets.synthetic import generate
    from smartrec.domain import CatalogItem
    from smartrec.models import create
    from smartrec.pipeline.spec import parse_spec
    from smartrec.registry import ModelBundle
    from smartrec.registry.mlflow_registry import CHAMPION
    from smartrec.runtime import build_registry
    from smartrec.storage.sql import SqlStore
    from smartrec.training.pipeline_fit import fit_pipeline

    timings: dict[str, float] = {}
    settings = Settings(home=home)
    t = time.perf_counter()
    syn = generate(n_users, n_items, n_events, seed=seed)
    timings["generate_s"] = time.perf_counter() - t
    log(
        f"  generated {n_users:,} users, {n_items:,} items, {n_events:,} events "
        f"({timings['generate_s']:.0f}s)"
    )

    t = time.perf_counter()
    store = SqlStore(settings.resolved_database_url)
    store.migrate()
    store.close()
    _bulk_load(home / "smartrec.db", syn, int(time.time() * 1000))
    timings["database_s"] = time.perf_counter() - t

    data = syn.to_interactions(settings.weights)
    catalog = {
        str(syn.item_ids[i]): CatalogItem(
            str(syn.item_ids[i]),
            syn.item_titles[i],
            list(syn.item_categories[i]),
            {"price": float(syn.item_price[i]), "brand": str(syn.item_brand[i])},
            True,
            False,
        )
        for i in range(syn.n_items)
    }
    spec = parse_spec(pipeline_spec(content), "serve.py --pipeline")
    t = time.perf_counter()
    pipeline = fit_pipeline(
        data,
        spec,
        catalog,
        label_split="time",
        seed=seed,
        max_ranker_users=ranker_users,
        progress=lambda m: log(f"  {m} ({time.perf_counter() - t:.0f}s)"),
    )
    timings["fit_pipeline_s"] = time.perf_counter() - t
    log(f"  pipeline fitted in {timings['fit_pipeline_s']:.0f}s: {pipeline.info}")
    popularity = create("popularity", half_life_days=settings.popularity_half_life_days).fit(data)
    bundle = ModelBundle(
        model=pipeline.models["neighbours"],
        popularity=popularity,
        items=data.items,
        users=data.users,
        pipeline=pipeline,
        meta={
            "params": {"spec": spec.model_dump(mode="json"), "primary": "itemknn"},
            "pipeline_info": pipeline.info,
            "reference_time": data.reference_time,
            "n_events": data.n_events,
            "trained_at": time.time(),
            "event_weights": dict(settings.event_weights),
            "value_event_types": list(settings.value_event_types),
            "benchmark": "serve.py --pipeline",
        },
    )
    t = time.perf_counter()
    registry = build_registry(settings)
    version = registry.register(
        bundle,
        params={"algorithm": "pipeline", "pipeline.ranker": str(pipeline.info.get("ranker"))},
        metrics={},
        tags={"smartrec.benchmark": "serve.py --pipeline"},
    )
    registry.set_alias(CHAMPION, version.version)
    timings["register_s"] = time.perf_counter() - t
    log(f"  registered version {version.version} as champion ({timings['register_s']:.0f}s)")

    per_user = np.bincount(syn.event_user, minlength=n_users)
    active = np.flatnonzero(per_user > 0)
    knn = pipeline.models["neighbours"].similarity
    info = {
        "items": n_items,
        "users": n_users,
        "events": n_events,
        "seed": seed,
        "content": content,
        "ranker_users": ranker_users,
        "active_users": int(active.size),
        "items_with_events": int((np.bincount(syn.event_item, minlength=n_items) > 0).sum()),
        "events_per_active_user": float(per_user[active].mean()),
        "itemknn_nnz": int(knn.nnz),
        "pipeline_info": pipeline.info,
        "spec": spec.model_dump(mode="json"),
        "model_version": version.version,
        "timings": {k: round(v, 1) for k, v in timings.items()},
        "user_ids": [str(syn.user_ids[u]) for u in active.tolist()],
    }
    marker.write_text(json.dumps(info))
    return info


def prepare_entry(kwargs: dict[str, Any]) -> None:
    """Entry point of the spawned preparation process (its memory goes back when it ends)."""
    prepare(**kwargs)


# --------------------------------------------------------------------------- profile
class _Timers:
    def __init__(self) -> None:
        self.current: dict[str, float] = collections.defaultdict(float)
        self.rows: list[dict[str, float]] = []

    def wrap(self, name: str | Callable[..., str], fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*a: Any, **kw: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                key = name(*a, **kw) if callable(name) else name
                self.current[key] += time.perf_counter() - t

        return timed

    def next(self) -> None:
        self.rows.append(dict(self.current))
        self.current = collections.defaultdict(float)


def profile(home: Path, user_ids: list[str], requests: int, seed: int) -> str:
    """Stage timers over ``requests`` in-process requests, then cProfile over as many."""
    os.environ["SMARTREC_HOME"] = str(home)
    os.environ.pop("SMARTREC_DATABASE_URL", None)
    from smartrec.api.routers.recommendations import answer_body
    from smartrec.config import Settings
    from smartrec.runtime import Runtime
    from smartrec.serving import RecommendRequest

    settings = Settings(home=home, reload_interval_s=0)
    rt = Runtime.build(settings)
    t = time.perf_counter()
    rt.service.reload()
    load_s = time.perf_counter() - t
    service = rt.service
    state = service.state
    assert state is not None and state.pipeline is not None
    pipeline = state.pipeline
    rng = random.Random(seed)
    users = [rng.choice(user_ids) for _ in range(requests)]
    warm = [rng.choice(user_ids) for _ in range(50)]

    def one(user: str) -> None:
        results = service.recommend(RecommendRequest(user, 10))
        answer_body(
            results.items, results.model_version, user, next_page_token=results.next_page_token
        )

    for u in warm:
        one(u)
    timers = _Timers()
    # (owner, attribute, label): each is wrapped by an instance attribute, then restored.
    wrapped: list[tuple[Any, str, str]] = [
        (rt.store, "user_history", "db: user_history"),
        (state, "user_rows", "user_rows (history -> rows)"),
        *((r, "retrieve", f"retrieve: {r.name} ({r.kind})") for r in pipeline.retrievers),
        (pipeline, "retrieve", "retrieve (all)"),
        (pipeline, "features", "features"),
        (pipeline, "score", "score (features + ranker)"),
        (service, "_recommend_pipeline", "_recommend_pipeline (all)"),
        (service.reasons, "page", "reasons (explanations)"),
    ]
    for owner, attr, label in wrapped:
        setattr(owner, attr, timers.wrap(label, getattr(owner, attr)))
    serialise = timers.wrap(
        "serialisation (RecommendationsOut JSON)",
        lambda user, results: answer_body(
            results.items, results.model_version, user, next_page_token=results.next_page_token
        ),
    )
    recommend = timers.wrap("service.recommend (all)", service.recommend)
    for u in users:
        t = time.perf_counter()
        results = recommend(RecommendRequest(u, 10))
        serialise(u, results)
        timers.current["request (all, in-process)"] = time.perf_counter() - t
        timers.next()

    # Derived stages: what the wrappers leave between them.
    retrieve_keys = sorted({k for r in timers.rows for k in r if k.startswith("retrieve: ")})
    for r in timers.rows:
        r["ranker predict"] = r.get("score (features + ranker)", 0.0) - r.get("features", 0.0)
        r["retrieve: union, dedupe, score every candidate by every retriever"] = r.get(
            "retrieve (all)", 0.0
        ) - sum(r.get(k, 0.0) for k in retrieve_keys)
        r["query build + rules (boosts, order, page) + rest"] = r.get(
            "_recommend_pipeline (all)", 0.0
        ) - sum(
            r.get(k, 0.0)
            for k in (
                "user_rows (history -> rows)",
                "retrieve (all)",
                "features",
                "ranker predict",
                "reasons (explanations)",
            )
        )
    order = [
        "db: user_history",
        "user_rows (history -> rows)",
        *retrieve_keys,
        "retrieve: union, dedupe, score every candidate by every retriever",
        "features",
        "ranker predict",
        "query build + rules (boosts, order, page) + rest",
        "reasons (explanations)",
        "serialisation (RecommendationsOut JSON)",
        "request (all, in-process)",
    ]
    total = float(np.mean([r["request (all, in-process)"] for r in timers.rows]))
    lines = [
        f"in-process profile: {requests} requests (random known users, n=10) through "
        f"RecommendationService.recommend + the router's serialisation, one thread, after "
        f"{len(warm)} warm-up requests; champion loaded in {load_s:.1f}s. No feeds are built "
        f"ahead here: this is a user's request without a fresh feed (the whole pipeline, then "
        f"the feed stored, in 'rest'), what every request costs with feeds off",
        f"{'stage':<66} {'mean ms':>8} {'p50 ms':>8} {'p99 ms':>8} {'share':>6}",
    ]
    for key in order:
        vals = np.array([r.get(key, 0.0) for r in timers.rows]) * 1e3
        lines.append(
            f"{key:<66} {vals.mean():8.3f} {np.percentile(vals, 50):8.3f} "
            f"{np.percentile(vals, 99):8.3f} {vals.mean() / (total * 1e3):6.1%}"
        )
    # Unwrap (the instance attributes go: the class methods show again), then cProfile the
    # same number of requests without the timers.
    for owner, attr, _ in wrapped:
        delattr(owner, attr)
    prof = cProfile.Profile()
    prof.enable()
    for u in users:
        one(u)
    prof.disable()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    stats.sort_stats("tottime").print_stats(22)
    text = out.getvalue()
    body = text[text.find("   ncalls") :] if "   ncalls" in text else text
    lines += [
        "",
        f"cProfile of the same {requests} requests again (now answered from the feeds the first "
        "pass stored, when feeds are on), top functions by own time:",
        body,
    ]
    rt.stop()
    return "\n".join(lines)


def profile_entry(conn: Any, kwargs: dict[str, Any]) -> None:
    try:
        conn.send(profile(**kwargs))
    except Exception as exc:  # report to the parent instead of hanging it
        import traceback

        conn.send(f"profile failed: {type(exc).__name__}: {exc}\n{traceback.format_exc()}")
    finally:
        conn.close()
