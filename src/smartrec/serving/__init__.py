"""Serving: the loaded champion, hot-swapped when the registry alias moves."""

from smartrec.serving.requests import (
    PopularRequest,
    RankRequest,
    RecommendRequest,
    SessionRequest,
    SimilarRequest,
)
from smartrec.serving.results import Reason, Recommendation, Results
from smartrec.serving.service import RecommendationService

__all__ = [
    "PopularRequest",
    "RankRequest",
    "Reason",
    "RecommendRequest",
    "Recommendation",
    "RecommendationService",
    "Results",
    "SessionRequest",
    "SimilarRequest",
]
