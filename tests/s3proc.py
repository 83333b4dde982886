"""moto's S3 server (``moto_server``, the dev extra) on a free loopback port: an S3 endpoint the
real clients (s3fs, boto3) talk to, as they would to S3, MinIO or any S3-compatible store."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from tests.serverproc import LoopbackProcess

#: moto takes any credentials; the clients still need some to sign with.
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


class MotoServer(LoopbackProcess):
    name = "moto"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, bucket: str, prefix: str = "") -> str:
        """An ``s3://`` object storage URL on this server."""
        path = f"{bucket}/{prefix}".rstrip("/")
        return f"s3://{path}?endpoint_url={self.endpoint}"

    def command(self) -> list[str]:
        binary = Path(sys.executable).with_name("moto_server")
        found = str(binary) if binary.exists() else shutil.which("moto_server")
        if found is None:
            pytest.fail("moto_server is not installed (the dev extra: moto[server])")
        return [found, "-H", "127.0.0.1", "-p", str(self.port)]

    def start(self) -> MotoServer:
        self.launch()
        return self

    def create_bucket(self, bucket: str) -> None:
        import s3fs

        s3fs.S3FileSystem(endpoint_url=self.endpoint).mkdir(bucket)
