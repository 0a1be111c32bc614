"""The "tasks" engine's live harness: the databases, a test's outbox and workers, bounded waits.

Fixtures (made available to this package by its conftest):

* ``sqlite_live_database`` / ``postgresql_live_database`` -- one migrated
  database per session; ``live_database`` is each of them in turn unless a
  test picks one (``indirect`` parametrize);
* ``live`` -- a :class:`Live`: the outbox on that database for one test, its
  ``db_worker`` processes stopped (and their logs printed) after it;
* ``smtp`` -- starts :class:`~tests.faulty_smtpd.FaultyServer` instances, all
  stopped after the test.

And :func:`wait_for`, :func:`done`, :func:`no_task_waiting` for bounded waits.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from django_amsdal_mail.outbox.models import OutboxMessage
from tests.faulty_smtpd import Faults, FaultyServer

from .database import LiveDatabase, activated, empty, migrate, postgres_database, sqlite_database
from .db_workers import DbWorker, start_db_workers
from .postgres import PostgresCluster
from .recorder import read_records

__all__ = [
    "TASKS",
    "WAIT",
    "Live",
    "done",
    "live",
    "live_database",
    "no_task_waiting",
    "postgresql_live_database",
    "smtp",
    "sqlite_live_database",
    "wait_for",
]

#: The longest any one condition is waited for.
WAIT = 30.0
#: The task backend of both processes: django-tasks-db, taking the outbox's queue.
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["email"]}}


@pytest.fixture(scope="session")
def sqlite_live_database(tmp_path_factory: pytest.TempPathFactory) -> LiveDatabase:
    """An SQLite file (WAL) for the session, migrated."""
    database = sqlite_database(tmp_path_factory.mktemp("outbox-live") / "outbox.sqlite3")
    migrate(database)
    return database


@pytest.fixture(scope="session")
def postgresql_live_database(postgres_cluster: PostgresCluster) -> LiveDatabase:
    """A database on the session's PostgreSQL cluster, migrated."""
    database = postgres_database(postgres_cluster.create_database("outbox_live_tasks"))
    migrate(database)
    return database


@pytest.fixture(params=["sqlite", "postgresql"])
def live_database(request: pytest.FixtureRequest) -> LiveDatabase:
    """Each test runs on both databases unless it picks one (``indirect`` parametrize)."""
    database: LiveDatabase = request.getfixturevalue(f"{request.param}_live_database")
    return database


@dataclass
class Live:
    """One test's outbox: the shared database, its settings here and in the workers."""

    database: LiveDatabase
    alias: str
    directory: Path
    settings: Any
    workers: list[DbWorker] = field(default_factory=list)
    worker_settings: dict[str, Any] = field(default_factory=dict)

    @property
    def record(self) -> Path:
        """The file the workers' signal receivers append to."""
        return self.directory / "signals.jsonl"

    def configure(self, port: int, **outbox: Any) -> None:
        """Point both processes at the SMTP server on ``port``; set AMSDAL_EMAIL_OUTBOX keys."""
        options = {"ENGINE": "tasks", "RETRY_BACKOFF": 0.2, "LEASE": 2, **outbox}
        self.settings.AMSDAL_EMAIL_OUTBOX = options
        self.settings.TASKS = TASKS
        self.worker_settings = {
            "DATABASES": {"default": self.database.settings},
            "EMAIL_BACKEND": "django_amsdal_mail.backend.EmailBackend",
            "EMAIL_HOST": "127.0.0.1",
            "EMAIL_PORT": port,
            "EMAIL_TIMEOUT": 10,
            "AMSDAL_EMAIL_OUTBOX": options,
            "TASKS": TASKS,
            "OUTBOX_LIVE_RECORD": str(self.record),
        }

    def start_workers(self, count: int = 1) -> list[DbWorker]:
        """Start ``count`` db_worker processes (stopped after the test); return them."""
        started = start_db_workers(count, self.worker_settings, self.directory)
        self.workers += started
        return started

    def records(self, signal: str | None = None) -> list[dict[str, Any]]:
        """What the workers' receivers recorded, in order."""
        return read_records(self.record, signal)


@pytest.fixture
def live(
    live_database: LiveDatabase, settings: Any, django_db_blocker: Any, tmp_path: Path
) -> Iterator[Live]:
    """The outbox on the shared database for one test; its workers stopped after it."""
    with django_db_blocker.unblock(), activated(live_database) as alias:
        empty(alias)
        state = Live(live_database, alias, tmp_path, settings)
        try:
            yield state
        finally:
            for worker in state.workers:
                worker.stop()
                # Shown only when the test failed (pytest shows captured output then).
                print(f"--- log of db_worker {worker.worker_id} (pid {worker.pid}):")
                print(worker.log_text())


@pytest.fixture
def smtp() -> Iterator[Callable[..., FaultyServer]]:
    """Start ``FaultyServer(Faults(**faults), port=port)``; every one is stopped after the test."""
    servers: list[FaultyServer] = []

    def start(port: int = 0, **faults: Any) -> FaultyServer:
        server = FaultyServer(Faults(**faults), port=port).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def wait_for(what: str, predicate: Callable[[], bool], timeout: float = WAIT) -> None:
    """Poll ``predicate`` until it holds; fail after ``timeout`` seconds, saying what."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.02)  # the polling interval of a bounded wait


def done(*rows: OutboxMessage) -> Callable[[], bool]:
    """A predicate: every one of ``rows`` is ``done``."""
    ids = [row.pk for row in rows]
    return lambda: OutboxMessage.objects.filter(pk__in=ids, state="done").count() == len(ids)


def no_task_waiting() -> bool:
    """True when no task row is ready to run (every scheduled look has run)."""
    from django_tasks_db.models import DBTaskResult

    return not DBTaskResult.objects.filter(status="READY").exists()
