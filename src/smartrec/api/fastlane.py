"""The recommendation lane: ``GET /v1/users/{id}/recommendations`` answered in pure ASGI.

A request whose answer is in the user's feed costs the service about 0.1 ms; FastAPI's routing,
dependency solving and validation of the route's nine parameters cost several times that, and
about a millisecond on top of a request without a feed (a user who has just acted). This
middleware answers such requests before the router, with the same bytes the route would send,
and hands everything else to the route untouched:

* it only takes requests it can read without doubt: known parameters, each at most once, in
  the plain forms below (``n=10``, ``diversity=0.7``, ``exclude_seen=true``); anything else
  (an unknown or repeated parameter, ``n=010``, ``diversity=.7``, a value out of range,
  ``fields``) goes to FastAPI, which validates it and answers 422 where it must;
* the service answers from the feed without blocking (``recommend_fast``), or from the feed
  in the shared store (Redis, read asynchronously: ``recommend_shared``); when it cannot (no
  fresh feed, a filter that reads rows) the lane runs ``recommend`` in the thread pool, as the
  route would; on an error (such as a bad page token) the route runs, and answers with its
  problem;
* metrics are the route's: the matched route is put in the scope for the latency histogram,
  and the recommendation counter is counted the same way.

``SMARTREC_FEED_LANE=false`` turns it off (every request goes through FastAPI).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from smartrec.api import wire
from smartrec.api.auth import KEY
from smartrec.api.wire import FEED_TRIED, answer_body, source_of
from smartrec.serving import RecommendRequest

__all__ = ["FEED_TRIED", "FeedLane", "read_query", "user_of"]

PREFIX = "/v1/users/"
SUFFIX = "/recommendations"
JSON = b"application/json"


def read_query(query_string: bytes) -> dict[str, Any] | None:
    """The route's arguments from a query it can read without doubt, else None (FastAPI reads
    it, the same way Starlette parses it: latin-1, then percent-decoding as UTF-8)."""
    return wire.read_query(parse_qsl(query_string.decode("latin-1"), keep_blank_values=True))


def user_of(path: str) -> str | None:
    """The ``user_id`` the route's ``{user_id:path}`` would match, if the route is this one."""
    if not (path.startswith(PREFIX) and path.endswith(SUFFIX)):
        return None
    user = path[len(PREFIX) : -len(SUFFIX)]
    # The route's pattern is ``.*`` without DOTALL: an id with a newline does not match it
    # (404 from the router), so the lane must not answer it either.
    if not user or len(user) > wire.MAX_ID or "\x00" in user or "\n" in user:
        return None
    return user


class FeedLane:
    def __init__(self, app: ASGIApp, route: Any) -> None:
        self.app = app
        self.route = route  # the FastAPI route it stands in for (metrics label it)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and not scope.get("root_path"):
            user = user_of(scope["path"])
            if user is not None:
                metrics = scope["app"].state.metrics
                outcome = await self._answer(scope, user, send)
                if outcome is not None:
                    (metrics.lane_answered if outcome else metrics.lane_ranked).inc()
                    return
                metrics.lane_routed.inc()
        await self.app(scope, receive, send)

    async def _answer(self, scope: Scope, user: str, send: Send) -> bool | None:
        """True: answered from the feed; False: answered by the pipeline run in the thread
        pool; None: not answered (the route takes the request)."""
        key = scope.get(KEY)
        if key is not None and "read" not in key.scopes:
            return None  # the route answers 403
        args = read_query(scope.get("query_string", b""))
        runtime = getattr(scope["app"].state, "runtime", None)
        if args is None or runtime is None:
            return None
        request = RecommendRequest(user, **args)
        if request.n > runtime.settings.max_n:
            return None
        try:
            results = runtime.service.recommend_fast(request)
            if results is None:
                results = await runtime.service.recommend_shared(request)
        except Exception:
            return None  # the route raises it again, and answers with its problem
        from_feed = results is not None
        if results is None:
            scope[FEED_TRIED] = True
            try:
                results = await run_in_threadpool(runtime.service.recommend, request)
            except Exception:
                return None  # likewise
        scope["route"] = self.route
        scope["path_params"] = {"user_id": user}
        scope["app"].state.metrics.recommendations.labels("user", source_of(results)).inc()
        body = answer_body(
            user_id=user,
            model_version=results.model_version,
            items=results.items,
            next_page_token=results.next_page_token,
        )
        headers = [(b"content-length", str(len(body)).encode()), (b"content-type", JSON)]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return from_feed
