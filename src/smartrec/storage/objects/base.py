"""The object storage port: a few whole-object and streaming calls under one root URL."""

from __future__ import annotations

from typing import IO, Literal, Protocol


class ObjectStore(Protocol):
    #: The root URL as users wrote it, without credentials or options (for messages).
    url: str

    def check(self, write: bool = True) -> None:
        """Raise ConfigError naming :attr:`url` when the store cannot be written (or, not
        ``write``, read): at start, so a wrong bucket or endpoint is said at once."""
        ...

    def put(self, path: str, data: bytes) -> None: ...

    def get(self, path: str) -> bytes:
        """The object's bytes; FileNotFoundError when there is none."""
        ...

    def exists(self, path: str) -> bool: ...

    def list(self, prefix: str = "") -> list[str]:
        """Paths (relative to the root) of the objects under ``prefix``, sorted."""
        ...

    def delete(self, path: str) -> None: ...

    def open(self, path: str, mode: Literal["rb", "wb"]) -> IO[bytes]:
        """A file object for streaming (Parquet writes and reads row group by row group)."""
        ...
