"""``smartrec demo``: MovieLens-100K in, trained champion out, served on embedded defaults.

The data goes through the same ingest code as ``POST /v1/items|users|events`` (the Ingestor and
the wire schemas), so the demo exercises the real path. A second run finds the data and the
champion already there and goes straight to serving.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from smartrec.datasets.movielens import MovieLens, load_movielens_100k
from smartrec.runtime import Runtime
from smartrec.schemas import EventIn, ItemIn, UserIn
from smartrec.serving import RecommendRequest

T = TypeVar("T")
BATCH = 1000


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description:<10}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def _batched(rows: Sequence[T], size: int = BATCH) -> list[Sequence[T]]:
    return [rows[i : i + size] for i in range(0, len(rows), size)]


def ingest_movielens(runtime: Runtime, ml: MovieLens, console: Console) -> tuple[int, int]:
    """Items, users, then ratings as ``rating`` events; returns (accepted, duplicates)."""
    items = [
        ItemIn(
            item_id=i.item_id,
            title=i.title,
            categories=i.genres,
            attributes={"release_year": i.year} if i.year else {},
        )
        for i in ml.items
    ]
    users = [UserIn(user_id=u.user_id, attributes=u.attributes) for u in ml.users]
    r = ml.ratings
    events = [
        EventIn(user_id=str(u), item_id=str(i), type="rating", value=float(v), timestamp=int(t))
        for u, i, v, t in zip(r.user_id, r.item_id, r.rating, r.timestamp, strict=True)
    ]
    accepted = duplicates = 0
    with _progress(console) as bar:
        steps: list[tuple[str, Sequence[object], Callable[[Sequence[object]], int]]] = [
            ("items", items, lambda b: runtime.ingestor.add_items(b)),  # type: ignore[arg-type]
            ("users", users, lambda b: runtime.ingestor.add_users(b)),  # type: ignore[arg-type]
        ]
        for name, rows, write in steps:
            task = bar.add_task(name, total=len(rows))
            for chunk in _batched(rows):
                write(chunk)
                bar.advance(task, len(chunk))
        task = bar.add_task("events", total=len(events))
        for chunk in _batched(events):
            a, d = runtime.ingestor.import_events(chunk)
            accepted += a
            duplicates += d
            bar.advance(task, len(chunk))
    return accepted, duplicates


def run_demo(
    runtime: Runtime,
    console: Console,
    data: Path | None = None,
    retrain: bool = False,
) -> None:
    started = time.perf_counter()
    store, settings = runtime.store, runtime.settings
    console.print(f"[bold]smartrec demo[/] — state in {settings.resolved_home}")
    store.migrate()
    if store.count_events() == 0:
        console.print("loading MovieLens-100K …")
        ml = load_movielens_100k(data, progress=lambda msg: console.print(f"  {msg}"))
        console.print(
            f"  {len(ml.ratings.user_id):,} ratings, {len(ml.users):,} users, "
            f"{len(ml.items):,} movies (from {ml.source})"
        )
        accepted, dupes = ingest_movielens(runtime, ml, console)
        console.print(f"  stored {accepted:,} events ({dupes:,} duplicates)")
    else:
        console.print(f"reusing {store.count_events():,} stored events")

    if retrain or runtime.registry.alias_version("champion") is None:
        console.print("training (time-based validation on the newest 10% of events) …")
        result = runtime.trainer.run(progress=lambda msg: console.print(f"  {msg}"))
        table = Table(title="validation (newest events held out)")
        for col in ("model", "ndcg@10", "recall@10", "map", "coverage", "fit s"):
            table.add_column(col, justify="right" if col != "model" else "left")
        for name, m in result.candidates.items():
            table.add_row(
                name + (" *" if name == result.algorithm else ""),
                f"{m.get('ndcg@10', 0):.4f}",
                f"{m.get('recall@10', 0):.4f}",
                f"{m.get('map', 0):.4f}",
                f"{m.get('coverage', 0):.3f}",
                f"{m.get('fit_seconds', 0):.1f}",
            )
        console.print(table)
        console.print(f"registered version {result.model_version} ({result.algorithm}) in MLflow")
    else:
        console.print(
            f"champion version {runtime.registry.alias_version('champion')} already registered"
        )

    runtime.service.reload()
    state = runtime.service.state
    titles = state.titles if state else []
    for user in ("1", "196"):
        res = runtime.service.recommend(RecommendRequest(user, 5))
        console.print(f"\n[bold]recommendations for user {user}[/] (model {res.model_version}):")
        for rec in res.items:
            idx = state.items.get(rec.item_id) if state else -1
            title = titles[idx] if idx >= 0 else rec.item_id
            because = next((r for r in rec.reasons if r.get("kind") == "similar_to"), None)
            extra = f"  — because you rated {because['title']}" if because else ""
            console.print(f"  {title} [dim]({rec.score:.3f}){extra}[/]")
    console.print(f"\ndemo ready in {time.perf_counter() - started:.1f}s")


def print_where_to_look(
    console: Console, host: str, port: int, token: str | None = None, required: bool = False
) -> None:
    base = f"http://{host}:{port}"
    if token:
        state = "required" if required else f"off on {host} (SMARTREC_AUTH=required turns it on)"
        console.print(
            f"\nAPI key created for this demo (all scopes), shown once; auth is {state}:\n"
            f"  export SMARTREC_API_KEY={token}\n"
            '  curl -H "Authorization: Bearer $SMARTREC_API_KEY" ...'
        )
    console.print(
        f"\n[bold green]serving on {base}[/]\n"
        f"  API docs:         {base}/docs\n"
        f"  recommendations:  curl '{base}/v1/users/1/recommendations?n=5'\n"
        f"  similar items:    curl '{base}/v1/items/50/similar?n=5'\n"
        f"  popular:          curl '{base}/v1/popular?n=5&category=Comedy&window=30d'\n"
        f"  models:           curl '{base}/v1/models'\n"
        f"  metrics:          curl '{base}/metrics'\n"
        "Ctrl-C stops the server; `make demo` again reuses what is stored."
    )
