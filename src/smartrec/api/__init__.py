"""HTTP API: ``create_app(settings)`` builds a FastAPI app; nothing connects at import time."""

from smartrec.api.app import create_app

__all__ = ["create_app"]
