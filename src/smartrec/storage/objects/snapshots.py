"""Parquet snapshots of the event log in object storage: a training input that any worker
(or a managed training job) reads without the database, and a copy a user can read with any
Parquet tool (pandas, DuckDB, Spark, Athena, BigQuery).

Layout under the store's root::

    snapshots/events-<UTC stamp>.parquet   user_id, item_id, type, value, timestamp (UTC, ms)
    snapshots/events-<UTC stamp>.json      the manifest: rows, bytes, when, the range of times

The manifest is written last: a snapshot without one was cut short and is never listed.
Snapshots hold users' events: one taken before a user's erasure still holds theirs, so keep
as few as the training needs (``smartrec snapshot prune``).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from smartrec.domain.clock import erasure_key
from smartrec.domain.records import EventSnapshot
from smartrec.storage.objects.base import ObjectStore
from smartrec.storage.ports import EventStore

FORMAT = 1
PREFIX = "snapshots"
#: Rows per Parquet row group: readers stream a group at a time.
ROW_GROUP = 500_000
#: A snapshot object without its manifest this long after it was started was cut short.
ABANDONED_S = 3600.0


@dataclass(frozen=True)
class SnapshotInfo:
    """A snapshot's manifest."""

    path: str  # the Parquet object, relative to the store's root
    rows: int
    bytes: int
    created_at: float  # epoch seconds, read before the log was: erasures after it are not in it
    since_ms: int | None  # the oldest event time asked for (None: the whole log)
    first_ts: float | None
    last_ts: float | None
    format: int = FORMAT


def _table(snap: EventSnapshot) -> Any:
    import pyarrow as pa

    millis = pa.array([round(t * 1000) for t in snap.timestamps], type=pa.int64())
    return pa.table(
        {
            "user_id": pa.array(snap.user_ids, type=pa.string()),
            "item_id": pa.array(snap.item_ids, type=pa.string()),
            "type": pa.array(snap.types, type=pa.string()),
            "value": pa.array(snap.values, type=pa.float64()),
            "timestamp": millis.cast(pa.timestamp("ms", tz="UTC")),
        }
    )


def write_snapshot(
    events: EventStore, objects: ObjectStore, since_ms: int | None = None
) -> SnapshotInfo:
    """The event log (or its events at or after ``since_ms``) as one Parquet object, then its
    manifest."""
    import pyarrow.parquet as pq

    created = time.time()
    snap = events.snapshot(since_ms)
    stamp = datetime.fromtimestamp(created, UTC).strftime("%Y%m%dT%H%M%S%fZ")
    path = f"{PREFIX}/events-{stamp}.parquet"
    with objects.open(path, "wb") as out:
        pq.write_table(_table(snap), out, compression="zstd", row_group_size=ROW_GROUP)
        size = out.tell()
    info = SnapshotInfo(
        path=path,
        rows=len(snap),
        bytes=int(size),
        created_at=created,
        since_ms=since_ms,
        first_ts=snap.timestamps[0] if len(snap) else None,
        last_ts=snap.timestamps[-1] if len(snap) else None,
    )
    objects.put(manifest_path(path), json.dumps(asdict(info), indent=2).encode())
    return info


def manifest_path(path: str) -> str:
    return path.removesuffix(".parquet") + ".json"


def list_snapshots(objects: ObjectStore) -> list[SnapshotInfo]:
    """The complete snapshots (those with a manifest), oldest first."""
    out = []
    for name in objects.list(PREFIX):
        if not name.endswith(".json"):
            continue
        doc = json.loads(objects.get(name))
        if doc.get("format") != FORMAT:
            continue
        out.append(SnapshotInfo(**doc))
    return sorted(out, key=lambda s: s.created_at)


def read_snapshot(
    objects: ObjectStore, path: str | None = None
) -> tuple[SnapshotInfo, EventSnapshot]:
    """A snapshot as the training input, ordered by time: the named one, or else the newest of
    the whole log (one exported with ``since_ms`` is a part, never taken unnamed)."""
    import pyarrow.parquet as pq

    known = list_snapshots(objects)
    if path is None:
        full = [s for s in known if s.since_ms is None]  # not a part exported with --since
        if not full:
            raise FileNotFoundError(f"no snapshot of the whole log in {objects.url}/{PREFIX}")
        info = full[-1]
    else:
        found = [s for s in known if s.path == path or s.path.endswith("/" + path)]
        if not found:
            raise FileNotFoundError(f"no snapshot {path!r} in {objects.url}/{PREFIX}")
        info = found[0]
    with objects.open(info.path, "rb") as src:
        table = pq.read_table(src)
    millis = table.column("timestamp").cast("int64").to_numpy()
    return info, EventSnapshot(
        table.column("user_id").to_pylist(),
        table.column("item_id").to_pylist(),
        table.column("type").to_pylist(),
        table.column("value").to_pylist(),
        (millis / 1000.0).tolist(),
    )


def _stamp(path: str) -> float | None:
    """When a snapshot object was started, from its name (None: not one of ours)."""
    name = path.rsplit("/", 1)[-1].removeprefix("events-").removesuffix(".parquet")
    try:
        return datetime.strptime(name, "%Y%m%dT%H%M%S%fZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


def without_users(events: EventSnapshot, keys: set[str]) -> EventSnapshot:
    """The events of users whose erasure keys are not in ``keys``: a snapshot taken before an
    erasure still holds the erased user's events, and training must not learn from them."""
    if not keys:
        return events
    keep = [k for k, user in enumerate(events.user_ids) if erasure_key(user) not in keys]
    return EventSnapshot(
        [events.user_ids[k] for k in keep],
        [events.item_ids[k] for k in keep],
        [events.types[k] for k in keep],
        [events.values[k] for k in keep],
        [events.timestamps[k] for k in keep],
    )


def prune_snapshots(objects: ObjectStore, keep: int) -> list[str]:
    """Delete all but the ``keep`` newest snapshots, and those cut short (no manifest an hour
    after they were started: one being written now is left alone); the paths deleted."""
    known = list_snapshots(objects)
    drop = known[: max(0, len(known) - keep)]
    complete = {s.path for s in known}
    deleted = []
    for info in drop:
        # The manifest first: a crash between leaves a data object without one (cleaned up
        # later), never a listed snapshot whose data is gone.
        objects.delete(manifest_path(info.path))
        objects.delete(info.path)
        deleted.append(info.path)
    for name in objects.list(PREFIX):
        started = _stamp(name)
        abandoned = started is not None and time.time() - started > ABANDONED_S
        if name.endswith(".parquet") and name not in complete and abandoned:
            objects.delete(name)
            deleted.append(name)
    return deleted
