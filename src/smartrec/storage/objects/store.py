"""Object storage through fsspec: one adapter for every scheme fsspec knows.

URLs: a local path (``/var/lib/smartrec/snapshots``, the default under the home), ``memory://``
(tests), ``s3://bucket/prefix`` (the ``s3`` extra: s3fs), ``gs://bucket/prefix`` (``gcs``:
gcsfs), ``az://container/prefix`` (``azure``: adlfs). Query parameters are the filesystem's
options: ``s3://bucket/snapshots?endpoint_url=http://127.0.0.1:5000`` for MinIO, moto or any
S3-compatible store. Credentials come from where each cloud's SDK looks (environment, instance
or workload identity), never from the URL.
"""

from __future__ import annotations

import contextlib
import posixpath
import threading
import uuid
from typing import IO, Any, Literal
from urllib.parse import parse_qsl, urlsplit

from smartrec.errors import ConfigError

EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs", "az": "azure", "abfs": "azure"}
#: How long a check may take: an endpoint that accepts connections and never answers would
#: hold a write for ever (botocore waits on ``Expect: 100-continue``).
CHECK_TIMEOUT_S = 30.0
#: S3 defaults that make an unreachable endpoint an error in seconds, not minutes.
S3_CONFIG = {"connect_timeout": 5, "read_timeout": 60, "retries": {"max_attempts": 3}}


def open_object_store(url: str) -> FsspecStore:
    """The store at ``url``; nothing connects here (:meth:`FsspecStore.check` does)."""
    return FsspecStore(url)


def split_url(url: str) -> tuple[str, dict[str, Any]]:
    """(the URL without its query, the query as filesystem options)."""
    parts = urlsplit(url)
    if "://" not in url or not parts.query:
        return url, {}
    options: dict[str, Any] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        options[key] = {"true": True, "false": False}.get(value.lower(), value)
    return url.split("?", 1)[0], options


class FsspecStore:
    def __init__(self, url: str) -> None:
        import fsspec

        base, options = split_url(url)
        self.url = base
        scheme = base.split("://", 1)[0] if "://" in base else "file"
        if scheme in ("s3", "s3a"):
            options.setdefault("config_kwargs", S3_CONFIG)
        try:
            fs, root = fsspec.core.url_to_fs(base, **options)
        except ImportError as exc:
            extra = EXTRAS.get(scheme)
            hint = f": pip install 'smartrec[{extra}]'" if extra else ""
            raise ConfigError(f"object storage {base} needs a filesystem driver{hint}") from exc
        except ValueError as exc:  # an unknown scheme, a bad option
            raise ConfigError(f"object storage {base}: {exc}") from exc
        self.fs = fs
        self.root = str(root).rstrip("/") or "/"
        self.local = scheme in ("file", "local")

    def _path(self, path: str) -> str:
        clean = posixpath.normpath("/" + path.lstrip("/")).lstrip("/")
        if not clean or clean == ".":
            raise ValueError(f"not an object path: {path!r}")
        return f"{self.root}/{clean}"

    def check(self, write: bool = True) -> None:
        """Write and delete a probe object (``write``), or list the root (reads only: a
        read-only bucket or mount serves training), within :data:`CHECK_TIMEOUT_S`."""
        done: list[BaseException | None] = []

        def probe() -> None:
            try:
                if write:
                    target = self._path(f".smartrec-check-{uuid.uuid4().hex}")
                    if self.local:
                        self.fs.makedirs(self.root, exist_ok=True)
                    self.fs.pipe(target, b"")
                    self.fs.rm(target)
                elif not self.local or self.fs.exists(self.root):
                    # Nothing there yet is no error (an empty prefix is no object on S3).
                    with contextlib.suppress(FileNotFoundError):
                        self.fs.ls(self.root)
                done.append(None)
            except Exception as exc:
                done.append(exc)

        thread = threading.Thread(target=probe, name="object-store-check", daemon=True)
        thread.start()
        thread.join(CHECK_TIMEOUT_S)
        what = "written" if write else "read"
        if not done:
            raise ConfigError(
                f"object storage {self.url} cannot be {what}: no answer in {CHECK_TIMEOUT_S:g} s"
            )
        error = done[0]
        if error is not None:
            kind = type(error).__name__
            raise ConfigError(f"object storage {self.url} cannot be {what}: {kind}: {error}")

    def put(self, path: str, data: bytes) -> None:
        target = self._path(path)
        if self.local:
            self.fs.makedirs(posixpath.dirname(target), exist_ok=True)
        self.fs.pipe(target, data)

    def get(self, path: str) -> bytes:
        data: bytes = self.fs.cat_file(self._path(path))
        return data

    def exists(self, path: str) -> bool:
        return bool(self.fs.exists(self._path(path)))

    def list(self, prefix: str = "") -> list[str]:
        base = self.root if not prefix.strip("/") else self._path(prefix)
        try:
            found = self.fs.find(base)
        except FileNotFoundError:
            return []
        root = self.root.rstrip("/") + "/"
        return sorted(p[len(root) :] if p.startswith(root) else p for p in found)

    def delete(self, path: str) -> None:
        self.fs.rm(self._path(path))

    def open(self, path: str, mode: Literal["rb", "wb"]) -> IO[bytes]:
        target = self._path(path)
        if mode == "wb" and self.local:
            self.fs.makedirs(posixpath.dirname(target), exist_ok=True)
        handle: IO[bytes] = self.fs.open(target, mode)
        return handle
