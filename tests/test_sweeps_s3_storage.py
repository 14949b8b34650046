"""sweeps/storage.py against a real S3-compatible server on loopback (moto): write-then-rename,
completion markers, one-line errors naming the URI (unreachable endpoint, bad credentials)."""

from __future__ import annotations

import socket
import threading
import uuid
from pathlib import Path

import pytest

from sweeps import storage
from tests.s3_server import MotoServer, free_port

pytestmark = pytest.mark.services  # moto's S3 server on loopback


@pytest.fixture
def s3(s3_server, monkeypatch):
    """The loopback server's settings in this process's environment; a fresh prefix per test."""
    for k, v in s3_server.env.items():
        monkeypatch.setenv(k, v)
    return f"s3://{s3_server.bucket}/unit-{uuid.uuid4().hex[:8]}"


def _keys(server: MotoServer, prefix: str) -> list[str]:
    import pyarrow.fs

    fs = server.filesystem()
    base = prefix.split("://", 1)[1]
    infos = fs.get_file_info(pyarrow.fs.FileSelector(base, recursive=True, allow_not_found=True))
    return sorted(i.path[len(base) + 1 :] for i in infos if i.type == pyarrow.fs.FileType.File)


def test_round_trip_and_listing(s3, s3_server, tmp_path: Path):
    storage.write_text(storage.join(s3, "a", "b.txt"), "hello")
    assert storage.read_text(storage.join(s3, "a/b.txt")) == "hello"
    assert storage.read_text_or_none(storage.join(s3, "a/none.txt")) is None
    assert storage.exists(storage.join(s3, "a")) and not storage.exists(storage.join(s3, "zz"))
    src = tmp_path / "run"
    (src / "checkpoints").mkdir(parents=True)
    (src / "checkpoints" / "best.ckpt").write_bytes(bytes(range(256)) * 4096)  # 1 MiB
    (src / "trial.json").write_text("{}")
    (src / ".attempts").write_text("1")
    (src / ".x.abc123.part.csv").write_text("partial")  # core.io's temporary name: never uploaded
    sent = storage.upload_dir(src, storage.join(s3, "run"), last=["trial.json"])
    assert sent[-1] == "trial.json"  # the completion marker goes last
    assert _keys(s3_server, s3) == ["a/b.txt", "run/.attempts", "run/checkpoints/best.ckpt", "run/trial.json"]
    back = tmp_path / "back"
    storage.download_dir(storage.join(s3, "run"), back)
    assert (back / "checkpoints" / "best.ckpt").read_bytes() == (src / "checkpoints" / "best.ckpt").read_bytes()


def test_stale_partials_of_a_killed_writer_are_deleted(s3, s3_server):
    """A writer killed between its write and its move leaves a temporary object; resume deletes it."""
    storage.write_text(storage.join(s3, "trials/t1/trial.json"), "{}")
    fs = s3_server.filesystem()
    base = s3.split("://", 1)[1]
    with fs.open_output_stream(f"{base}/trials/t1/..elapsed.json.7d30b73ff6e94ad1.part") as out:
        out.write(b"half")
    assert storage.delete_partials(s3) == ["trials/t1/..elapsed.json.7d30b73ff6e94ad1.part"]
    assert _keys(s3_server, s3) == ["trials/t1/trial.json"]
    assert storage.delete_partials(s3) == []


def test_failed_write_leaves_no_object(s3, s3_server, tmp_path: Path, monkeypatch):
    """pyarrow completes an S3 upload when its stream closes, also after an exception: the
    write goes to a temporary key that is only moved onto the name once complete."""
    big = tmp_path / "best.ckpt"
    big.write_bytes(b"x" * (3 << 20))
    storage.write_text(storage.join(s3, "old.txt"), "old")

    def broken(path: Path):
        yield b"x" * 1000
        raise OSError("disk read failed")

    monkeypatch.setattr(storage, "_file_chunks", broken)
    with pytest.raises(storage.StorageError) as err:
        storage.upload_file(big, storage.join(s3, "ckpt", "best.ckpt"))
    assert s3 in str(err.value) and "\n" not in str(err.value)
    assert _keys(s3_server, s3) == ["old.txt"]  # no object, complete-looking or temporary


class CuttingProxy(threading.Thread):
    """TCP proxy to ``port`` that drops the connection after ``budget`` bytes from the client (a
    network failure in the middle of an upload); later connections are cut at once."""

    def __init__(self, port: int, budget: int):
        super().__init__(daemon=True)
        self.target, self.budget, self.port = port, budget, free_port()
        self.sock = socket.create_server(("127.0.0.1", self.port))
        self.sock.settimeout(0.2)
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                client, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._pipe, args=(client,), daemon=True).start()

    def _pipe(self, client: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.target))
        back = threading.Thread(target=self._copy, args=(upstream, client, False), daemon=True)
        back.start()
        self._copy(client, upstream, True)
        for s in (client, upstream):
            s.close()

    def _copy(self, src: socket.socket, dst: socket.socket, counted: bool) -> None:
        try:
            while data := src.recv(65536):
                if counted:
                    if self.budget <= 0:
                        break
                    data = data[: self.budget]
                    self.budget -= len(data)
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def test_connection_cut_mid_upload_leaves_marker_out(s3, s3_server, tmp_path: Path, monkeypatch):
    src = tmp_path / "run"
    (src / "checkpoints").mkdir(parents=True)
    (src / "config.yaml").write_text("model: unet\n")
    (src / "checkpoints" / "best.ckpt").write_bytes(b"w" * (4 << 20))
    (src / "trial.json").write_text("{}")
    proxy = CuttingProxy(s3_server.port, budget=(1 << 20))
    proxy.start()
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{proxy.port}")
        with pytest.raises(storage.StorageError) as err:
            storage.upload_dir(src, storage.join(s3, "run"), last=["trial.json"])
    finally:
        proxy.stop.set()
        monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint)
    msg = str(err.value)
    assert msg.startswith(storage.join(s3, "run", "checkpoints", "best.ckpt")) and "\n" not in msg
    keys = _keys(s3_server, s3)
    assert "run/trial.json" not in keys and "run/checkpoints/best.ckpt" not in keys  # nothing looks complete
    assert all(k == "run/config.yaml" or storage.is_partial(k) for k in keys), keys
    assert [k for k in storage.list_files(storage.join(s3, "run"))] in ([], ["config.yaml"])


def test_bad_credentials_one_line(monkeypatch):
    with MotoServer(auth=True) as server:
        for k, v in server.env.items():
            monkeypatch.setenv(k, v)
        with pytest.raises(storage.StorageError) as err:
            storage.check_access("s3://cordbench/sweeps")
    msg = str(err.value)
    assert msg.startswith("s3://cordbench/sweeps: ") and "access denied" in msg and "\n" not in msg
