"""Processes beside the API (``smartrec worker``): the event worker, scheduled retraining."""

from smartrec.workers.events import EventWorker, WorkerMetrics
from smartrec.workers.retrain import RetrainScheduler

__all__ = ["EventWorker", "RetrainScheduler", "WorkerMetrics"]
