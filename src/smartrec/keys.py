"""API keys: bearer tokens with scopes, stored hashed, checked in constant time.

A token reads ``sr_<key id>_<secret>``. The key id finds the row; only the SHA-256 of the
secret is stored and compared (``hmac.compare_digest``). The secret holds 256 random bits, so a
fast hash is enough (a password KDF protects low-entropy secrets; this one cannot be guessed).
Verified keys are cached for ``ttl_s`` seconds: a key revoked through another replica stops
working there within that time, and at once in the process that revoked it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

from cachetools import TTLCache

from smartrec.errors import NotFound, ValidationFailed
from smartrec.schemas import SCOPES
from smartrec.storage.ports import KeyStore

PREFIX = "sr_"
_DUMMY = hashlib.sha256(b"no such key").hexdigest()


@dataclass(frozen=True, slots=True)
class ApiKey:
    key_id: str
    name: str | None
    scopes: frozenset[str]
    created_at: int
    revoked_at: int | None
    rate_limit: float | None
    secret_sha256: str

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def as_dict(self) -> dict[str, object]:
        """What may be shown: everything but the hash."""
        return {
            "key_id": self.key_id,
            "name": self.name,
            "scopes": sorted(self.scopes, key=SCOPES.index),
            "created_at": self.created_at,
            "revoked_at": self.revoked_at,
            "rate_limit": self.rate_limit,
        }


def parse_scopes(text: str | list[str]) -> list[str]:
    """``"read,ingest"`` or a list -> known scopes in canonical order; refuses unknown ones."""
    names = [s.strip() for s in (text.split(",") if isinstance(text, str) else text)]
    names = [s for s in names if s]
    unknown = sorted(set(names) - set(SCOPES))
    if unknown or not names:
        raise ValidationFailed(
            f"unknown scope(s) {unknown}; scopes are {', '.join(SCOPES)}"
            if unknown
            else f"give at least one scope: {', '.join(SCOPES)}",
            field="scopes",
        )
    return [s for s in SCOPES if s in names]


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


_KEY_ID = re.compile(r"[0-9a-f]{12}")
_MISS = object()


def _split(token: str) -> tuple[str, str] | None:
    """(key id, secret) of a well-formed token; anything else is refused without a lookup."""
    if not token.startswith(PREFIX):
        return None
    key_id, sep, secret = token[len(PREFIX) :].partition("_")
    if not sep or not secret or len(secret) > 128 or not _KEY_ID.fullmatch(key_id):
        return None
    return key_id, secret


class ApiKeys:
    """Create, list, revoke and verify keys (the admin endpoints and ``smartrec keys``)."""

    def __init__(self, store: KeyStore, ttl_s: float = 10.0, max_cached: int = 10_000) -> None:
        self.store = store
        self._cache: TTLCache[str, ApiKey] = TTLCache(max_cached, ttl_s)
        #: Key ids with no key, apart: a flood of made-up ids cannot push real keys out.
        self._unknown: TTLCache[str, bool] = TTLCache(1_000, ttl_s)
        #: SHA-256 of a verified token -> (its key, until when): the request path's lookup.
        self._verified: dict[bytes, tuple[ApiKey, float]] = {}
        self._ttl_s = ttl_s
        self._max_verified = max_cached
        self._lock = threading.Lock()

    def create(
        self, scopes: str | list[str], name: str | None = None, rate_limit: float | None = None
    ) -> tuple[ApiKey, str]:
        """A new key and its token; the token is returned once and never stored."""
        chosen = parse_scopes(scopes)
        if rate_limit is not None and not (0 < rate_limit <= 1_000_000):
            raise ValidationFailed(
                "rate_limit must be a number of requests per second, above 0 and at most 1,000,000",
                field="rate_limit",
            )
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        row = {
            "key_id": key_id,
            "name": name,
            "scopes": ",".join(chosen),
            "secret_sha256": _digest(secret),
            "rate_limit": rate_limit,
            "created_at": int(time.time() * 1000),
            "revoked_at": None,
        }
        self.store.add(row)
        return _key(row), f"{PREFIX}{key_id}_{secret}"

    def list(self) -> list[ApiKey]:
        return [_key(r) for r in self.store.all()]

    def revoke(self, key_id: str) -> ApiKey:
        if not self.store.revoke(key_id, int(time.time() * 1000)):
            row = self.store.get(key_id)
            if row is None:
                raise NotFound(f"no API key {key_id!r}")
        with self._lock:
            self._cache.pop(key_id, None)
            self._unknown.pop(key_id, None)
            gone = [d for d, (key, _) in self._verified.items() if key.key_id == key_id]
            for digest in gone:
                self._verified.pop(digest, None)
        row = self.store.get(key_id)
        assert row is not None
        return _key(row)

    def forget(self) -> None:
        """Drop every cached verification, as ``ttl_s`` does by itself."""
        with self._lock:
            self._cache.clear()
            self._unknown.clear()
            self._verified.clear()

    def count_active(self) -> int:
        return self.store.count_active()

    def cached(self, token: str) -> ApiKey | bool | None:
        """The verified key if its row is cached (None: invalid); False: not cached, call
        :meth:`verify` (which reads the database) off the event loop.

        A token verified in the last ``ttl_s`` is found by its own SHA-256 in a plain dict
        (one hash and one lookup: the request path's cost of auth); the digest of a whole
        256-bit token tells nothing of any other token, so the lookup needs no constant time.
        """
        digest = hashlib.sha256(token.encode()).digest()
        hit = self._verified.get(digest)
        if hit is not None and hit[1] > time.monotonic():
            return hit[0]
        parts = _split(token)
        if parts is None:
            return None
        with self._lock:
            key = self._cache.get(parts[0], _MISS)
            if key is _MISS:
                if self._unknown.get(parts[0]) is None:
                    return False
                key = None
        return self._remember(digest, _check(key, parts[1]))  # type: ignore[arg-type]

    def verify(self, token: str) -> ApiKey | None:
        """The active key this token belongs to, or None. Always hashes and compares, so an
        unknown key id costs the same as a wrong secret."""
        parts = _split(token)
        if parts is None:
            return None
        key_id, secret = parts
        with self._lock:
            key = self._cache.get(key_id)
        if key is None:
            row = self.store.get(key_id)
            key = None if row is None else _key(row)
            with self._lock:
                if key is None:
                    self._unknown[key_id] = True
                else:
                    self._cache[key_id] = key
        return self._remember(hashlib.sha256(token.encode()).digest(), _check(key, secret))

    def _remember(self, digest: bytes, key: ApiKey | None) -> ApiKey | None:
        if key is not None:
            if len(self._verified) >= self._max_verified:
                self._verified.clear()  # only valid tokens get here: a bound, not a policy
            self._verified[digest] = (key, time.monotonic() + self._ttl_s)
        return key


def _check(key: ApiKey | None, secret: str) -> ApiKey | None:
    expected = key.secret_sha256 if key is not None else _DUMMY
    ok = hmac.compare_digest(_digest(secret), expected)
    return key if ok and key is not None and key.active else None


def _key(row: Mapping[str, object]) -> ApiKey:
    scopes = str(row["scopes"])
    rate = row.get("rate_limit")
    revoked = row.get("revoked_at")
    return ApiKey(
        key_id=str(row["key_id"]),
        name=None if row.get("name") is None else str(row["name"]),
        scopes=frozenset(s for s in scopes.split(",") if s),
        created_at=int(row["created_at"]),  # type: ignore[call-overload]
        revoked_at=None if revoked is None else int(revoked),  # type: ignore[call-overload]
        rate_limit=None if rate is None else float(rate),  # type: ignore[arg-type]
        secret_sha256=str(row["secret_sha256"]),
    )
