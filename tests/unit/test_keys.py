"""API keys: token format, hashing, verification cache, revocation."""

from __future__ import annotations

from pathlib import Path

import pytest

from smartrec.errors import NotFound, ValidationFailed
from smartrec.keys import ApiKeys
from smartrec.storage.sql import SqlStore
from smartrec.storage.sql.keys import SqlKeyStore


class CountingStore(SqlKeyStore):
    reads = 0

    def get(self, key_id: str) -> dict[str, object] | None:
        self.reads += 1
        return super().get(key_id)


@pytest.fixture()
def keys(tmp_path: Path) -> ApiKeys:
    store = SqlStore(f"sqlite:///{tmp_path / 'k.db'}")
    store.migrate()
    return ApiKeys(CountingStore(store))


def test_create_verify_revoke(keys: ApiKeys) -> None:
    key, token = keys.create("ingest, read", name="shop", rate_limit=5)
    assert token.startswith(f"sr_{key.key_id}_") and len(key.key_id) == 12
    assert sorted(key.scopes) == ["ingest", "read"] and key.rate_limit == 5
    assert keys.verify(token) == key
    assert keys.verify(token[:-2]) is None
    keys.revoke(key.key_id)
    assert keys.verify(token) is None  # read again (revoked here: dropped from the cache)
    assert keys.cached(token) is None  # the revoked row is cached now: refused, no read
    with pytest.raises(NotFound):
        keys.revoke("0123456789ab")


@pytest.mark.parametrize("scopes", ["", "read,root", ",,"])
def test_scopes_are_checked(keys: ApiKeys, scopes: str) -> None:
    with pytest.raises(ValidationFailed):
        keys.create(scopes)


@pytest.mark.parametrize("rate", [0, -1, float("inf"), float("nan"), 2e6])
def test_rate_limits_are_checked(keys: ApiKeys, rate: float) -> None:
    with pytest.raises(ValidationFailed):
        keys.create("read", rate_limit=rate)


def test_malformed_tokens_cost_no_lookup(keys: ApiKeys) -> None:
    store = keys.store
    assert isinstance(store, CountingStore)
    for token in ("", "sr_", "sr__x", "sr_XYZ_secret", "sr_" + "a" * 40 + "_s", "Bearer x"):
        assert keys.verify(token) is None and keys.cached(token) is None
    assert store.reads == 0


def test_made_up_key_ids_do_not_push_real_keys_out(keys: ApiKeys) -> None:
    """Unknown ids are cached apart (a bounded cache): a flood of them costs one read each and
    leaves the real keys cached."""
    store = keys.store
    assert isinstance(store, CountingStore)
    _, token = keys.create("read")
    assert keys.verify(token) is not None
    for n in range(3_000):
        assert keys.verify(f"sr_{n:012x}_guess") is None
    reads = store.reads
    assert keys.cached(token) is not False  # still cached: no database read
    assert keys.verify(token) is not None and store.reads == reads
    assert keys.cached(f"sr_{2_999:012x}_guess") is None  # a known-unknown id: no read


def test_a_verified_token_is_found_by_its_digest_until_revoked(keys: ApiKeys) -> None:
    store = keys.store
    assert isinstance(store, CountingStore)
    key, token = keys.create("read")
    assert keys.verify(token) == key
    reads = store.reads
    assert keys.cached(token) == key and store.reads == reads
    assert keys.cached(token[:-1] + ("x" if token[-1] != "x" else "y")) is None  # wrong secret
    keys.revoke(key.key_id)
    assert keys.cached(token) is False  # dropped at once: verify reads the row again
    assert keys.verify(token) is None
