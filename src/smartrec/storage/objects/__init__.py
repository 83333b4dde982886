"""Object storage (a local path, ``memory://``, ``s3://``, ``gs://``, ``az://``) through fsspec,
and the Parquet snapshots of the event log written to it.

``open_object_store(url)`` picks the filesystem; s3fs, gcsfs and adlfs are imported by fsspec
when their scheme is used, and a missing one is a clear error naming the extra to install.
"""

from smartrec.storage.objects.base import ObjectStore
from smartrec.storage.objects.store import open_object_store

__all__ = ["ObjectStore", "open_object_store"]
