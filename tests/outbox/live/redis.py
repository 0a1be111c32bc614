"""A throwaway Redis server for the live tests: Debian's ``redis-server`` on 127.0.0.1.

:func:`start_redis` runs ``redis-server`` as a child process on a free port
of 127.0.0.1 with no persistence (``--save '' --appendonly no``) in a
temporary directory, waits until it answers ``PING`` (bounded polling), and
returns a :class:`RedisServer`; :meth:`RedisServer.stop` ends it by its PID.
The ``redis_server`` fixture does both for a test session; it skips, saying
why, only when ``redis-server`` is not installed, and fails instead when the
environment variable ``CI`` is ``"true"``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from tests.smtpd import free_port

from .postgres import unavailable

__all__ = ["RedisServer", "redis_server", "start_redis"]

#: How long a server may take to answer PING, and to end once asked.
_START_TIMEOUT = 15.0
_STOP_TIMEOUT = 10.0
#: Tries with another port when the chosen one was taken meanwhile.
_PORT_TRIES = 5


@dataclass
class RedisServer:
    """A running ``redis-server``: where it listens, its process and directory."""

    host: str
    port: int
    process: subprocess.Popen[bytes]
    directory: Path
    log: Path
    _stopped: bool = field(default=False, repr=False)

    @property
    def url(self) -> str:
        """The ``redis://`` URL of database 0 (Celery's ``broker_url``)."""
        return f"redis://{self.host}:{self.port}/0"

    def client(self) -> redis.Redis:
        """Return a new client of database 0."""
        return redis.Redis(host=self.host, port=self.port, db=0, socket_timeout=5)

    def stop(self) -> None:
        """End the server by its PID (SIGTERM, then SIGKILL) and remove its directory."""
        if self._stopped:
            return
        self._stopped = True
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(_STOP_TIMEOUT)
        shutil.rmtree(self.directory, ignore_errors=True)


def redis_binary() -> str | None:
    """Return the path of ``redis-server``, or None when it is not installed."""
    return shutil.which("redis-server") or next(
        (p for p in ("/usr/bin/redis-server", "/usr/sbin/redis-server") if os.access(p, os.X_OK)),
        None,
    )


def start_redis(binary: str) -> RedisServer:
    """Start ``binary`` on a free port of 127.0.0.1 and wait until it answers PING.

    Raises:
        RuntimeError: it exited or did not answer in time (its log is quoted).
    """
    last_error = ""
    for _ in range(_PORT_TRIES):
        directory = Path(tempfile.mkdtemp(prefix="outbox-redis-"))
        log = directory / "redis.log"
        port = free_port()
        command = [
            binary,
            "--bind", "127.0.0.1",
            "--port", str(port),
            "--save", "",
            "--appendonly", "no",
            "--dir", str(directory),
            "--logfile", str(log),
            "--daemonize", "no",
            "--protected-mode", "yes",
        ]  # fmt: skip
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, cwd=directory)
        server = RedisServer("127.0.0.1", port, process, directory, log)
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                break
            try:
                if server.client().ping():
                    return server
            except redis.ConnectionError:
                time.sleep(0.05)  # polling interval, not a synchronisation
        text = log.read_text(errors="replace") if log.exists() else ""
        server.stop()
        last_error = f"redis-server on port {port} did not answer PING: {text[-2000:]}"
        if "Address already in use" not in text:
            break
    raise RuntimeError(last_error)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A Redis server for the session (skipped if ``redis-server`` is missing, unless CI=true)."""
    binary = redis_binary()
    if binary is None:
        unavailable("redis-server is not installed (`make services` installs Debian's)")
    assert binary is not None
    server = start_redis(binary)
    try:
        yield server
    finally:
        server.stop()
