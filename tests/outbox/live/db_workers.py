"""Real ``db_worker`` processes (django-tasks-db's worker command) for the live tests.

:func:`start_db_workers` runs ``python -m django db_worker --queue-name <queue>
--interval <s> --no-startup-delay --no-reload --worker-id <id>`` N times with
the workers' settings (:mod:`tests.outbox.live.settings`, overrides given as a
dict), each in its own session, output to a log file; it waits until every
one logged "Starting worker" (bounded polling) and returns the
:class:`DbWorker` handles. :meth:`DbWorker.stop` ends one by its PID (SIGTERM,
then SIGKILL); :meth:`DbWorker.kill` is SIGKILL at once, as the kernel's OOM
killer would end it.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .database import ROOT, worker_environment

__all__ = ["DbWorker", "start_db_workers"]

_START_TIMEOUT = 60.0
_STOP_TIMEOUT = 10.0
_READY = "Starting worker"
_names = itertools.count(1)


@dataclass
class DbWorker:
    """One ``db_worker`` process started by a test."""

    worker_id: str
    process: subprocess.Popen[bytes]
    log: Path
    _stopped: bool = field(default=False, repr=False)

    @property
    def pid(self) -> int:
        """The worker's process id (the task runs in this process)."""
        return self.process.pid

    def log_text(self) -> str:
        """Return what the worker logged so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def kill(self) -> None:
        """End the worker at once with SIGKILL (no handler, no cleanup runs)."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        self.process.wait(_STOP_TIMEOUT)
        self._stopped = True

    def stop(self) -> None:
        """End the worker by its PID: SIGTERM (it finishes its task), then SIGKILL."""
        if self._stopped:
            return
        self._stopped = True
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            try:
                self.process.wait(_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(_STOP_TIMEOUT)


def start_db_workers(
    count: int,
    overrides: dict[str, Any],
    log_dir: Path,
    *,
    queue: str = "email",
    interval: float = 0.05,
    extra_args: Sequence[str] = (),
) -> list[DbWorker]:
    """Start ``count`` workers with the settings ``overrides``; return them once all are ready.

    Raises:
        RuntimeError: a worker exited or did not get ready in time (its log is in the text);
            every worker started is stopped first.
    """
    env = worker_environment(overrides)
    workers: list[DbWorker] = []
    try:
        for _ in range(count):
            worker_id = f"live-{os.getpid()}-{next(_names)}"
            log = log_dir / f"{worker_id}.log"
            with log.open("wb") as output:
                process = subprocess.Popen(
                    [sys.executable, "-m", "django", "db_worker", "--queue-name", queue,
                     "--interval", str(interval), "--no-startup-delay", "--no-reload",
                     "--worker-id", worker_id, *extra_args],
                    cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT,
                    start_new_session=True,
                )  # fmt: skip
            workers.append(DbWorker(worker_id, process, log))
        deadline = time.monotonic() + _START_TIMEOUT
        waiting = list(workers)
        while waiting:
            for worker in list(waiting):
                if worker.process.poll() is not None:
                    raise RuntimeError(
                        f"db_worker {worker.worker_id} exited with {worker.process.returncode}:\n"
                        f"{worker.log_text()}"
                    )
                if _READY in worker.log_text():
                    waiting.remove(worker)
            if waiting and time.monotonic() > deadline:
                raise RuntimeError(
                    f"db_worker {waiting[0].worker_id} not ready in {_START_TIMEOUT}s:\n"
                    f"{waiting[0].log_text()}"
                )
            if waiting:
                time.sleep(0.05)
    except BaseException:
        for worker in workers:
            worker.stop()
        raise
    return workers
