"""Training: snapshot -> time split -> fit -> evaluate -> refit -> register -> promote."""

from smartrec.training.jobs import JobRunner
from smartrec.training.trainer import Trainer, TrainResult

__all__ = ["JobRunner", "TrainResult", "Trainer"]
