"""The ``smartrec`` command line: demo, serve, worker, train, evaluate, import, snapshot,
keys, db."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from smartrec import __version__
from smartrec.config import Settings, load_settings
from smartrec.errors import ConfigError, SmartrecError

if TYPE_CHECKING:
    from smartrec.keys import ApiKey, ApiKeys
    from smartrec.runtime import Runtime

app = typer.Typer(
    help="smartrec: a self-hostable smart recommendation engine.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema (Alembic migrations).", no_args_is_help=True)
app.add_typer(db_app, name="db")
keys_app = typer.Typer(
    help="API keys: create (the token is printed once), list, revoke.", no_args_is_help=True
)
app.add_typer(keys_app, name="keys")
snapshot_app = typer.Typer(
    help="Parquet snapshots of the event log in object storage (SMARTREC_SNAPSHOT_URL).",
    no_args_is_help=True,
)
app.add_typer(snapshot_app, name="snapshot")
# Pipes and CI logs get a fixed, readable width instead of rich's 80-column fallback.
console = Console(width=None if sys.stdout.isatty() else 120)
err = Console(stderr=True)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"smartrec {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            "-V",
            help="Print the version and exit.",
            callback=_print_version,
            is_eager=True,
        ),
    ] = False,
) -> None:
    pass


ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="TOML settings file (also SMARTREC_CONFIG).", exists=True),
]


def _settings(config: Path | None, **overrides: Any) -> Settings:
    return load_settings(config, **{k: v for k, v in overrides.items() if v is not None})


def _logging(level: str = "INFO", fmt: str = "text") -> dict[str, Any]:
    from smartrec.logs import configure

    return configure(level, fmt)


def _check_auth(settings: Settings) -> None:
    """Refuse, in one line and before any worker starts, to serve with keys required and none
    to use (each server process checks again at start)."""
    if settings.auth_required:
        from smartrec.runtime import require_keys

        require_keys(settings, _key_store(settings))


@app.command()
def worker(
    config: ConfigOpt = None,
    batch_size: Annotated[
        int | None, typer.Option(help="Messages per batch (SMARTREC_WORKER_BATCH_SIZE).", min=1)
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="Serve Prometheus metrics on this port.", min=1)
    ] = None,
) -> None:
    """Drain the event bus (SMARTREC_EVENTS_URL=kafka://...) into the event log, and train on
    a schedule (SMARTREC_RETRAIN_INTERVAL_S).

    Several workers with the same consumer group share the partitions; one training runs per
    interval across all of them. SIGTERM or Ctrl-C finishes and commits the batch in hand,
    then leaves the group."""
    import signal
    import threading

    from smartrec.runtime import build_worker
    from smartrec.workers import WorkerMetrics

    settings = _settings(config, worker_batch_size=batch_size)
    _logging(settings.log_level, settings.log_format)
    metrics = WorkerMetrics()
    worker = build_worker(settings, metrics)
    if metrics_port:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, registry=metrics.registry)

    def _stop(signum: int, _frame: object) -> None:
        worker.stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
    worker.run()


@app.command()
def version() -> None:
    """Print the version."""
    console.print(__version__)


@app.command()
def serve(
    config: ConfigOpt = None,
    host: Annotated[str | None, typer.Option(help="Bind address (SMARTREC_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (SMARTREC_PORT).")] = None,
    workers: Annotated[
        int | None, typer.Option(help="Server processes (SMARTREC_WORKERS).", min=1)
    ] = None,
) -> None:
    """Serve the HTTP API on the configured backends."""
    import uvicorn

    from smartrec.api import create_app

    settings = _settings(config, host=host, port=port, workers=workers)
    log_config = _logging(settings.log_level, settings.log_format)
    _check_auth(settings)
    common: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        "log_config": log_config,  # applied in each worker process too
        # smartrec's access log (SMARTREC_ACCESS_LOG) carries the model version and key.
        "access_log": False,
    }
    if settings.workers == 1:
        uvicorn.run(create_app(settings), **common)
        return
    from smartrec.api.metrics import multiprocess_metrics

    # Worker processes build their own app from the environment: hand the options over there.
    if config is not None:
        os.environ["SMARTREC_CONFIG"] = str(config.resolve())
    os.environ["SMARTREC_HOST"], os.environ["SMARTREC_PORT"] = settings.host, str(settings.port)
    # Every worker's Prometheus samples in one directory, so /metrics reports them all.
    with multiprocess_metrics():
        uvicorn.run("smartrec.api:create_app", factory=True, workers=settings.workers, **common)


@app.command()
def train(
    config: ConfigOpt = None,
    models: Annotated[
        str | None, typer.Option(help="Comma-separated algorithms (default: the configured set).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    snapshot: Annotated[
        str | None,
        typer.Option(
            help="Train on a Parquet snapshot in SMARTREC_SNAPSHOT_URL instead of the event "
            "log: 'latest' or a snapshot's path (smartrec snapshot list)."
        ),
    ] = None,
) -> None:
    """Train, evaluate on the newest events, register in MLflow, promote if better."""
    from smartrec.runtime import Runtime

    settings = _settings(config)
    runtime = Runtime.build(settings)
    runtime.store.migrate()
    if snapshot is not None:
        from smartrec.storage.objects.snapshots import read_snapshot, without_users

        objects = _objects(settings)
        try:
            info, events = read_snapshot(objects, None if snapshot == "latest" else snapshot)
        except FileNotFoundError as exc:
            raise ConfigError(f"--snapshot {snapshot}: {exc}") from None
        # Users erased since the snapshot was taken: their events stay out of the model.
        erased = set(runtime.store.erasures(int(info.created_at * 1000)))
        kept = without_users(events, erased)
        if not as_json:
            console.print(
                f"  training on {objects.url}/{info.path} ({len(kept):,} events; "
                f"{info.rows - len(kept):,} of users erased since left out)"
            )
        runtime.trainer.source = lambda: (info.created_at, kept)
    chosen = None
    if models:
        names = [m.strip() for m in models.split(",") if m.strip()]
        chosen = {n: dict(settings.models.get(n, {})) for n in names}
    say = (lambda _m: None) if as_json else (lambda m: console.print(f"  {m}"))
    result = runtime.trainer.run(models=chosen, progress=say)
    if as_json:
        print(json.dumps(result.as_dict(), indent=2, default=str))
    else:
        console.print(
            f"version {result.model_version}: {result.algorithm} "
            f"ndcg@10={result.metrics.get('ndcg@10', 0):.4f} promoted={result.promoted}"
        )
    runtime.store.close()


@app.command()
def evaluate(
    dataset: Annotated[str, typer.Option(help="Only movielens-100k for now.")] = "movielens-100k",
    protocol: Annotated[
        str, typer.Option(help="stratified: MS Recommenders' 75/25 per item.")
    ] = "stratified",
    algorithms: Annotated[str | None, typer.Option(help="Comma-separated algorithms.")] = None,
    data: Annotated[Path | None, typer.Option(help="Local ML-100K directory or zip.")] = None,
    k: int = 10,
    seed: int = 42,
    pipeline: Annotated[
        bool, typer.Option(help="Also evaluate the full pipeline, with an ablation.")
    ] = True,
    pipeline_file: Annotated[
        Path | None, typer.Option(help="Pipeline TOML (default: the shipped one).")
    ] = None,
    tune_budget: Annotated[
        float,
        typer.Option(
            help="Seconds of tuning on a split of the training data (0 = use the "
            "protocol's fixed parameters)."
        ),
    ] = 0.0,
    tune_trials: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="At most this many trials per study (each model, the ranking stage): a cap "
            "the budget reaches gives the same result on any machine.",
        ),
    ] = None,
    diversity: Annotated[float, typer.Option(help="MMR lambda of the ablation's last row.")] = 0.9,
    report: Annotated[
        Path | None, typer.Option(help="Write a self-contained HTML report with plots here.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Offline evaluation on a public benchmark protocol: each model alone and the pipeline."""
    from smartrec.evaluation.protocol import run_stratified_movielens

    if dataset != "movielens-100k":
        raise typer.BadParameter("only movielens-100k is available", param_hint="--dataset")
    if protocol != "stratified":
        raise typer.BadParameter(
            "only the stratified protocol is available", param_hint="--protocol"
        )
    if tune_trials is not None and not (tune_budget > 0 and pipeline and not algorithms):
        raise typer.BadParameter(
            "caps the pipeline's tuning: give --tune-budget too (and no --algorithms)",
            param_hint="--tune-trials",
        )
    say = (lambda msg: None) if as_json else (lambda msg: console.print(f"[dim]{msg}[/]"))
    if pipeline and not algorithms:
        from smartrec.evaluation.pipeline_eval import run_pipeline_protocol
        from smartrec.pipeline.spec import load_spec

        result = run_pipeline_protocol(
            k=k,
            seed=seed,
            data_path=data,
            tune_budget_s=tune_budget,
            tune_trials=tune_trials,
            spec=load_spec(pipeline_file),
            diversity=diversity,
            progress=say,
        )
    else:
        names = [a.strip() for a in algorithms.split(",")] if algorithms else None
        result = run_stratified_movielens(names, None, k=k, seed=seed, data_path=data)
    if report is not None:
        from smartrec.evaluation.report import write_report

        write_report(result, report)
    if as_json:
        print(json.dumps(result, indent=2, default=str))
        return
    table = Table(title=f"{dataset}, {protocol} split (seed {seed}), k={k}")
    cols = [f"ndcg@{k}", "map", f"precision@{k}", f"recall@{k}", "coverage", f"ild@{k}"]
    cols.append(f"novelty@{k}")
    heads = ["model", f"nDCG@{k}", "MAP", f"P@{k}", f"R@{k}", "coverage", "ILD", "novelty"]
    heads += ["train s", "ref nDCG"]
    for h in heads:
        table.add_column(h, justify="left" if h == "model" else "right")
    refs = result.get("reference_ndcg", {})
    for row in result["rows"]:
        ref = refs.get(row["model"])
        table.add_row(
            row["model"],
            *(_fmt(row.get(c)) for c in cols),
            _fmt(row.get("train_seconds"), 2),
            "" if ref is None else f"{ref:.3f}",
        )
    console.print(table)
    if result.get("ablation"):
        ab = Table(title="ablation")
        for h in ("stage", f"nDCG@{k}", "coverage", "ILD"):
            ab.add_column(h, justify="left" if h == "stage" else "right")
        for row in result["ablation"]:
            ab.add_row(
                row["stage"],
                _fmt(row.get(f"ndcg@{k}")),
                _fmt(row.get("coverage")),
                _fmt(row.get(f"ild@{k}")),
            )
        console.print(ab)
    console.print(
        f"[dim]{result['n_train']:,} train / {result['n_test']:,} test ratings, "
        f"{result['n_users']} users; data: {result['source']}[/]\n[dim]{result['protocol']}[/]"
    )
    if report is not None:
        console.print(f"report: {report}")


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    return f"{float(value):.{digits}f}"


@app.command()
def tune(
    budget: Annotated[float, typer.Option(help="Seconds to spend, all models together.")] = 300.0,
    algorithms: Annotated[
        str | None, typer.Option(help="Comma-separated (default: the configured models).")
    ] = None,
    trials: Annotated[
        int | None,
        typer.Option(min=1, help="At most this many trials per model and for the ranking stage."),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Search the models' hyperparameters on a validation split of the stored events; the
    chosen values are logged to MLflow and become the defaults of the next training."""
    from smartrec.runtime import Runtime

    settings = _settings(config)
    runtime = Runtime.build(settings)
    runtime.store.migrate()
    names = [a.strip() for a in algorithms.split(",")] if algorithms else list(settings.models)
    result = runtime.trainer.tune(
        budget, names, progress=lambda msg: console.print(f"[dim]{msg}[/]"), trials=trials
    )
    table = Table(title=f"tuning ({result.seconds:.0f}s of {budget:.0f}s)")
    for h in ("model", "default", "best", "trials", "chosen parameters"):
        table.add_column(h, justify="left" if h in ("model", "chosen parameters") else "right")
    for name in names:
        if name not in result.best_params:
            table.add_row(name, "", "", "", "failed: " + result.errors.get(name, "no trial"))
            continue
        table.add_row(
            name,
            _fmt(result.default_value.get(name)),
            _fmt(result.best_value.get(name)),
            str(result.n_trials.get(name, 0)),
            json.dumps(result.best_params[name], default=str),
        )
    console.print(table)
    if "pipeline" in result.best_params:
        console.print(f"ranking stage: {json.dumps(result.best_params['pipeline'], default=str)}")
    console.print("logged to MLflow; the next training uses these values")


@app.command("import")
def import_(
    dataset: Annotated[str, typer.Argument(help="movielens-100k")] = "movielens-100k",
    data: Annotated[Path | None, typer.Option(help="Local ML-100K directory or zip.")] = None,
    config: ConfigOpt = None,
) -> None:
    """Load a public dataset into the catalog and event log through the ingest path."""
    from smartrec.datasets.movielens import load_movielens_100k
    from smartrec.demo import ingest_movielens
    from smartrec.runtime import Runtime

    if dataset != "movielens-100k":
        raise typer.BadParameter("only movielens-100k is available")
    runtime = Runtime.build(_settings(config))
    runtime.store.migrate()
    ml = load_movielens_100k(data, progress=lambda m: console.print(f"  {m}"))
    accepted, dupes = ingest_movielens(runtime, ml, console)
    console.print(f"stored {accepted:,} events ({dupes:,} already there)")


@app.command()
def demo(
    data: Annotated[Path | None, typer.Option(help="Local ML-100K directory or zip.")] = None,
    config: ConfigOpt = None,
    host: Annotated[str | None, typer.Option()] = None,
    port: Annotated[int | None, typer.Option()] = None,
    serve_: Annotated[
        bool, typer.Option("--serve/--no-serve", help="Serve after training.")
    ] = True,
    retrain: Annotated[bool, typer.Option(help="Train again even if a champion exists.")] = False,
) -> None:
    """MovieLens-100K end to end: ingest, train, register, serve on embedded defaults."""
    from smartrec.demo import print_where_to_look, run_demo
    from smartrec.runtime import Runtime

    settings = _settings(config, host=host, port=port)
    runtime = Runtime.build(settings)
    run_demo(runtime, console, data=data, retrain=retrain)
    if not serve_:
        runtime.stop()
        return
    import socket

    import uvicorn

    from smartrec.api import create_app

    with socket.socket() as probe:
        if probe.connect_ex((settings.host, settings.port)) == 0:
            err.print(
                f"[red]port {settings.port} on {settings.host} is taken[/]: "
                "stop what runs there or pass --port"
            )
            raise typer.Exit(1)
    token = _demo_key(runtime)
    print_where_to_look(console, settings.host, settings.port, token, settings.auth_required)
    _logging("WARNING")
    uvicorn.run(
        create_app(settings, runtime=runtime),
        host=settings.host,
        port=settings.port,
        log_level="warning",
    )


def _keys(config: Path | None) -> ApiKeys:
    return _key_store(_settings(config))


def _key_store(settings: Settings) -> ApiKeys:
    """The API keys of the configured database (migrated to the newest schema first)."""
    from smartrec.keys import ApiKeys
    from smartrec.storage import key_store, open_store

    settings.ensure_home()
    store = open_store(settings.resolved_database_url)
    store.migrate()
    return ApiKeys(key_store(store))


@keys_app.command("create")
def keys_create(
    scope: Annotated[
        str, typer.Option("--scope", "-s", help="Comma-separated: read, ingest, admin.")
    ],
    name: Annotated[str | None, typer.Option(help="A label, e.g. the client's name.")] = None,
    rate_limit: Annotated[
        float | None,
        typer.Option(
            help="Requests per second for this key (default: SMARTREC_RATE_LIMIT_PER_KEY)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Create a key and print its token once (only a hash of it is stored)."""
    key, token = _keys(config).create(scope, name, rate_limit)
    if as_json:
        print(json.dumps({**key.as_dict(), "token": token}))
        return
    console.print(f"key {key.key_id} ({', '.join(_scopes(key))}) created. Its token, shown once:")
    print(token)
    console.print("[dim]send it as 'Authorization: Bearer <token>'[/]")


@keys_app.command("list")
def keys_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    config: ConfigOpt = None,
) -> None:
    """List keys (never their tokens)."""
    keys = _keys(config).list()
    if as_json:
        print(json.dumps([k.as_dict() for k in keys]))
        return
    table = Table(title="API keys")
    for h in ("key id", "name", "scopes", "rate limit", "created", "revoked"):
        table.add_column(h)
    for k in keys:
        table.add_row(
            k.key_id,
            k.name or "",
            ",".join(_scopes(k)),
            "" if k.rate_limit is None else f"{k.rate_limit:g}/s",
            _when(k.created_at),
            _when(k.revoked_at),
        )
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key id (`smartrec keys list`).")],
    config: ConfigOpt = None,
) -> None:
    """Revoke a key: refused at once by servers that have not cached it, by the others within
    SMARTREC_AUTH_CACHE_TTL_S."""
    _keys(config).revoke(key_id)
    console.print(f"key {key_id} revoked")


def _scopes(key: ApiKey) -> list[str]:
    """In the order the scopes are declared (read, ingest, admin), as ``as_dict`` lists them."""
    from smartrec.schemas import SCOPES

    return sorted(key.scopes, key=SCOPES.index)


def _when(ms: int | None) -> str:
    if ms is None:
        return ""
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _demo_key(runtime: Runtime) -> str:
    """A fresh all-scope key named "demo" (the previous demo keys are revoked)."""
    for key in runtime.keys.list():
        if key.name == "demo" and key.active:
            runtime.keys.revoke(key.key_id)
    _, token = runtime.keys.create("read,ingest,admin", name="demo")
    return str(token)


def _objects(settings: Settings, write: bool = False) -> Any:
    """The snapshot store, checked now (written to only by the commands that write): a wrong
    bucket or endpoint is said before any work."""
    from smartrec.storage.objects import open_object_store

    objects = open_object_store(settings.resolved_snapshot_url)
    objects.check(write=write)
    return objects


@snapshot_app.command("export")
def snapshot_export(
    config: ConfigOpt = None,
    since: Annotated[
        str | None,
        typer.Option(help="Only events at or after this time (ISO 8601 or epoch seconds)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the manifest as JSON.")] = False,
) -> None:
    """Write the event log (or its events since a time) as one Parquet object."""
    from dataclasses import asdict

    from smartrec.storage import open_store
    from smartrec.storage.objects.snapshots import write_snapshot

    settings = _settings(config)
    settings.ensure_home()
    objects = _objects(settings, write=True)
    store = open_store(settings.resolved_database_url)
    store.migrate()
    since_ms = None if since is None else _epoch_ms(since)
    try:
        info = write_snapshot(store, objects, since_ms)
    finally:
        store.close()
    if as_json:
        print(json.dumps(asdict(info), indent=2))
    else:
        console.print(
            f"wrote {info.rows:,} events ({info.bytes:,} bytes) to {objects.url}/{info.path}"
        )


@snapshot_app.command("list")
def snapshot_list(
    config: ConfigOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The snapshots in SMARTREC_SNAPSHOT_URL, oldest first."""
    from dataclasses import asdict

    from smartrec.storage.objects.snapshots import list_snapshots

    settings = _settings(config)
    objects = _objects(settings)
    found = list_snapshots(objects)
    if as_json:
        print(json.dumps([asdict(s) for s in found], indent=2))
        return
    table = Table("path", "events", "bytes", "taken")
    for info in found:
        table.add_row(
            info.path, f"{info.rows:,}", f"{info.bytes:,}", _when(int(info.created_at * 1000))
        )
    console.print(table)


@snapshot_app.command("prune")
def snapshot_prune(
    keep: Annotated[int, typer.Option(min=0, help="How many of the newest to keep.")] = 3,
    config: ConfigOpt = None,
) -> None:
    """Delete all but the newest snapshots (they hold users' events: keep only what you need)."""
    from smartrec.storage.objects.snapshots import prune_snapshots

    deleted = prune_snapshots(_objects(_settings(config), write=True), keep)
    console.print(f"deleted {len(deleted)} snapshot object(s)")


def _epoch_ms(text: str) -> int:
    """ISO 8601 (a naive time is UTC) or epoch seconds, as epoch milliseconds."""
    from datetime import UTC, datetime

    try:
        return int(float(text) * 1000)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is neither ISO 8601 nor epoch seconds") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


@db_app.command("upgrade")
def db_upgrade(config: ConfigOpt = None) -> None:
    """Apply the Alembic migrations to the configured database."""
    from smartrec.storage import open_store

    settings = _settings(config)
    settings.ensure_home()
    open_store(settings.resolved_database_url).migrate()
    console.print("database is at the newest schema")


def main() -> None:
    from pydantic import ValidationError

    try:
        app()
    except SmartrecError as exc:
        err.print(f"[red]error:[/] {exc}")
        sys.exit(2)
    except ValidationError as exc:
        err.print(f"[red]invalid settings:[/] {exc}")
        sys.exit(2)


if __name__ == "__main__":
    main()
