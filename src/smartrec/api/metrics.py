"""Prometheus metrics, one registry per app so that several apps can live in one process."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
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
        self.model_info = Gauge(
            "smartrec_model_version_info",
            "1 for the model version being served",
            ["version", "algorithm"],
            registry=self.registry,
        )

        self.feeds = Gauge(
            "smartrec_feeds",
            "Per-user feeds in this process: cached now; hits and misses since start",
            ["what"],
            registry=self.registry,
        )
        self.feed_lane = Counter(
            "smartrec_feed_lane_requests",
            "User recommendation requests the feed lane answered, or handed to the router",
            ["outcome"],
            registry=self.registry,
        )
        self.lane_answered = self.feed_lane.labels("answered")
        self.lane_routed = self.feed_lane.labels("routed")

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)
