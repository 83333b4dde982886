"""Serving: the loaded champion, hot-swapped when the registry alias moves."""

from smartrec.serving.service import Recommendation, RecommendationService, Results

__all__ = ["Recommendation", "RecommendationService", "Results"]
