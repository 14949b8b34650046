"""A real S3-compatible server on loopback for the tests: moto's standalone server (``moto[server]``).

:class:`MotoServer` starts ``python -m moto.server`` on 127.0.0.1 at a free port; ``env`` is
what a user of MinIO/Ceph sets (``AWS_ENDPOINT_URL`` + credentials + region), and what
``pyarrow.fs`` (so Ray Tune and cordbench) and every Ray worker started afterwards read.
``auth=True`` makes moto check credentials (``INITIAL_NO_AUTH_ACTION_COUNT=0``): any key is
then unknown, the way a wrong key is for a real store.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MotoServer:
    """``moto.server`` on ``127.0.0.1:<port>`` (a context manager)."""

    def __init__(self, auth: bool = False, bucket: str | None = "cordbench"):
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.bucket = bucket
        self.auth = auth
        self.proc: subprocess.Popen | None = None

    @property
    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "cordbench-test",
            "AWS_SECRET_ACCESS_KEY": "cordbench-test-secret",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def __enter__(self) -> MotoServer:
        env = {**os.environ, **({"INITIAL_NO_AUTH_ACTION_COUNT": "0"} if self.auth else {})}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        deadline = time.time() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"moto server did not start on {self.endpoint}") from None
                time.sleep(0.1)
        if self.bucket and not self.auth:
            self.filesystem(allow_bucket_creation=True).create_dir(self.bucket)
        return self

    def filesystem(self, **kwargs):
        """A ``pyarrow.fs.S3FileSystem`` talking to this server directly (``endpoint_override``)."""
        import pyarrow.fs

        e = self.env
        return pyarrow.fs.S3FileSystem(
            endpoint_override=self.endpoint,
            access_key=e["AWS_ACCESS_KEY_ID"],
            secret_key=e["AWS_SECRET_ACCESS_KEY"],
            region=e["AWS_DEFAULT_REGION"],
            **kwargs,
        )

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
