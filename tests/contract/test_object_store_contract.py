"""The object storage contract: memory, a local path and S3 (moto's server) behave alike."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from smartrec.errors import ConfigError
from smartrec.storage.objects import ObjectStore, open_object_store
from tests.s3proc import CREDENTIALS, MotoServer


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    pytest.importorskip("s3fs")
    with pytest.MonkeyPatch.context() as env:
        for key, value in CREDENTIALS.items():
            env.setenv(key, value)
        server = MotoServer(tmp_path_factory.mktemp("moto")).start()
        server.create_bucket("smartrec-test")
        yield server
        server.stop()


@pytest.fixture(params=["memory", "local", pytest.param("s3", marks=pytest.mark.integration)])
def objects(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    tag = uuid.uuid4().hex[:8]
    if request.param == "memory":
        url = f"memory://smartrec-{tag}"
    elif request.param == "local":
        url = str(tmp_path / "objects")
    else:
        server: MotoServer = request.getfixturevalue("moto")
        url = server.url("smartrec-test", f"run-{tag}")
    store = open_object_store(url)
    store.check()
    return store


def test_objects_round_trip_and_list_under_their_prefix(objects: ObjectStore) -> None:
    assert objects.list() == []
    objects.put("snapshots/a.parquet", b"\x00a")
    objects.put("snapshots/b/c.json", b"{}")
    objects.put("other.txt", b"x" * 100_000)
    assert objects.get("snapshots/a.parquet") == b"\x00a"
    assert objects.exists("snapshots/b/c.json") and not objects.exists("snapshots/none")
    assert objects.list("snapshots") == ["snapshots/a.parquet", "snapshots/b/c.json"]
    assert objects.list() == ["other.txt", "snapshots/a.parquet", "snapshots/b/c.json"]
    objects.delete("snapshots/a.parquet")
    assert objects.list("snapshots/") == ["snapshots/b/c.json"]
    with pytest.raises(FileNotFoundError):
        objects.get("snapshots/a.parquet")


def test_streaming_writes_and_reads(objects: ObjectStore) -> None:
    with objects.open("big/file.bin", "wb") as out:
        for k in range(20):
            out.write(bytes([k]) * 300_000)  # 6 MB: past s3fs's 5 MB multipart block
    with objects.open("big/file.bin", "rb") as src:
        data = src.read()
    assert len(data) == 6_000_000 and data[-1] == 19 and data[:3] == b"\x00\x00\x00"


def test_paths_stay_under_the_root(objects: ObjectStore) -> None:
    objects.put("../escape/x", b"1")  # normalised: under the root, never beside it
    assert objects.list() == ["escape/x"]
    for bad in ("", "/", "."):
        with pytest.raises(ValueError):
            objects.put(bad, b"1")


def test_an_unreachable_store_is_a_clear_error_naming_it(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(ConfigError, match=str(blocker)):
        open_object_store(str(blocker / "snapshots")).check()
    pytest.importorskip("s3fs")
    with pytest.MonkeyPatch.context() as env:
        for key, value in CREDENTIALS.items():
            env.setenv(key, value)
        url = "s3://bucket/x?endpoint_url=http://127.0.0.1:1"
        with pytest.raises(ConfigError, match=r"s3://bucket/x cannot be written") as err:
            open_object_store(url).check()
    assert "endpoint_url" not in str(err.value)  # options (and any secret in them) stay out


def test_a_scheme_without_its_driver_names_the_extra() -> None:
    with pytest.raises(ConfigError, match="unknown-scheme"):
        open_object_store("unknown-scheme://bucket/x")
    try:
        import gcsfs  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match=r"gs://bucket/x .*pip install 'smartrec\[gcs\]'"):
            open_object_store("gs://bucket/x")


def test_reads_need_no_write_access_and_checks_run_side_by_side(tmp_path: Path) -> None:
    root = tmp_path / "read-only"
    writable = open_object_store(str(root))
    writable.put("snapshots/a.json", b"{}")
    root.chmod(0o555)
    (root / "snapshots").chmod(0o555)
    try:
        store = open_object_store(str(root))
        store.check(write=False)  # a training job on a read-only mount
        assert store.list() == ["snapshots/a.json"]
        missing = open_object_store(str(tmp_path / "typo"))
        missing.check(write=False)
        assert not (tmp_path / "typo").exists()  # a read never creates the folder
    finally:
        (root / "snapshots").chmod(0o755)
        root.chmod(0o755)
    shared = open_object_store(str(tmp_path / "shared"))
    errors: list[BaseException] = []

    def check() -> None:
        try:
            shared.check()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=check) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors  # each probe has its own name


def test_an_endpoint_that_never_answers_is_an_error_in_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("s3fs")
    import socket

    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(16)
    port = hole.getsockname()[1]
    monkeypatch.setattr("smartrec.storage.objects.store.CHECK_TIMEOUT_S", 2.0)
    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    started = time.monotonic()
    try:
        with pytest.raises(ConfigError, match="no answer in 2 s"):
            open_object_store(f"s3://bucket/x?endpoint_url=http://127.0.0.1:{port}").check()
    finally:
        hole.close()
    assert time.monotonic() - started < 10
