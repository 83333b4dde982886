"""Prometheus metrics, one registry per app so that several apps can live in one process.

With ``PROMETHEUS_MULTIPROC_DIR`` set (``smartrec serve --workers N`` sets it before the workers
start), prometheus_client keeps every worker's samples in files there, and the scrape adds up
the files of all workers, whichever worker answers it: see :meth:`Metrics.exposition`.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from tempfile import TemporaryDirectory

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

log = logging.getLogger(__name__)

#: prometheus_client's switch to multiprocess mode; read when it is imported.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: With several workers, how old (seconds) the gauges of the workers a scrape does not reach
#: may be: each worker sets its own gauges this often.
GAUGE_REFRESH_S = 5.0


def multiprocess_dir() -> Path | None:
    value = os.environ.get(MULTIPROC_ENV)
    return Path(value) if value else None


@contextmanager
def multiprocess_metrics() -> Iterator[Path]:
    """Point ``PROMETHEUS_MULTIPROC_DIR`` at an empty directory for one run of several worker
    processes (before they start, so that their prometheus_client reads it).

    A directory the operator set is emptied of sample files (files of an earlier run would add
    its counts to this one's) and kept; otherwise a fresh temporary one, removed at the end.
    """
    given = multiprocess_dir()
    if given is not None:
        given.mkdir(parents=True, exist_ok=True)
        for stale in given.glob("*.db"):
            stale.unlink()
        yield given
        return
    with TemporaryDirectory(prefix="smartrec-metrics-", ignore_cleanup_errors=True) as tmp:
        os.environ[MULTIPROC_ENV] = tmp
        try:
            yield Path(tmp)
        finally:
            os.environ.pop(MULTIPROC_ENV, None)


class Metrics:
    def __init__(self) -> None:
        self.multiprocess = multiprocess_dir() is not None
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "smartrec_http_requests",
            "HTTP requests by route and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "smartrec_http_request_duration_seconds",
            "HTTP request latency by route",
            ["method", "route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.events = Counter("smartrec_events_accepted", "Events stored", registry=self.registry)
        self.duplicates = Counter(
            "smartrec_events_duplicate",
            "Events already stored (idempotent retries)",
            registry=self.registry,
        )
        self.recommendations = Counter(
            "smartrec_recommendations",
            "Recommendation answers by kind and source",
            ["kind", "source"],
            registry=self.registry,
        )
        # Several workers: 1 for a version while any live worker serves it.
        self.model_info = Gauge(
            "smartrec_model_version_info",
            "1 for the model version being served",
            ["version", "algorithm"],
            registry=self.registry,
            multiprocess_mode="livemax",
        )
        # Several workers: the sum over the live workers.
        self.feeds = Gauge(
            "smartrec_feeds",
            "Per-user feeds in this process: cached now; hits, misses and feeds taken from the "
            "shared store since start",
            ["what"],
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.feed_lane = Counter(
            "smartrec_feed_lane_requests",
            "User recommendation requests the lane answered from a feed (answered), by "
            "running the pipeline (ranked), or handed to the router (routed)",
            ["outcome"],
            registry=self.registry,
        )
        self.lane_answered = self.feed_lane.labels("answered")
        self.lane_ranked = self.feed_lane.labels("ranked")
        self.lane_routed = self.feed_lane.labels("routed")
        self._shown: set[tuple[str, str]] = set()

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def show_model(self, version: str | None, algorithm: str | None) -> None:
        """One sample, 1, for the version served (none without a model). Labels cannot be
        removed in multiprocess mode: there the versions this worker no longer serves go to 0."""
        current = {(version, algorithm or "")} if version is not None else set()
        if not self.multiprocess:
            self.model_info.clear()
        else:
            for old in self._shown - current:
                self.model_info.labels(*old).set(0)
        for labels in current:
            self.model_info.labels(*labels).set(1)
        self._shown |= current

    def show_feeds(self, status: Mapping[str, object]) -> None:
        for what in ("cached", "hits", "misses", "shared_hits"):
            value = status.get(what, 0)
            self.feeds.labels(what).set(float(value) if isinstance(value, int | float) else 0.0)

    def exposition(self) -> bytes:
        """The text format: this app's registry, or with several workers every worker's files
        added up (counters and histograms summed, gauges by their ``multiprocess_mode``)."""
        if not self.multiprocess:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return generate_latest(registry)

    def close(self) -> None:
        """This worker stops: its live gauges leave the totals (its counts stay in them)."""
        if self.multiprocess:
            mark_process_dead(os.getpid())


class Repeating:
    """Calls ``fn`` every ``interval_s`` seconds in a daemon thread, from start() to stop()."""

    def __init__(self, fn: Callable[[], None], interval_s: float, name: str) -> None:
        self._fn = fn
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self._interval_s + 1.0)

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self._fn()
            except Exception:  # the next round may do better; the scrape still answers
                log.warning("%s failed", self._thread.name, exc_info=True)
