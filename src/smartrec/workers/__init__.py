"""Processes beside the API: the event worker (``smartrec worker``)."""

from smartrec.workers.events import EventWorker, WorkerMetrics

__all__ = ["EventWorker", "WorkerMetrics"]
