"""Client-side exceptions: one class per kind of RFC 9457 problem the server answers.

These are not the server's :mod:`smartrec.errors` (raised inside the engine): they describe an
HTTP answer, so callers can ``except NotFound`` without looking at status codes.
"""

from __future__ import annotations

import json
import time
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from smartrec.schemas import TrainingJobOut


class SmartRecError(Exception):
    """Root of every error the client raises."""


class ApiError(SmartRecError):
    """The server answered with an error status; ``problem`` is its RFC 9457 body."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        problem: dict[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{status} {title}: {detail}")
        self.status = status
        self.title = title
        self.detail = detail
        self.problem: dict[str, Any] = problem if problem is not None else {}
        #: Seconds the server asked the client to wait (``Retry-After``), when it said.
        self.retry_after = retry_after

    @property
    def type(self) -> str | None:
        value = self.problem.get("type")
        return value if isinstance(value, str) else None

    @property
    def errors(self) -> list[dict[str, Any]]:
        """Per-field errors (``field``, ``message``, ``index`` for rows of a batch)."""
        value = self.problem.get("errors")
        return [e for e in value if isinstance(e, dict)] if isinstance(value, list) else []


class InvalidRequest(ApiError):
    """400 or 422: the request itself is wrong; retrying it cannot help."""


class Unauthorized(ApiError):
    """401: no API key, or one the server does not know."""


class Forbidden(ApiError):
    """403: the key lacks the scope this call needs."""


class NotFound(ApiError):
    """404: no such item, user, job, model version or key (or no such route on this server)."""


class Conflict(ApiError):
    """409."""


class PayloadTooLarge(ApiError):
    """413: more rows or bytes than the server takes in one batch: lower ``batch_size``."""


class RateLimited(ApiError):
    """429, raised once the retries are spent (or ``Retry-After`` was too long to wait)."""


class ServerError(ApiError):
    """5xx."""


class ServiceUnavailable(ServerError):
    """503: not ready (no model, database down) or overloaded, after the retries."""


class ConnectionFailed(SmartRecError):
    """No HTTP answer (refused, reset, timed out) after the retries; ``__cause__`` is httpx's."""


class UnexpectedResponse(SmartRecError):
    """A success answer that is not what this call answers (a different server at the URL, or
    a server too old for the call); ``__cause__`` says what did not fit."""


class WaitTimeout(SmartRecError, TimeoutError):
    """A training job was still running when :meth:`wait` gave up; ``job`` is its last state."""

    def __init__(self, message: str, job: TrainingJobOut) -> None:
        super().__init__(message)
        self.job = job


_BY_STATUS: dict[int, type[ApiError]] = {
    400: InvalidRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: InvalidRequest,
    429: RateLimited,
    503: ServiceUnavailable,
}


def retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds (a number or an HTTP date); None when absent or unreadable."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return max(0.0, seconds) if seconds == seconds else None  # NaN is unreadable


def error_from(response: httpx.Response) -> ApiError:
    """The typed exception for an error answer; bodies that are not problems (a proxy's HTML
    page) still give status and reason."""
    status = response.status_code
    problem: dict[str, Any] = {}
    try:
        body = json.loads(response.content) if response.content else None
    except ValueError:
        body = None
    if isinstance(body, dict):
        problem = body
    title = problem.get("title")
    detail = problem.get("detail")
    if not isinstance(title, str) or not title:
        title = response.reason_phrase or "Error"
    if not isinstance(detail, str) or not detail:
        text = response.text.strip() if not problem else ""
        detail = text[:500] or title
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else ApiError)
    return cls(status, title, detail, problem, retry_after(response))
