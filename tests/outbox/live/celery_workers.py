"""Real ``celery worker`` processes for the live tests, and a producer app for the test process.

:func:`start_celery_worker` runs ``python -m celery -A tests.outbox.live.celery_app
worker --pool=prefork --concurrency=1 -Q <queue> --without-gossip
--without-mingle --without-heartbeat`` in its own process group, waits until
the worker answers a remote-control ``ping`` through the broker (bounded
polling), and returns a :class:`CeleryWorker`; :meth:`CeleryWorker.stop` ends
the group by its PID (SIGTERM, then SIGKILL). :meth:`CeleryWorker.pool_pids`
names the prefork child processes (the ones that run tasks), so a test can
kill one mid-task with SIGKILL as the kernel's OOM killer would.

:func:`producer_app` makes a Celery app on the same broker current in the
test process, as a project's web process has one: the outbox's ``"celery"``
engine publishes through the current app.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from celery import Celery

from .database import ROOT

__all__ = ["BROKER_ENV", "CeleryWorker", "producer_app", "start_celery_worker"]

#: The environment variable giving the worker its broker URL (read by ``celery_app``).
BROKER_ENV = "OUTBOX_LIVE_BROKER_URL"

_START_TIMEOUT = 60.0
_STOP_TIMEOUT = 15.0
_names = itertools.count(1)


@dataclass
class CeleryWorker:
    """One ``celery worker`` main process (and its pool), started by a test."""

    nodename: str
    process: subprocess.Popen[bytes]
    log: Path
    _stopped: bool = field(default=False, repr=False)

    def log_text(self) -> str:
        """Return what the worker logged so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def pool_pids(self) -> list[int]:
        """Return the PIDs of the worker's prefork children (read from /proc)."""
        children = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue  # ended meanwhile
            # "pid (comm) state ppid ...": comm may hold spaces, so split after ")".
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == self.process.pid:
                children.append(int(entry.name))
        return sorted(children)

    def stop(self) -> None:
        """End the worker's process group by its PID: SIGTERM (warm shutdown), then SIGKILL."""
        if self._stopped:
            return
        self._stopped = True
        pid = self.process.pid
        if self.process.poll() is None:
            os.killpg(pid, signal.SIGTERM)
            try:
                self.process.wait(_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(pid, signal.SIGKILL)  # the main process and any pool child left
        except ProcessLookupError:
            pass
        self.process.wait(_STOP_TIMEOUT)


@contextmanager
def producer_app(broker_url: str) -> Iterator[Celery]:
    """Make a Celery app on ``broker_url`` the current app for the block (as a web process has)."""
    from celery import _state

    previous = _state.get_current_app()
    app = Celery("outbox_live_producer", broker=broker_url, set_as_current=True)
    app.conf.broker_connection_retry_on_startup = False
    app.set_current()
    try:
        yield app
    finally:
        previous.set_current()
        app.close()


def start_celery_worker(
    app: Celery,
    *,
    env: Mapping[str, str],
    log_dir: Path,
    queue: str = "email",
    name: str | None = None,
) -> CeleryWorker:
    """Start a worker with environment ``env`` and wait until it answers ping.

    ``env`` is the whole environment (see
    :func:`tests.outbox.live.database.worker_environment`) plus
    :data:`BROKER_ENV`; ``app`` is the test process's app on the same broker
    (it sends the ping).

    Raises:
        RuntimeError: the worker exited or did not answer in time (its log is quoted).
    """
    name = name or f"w{next(_names)}"
    nodename = f"{name}@outbox-live"
    log = log_dir / f"celery-{name}.log"
    command = [
        sys.executable, "-m", "celery", "-A", "tests.outbox.live.celery_app", "worker",
        "--pool=prefork", "--concurrency=1", "-Q", queue,
        "--without-gossip", "--without-mingle", "--without-heartbeat",
        "-n", nodename, "--loglevel=INFO", f"--logfile={log}",
    ]  # fmt: skip
    if BROKER_ENV not in env:
        raise ValueError(f"env must give {BROKER_ENV}, the broker the worker consumes from")
    with open(log_dir / f"celery-{name}.stderr", "wb") as stderr_file:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr_file,
            start_new_session=True,
        )
    worker = CeleryWorker(nodename, process, log)
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        if app.control.ping(destination=[nodename], timeout=0.5):
            return worker
    stderr = (log_dir / f"celery-{name}.stderr").read_text(errors="replace")
    worker.stop()
    raise RuntimeError(
        f"celery worker {nodename} did not answer ping within {_START_TIMEOUT}s "
        f"(exit code {process.returncode}):\n{worker.log_text()[-3000:]}\n{stderr[-3000:]}"
    )
