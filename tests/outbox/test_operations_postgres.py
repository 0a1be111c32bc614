"""Retry and cancel against a worker's claim on PostgreSQL, where rows are really locked.

A throwaway PostgreSQL cluster (Debian's ``postgresql``) is created in a
temporary directory and started on 127.0.0.1 on a free port for this module,
then stopped by its PID. Every query of the test process goes to it through
a router while a test runs. Two connections (two threads) play the admin and
the worker; waits are bounded polls of ``pg_stat_activity``, never sleeps.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.mail import EmailMessage
from django.core.management import call_command
from django.db import connections, transaction
from django.test.utils import override_settings
from django.utils import timezone

from django_amsdal_mail.outbox import enqueue, operations
from django_amsdal_mail.outbox.models import OutboxMessage
from django_amsdal_mail.outbox.worker import claim, deliver, deliver_due
from tests.smtpd import RecordingServer, ServerFactory, free_port

from .conftest import T0, at

ALIAS = "outbox_pg"
A, B = "ann@example.com", "bob@example.com"


def _unavailable(why: str) -> None:
    """Skip, saying why; under CI=true a missing PostgreSQL is a failure."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"PostgreSQL is needed under CI: {why}")
    pytest.skip(why)


def _wait_until(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


@pytest.fixture(scope="module")
def postgres() -> Iterator[dict[str, Any]]:
    """Start a throwaway PostgreSQL on 127.0.0.1; yield its DATABASES entry; stop it."""
    binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    if not binaries:
        _unavailable("PostgreSQL is not installed (make services installs it)")
    bindir = Path(binaries[-1]).parent
    root = Path(tempfile.mkdtemp(prefix="outbox-pg-"))
    as_postgres: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        as_postgres = ["runuser", "-u", "postgres", "--"]
        shutil.chown(root, "postgres")
    data = root / "data"
    init = subprocess.run(
        [*as_postgres, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"]
        + ["-N", "-E", "UTF8"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if init.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        _unavailable(f"initdb failed: {init.stderr.strip()}")
    port = free_port()
    log = open(root / "postgres.log", "wb")  # a file, not a pipe: a full pipe would stall it
    server = subprocess.Popen(
        [*as_postgres, str(bindir / "postgres"), "-D", str(data), "-h", "127.0.0.1"]
        + ["-p", str(port), "-k", str(root), "-c", "fsync=off"],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        _wait_until(
            lambda: (
                server.poll() is not None
                or subprocess.run(
                    [str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port), "-q"],
                    timeout=10,
                ).returncode
                == 0
            ),
            "PostgreSQL to accept connections",
        )
        if server.poll() is not None:
            _unavailable(
                f"postgres exited: {server.stderr.read().decode() if server.stderr else ''}"
            )
        yield {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": "postgres",
            "USER": "postgres",
            "HOST": "127.0.0.1",
            "PORT": str(port),
        }
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(timeout=30)
        log.close()
        shutil.rmtree(root, ignore_errors=True)


class _ToPostgres:
    """Send every query of the test process to :data:`ALIAS`."""

    def db_for_read(self, model: type, **hints: Any) -> str:
        return ALIAS

    def db_for_write(self, model: type, **hints: Any) -> str:
        return ALIAS

    def allow_relation(self, obj1: object, obj2: object, **hints: Any) -> bool:
        return True


@pytest.fixture
def pg(postgres: dict[str, Any], django_db_blocker: Any) -> Iterator[None]:
    """Route the test's queries to a freshly migrated PostgreSQL database (emptied after)."""
    with django_db_blocker.unblock():
        both = {"default": connections.settings["default"], ALIAS: dict(postgres)}
        connections.settings[ALIAS] = connections.configure_settings(both)[ALIAS]
        try:
            # Under the router: a data migration of another app queries its default database.
            with override_settings(DATABASE_ROUTERS=[_ToPostgres()]):
                call_command("migrate", database=ALIAS, verbosity=0, interactive=False)
                yield
                call_command("flush", database=ALIAS, verbosity=0, interactive=False)
        finally:
            connections[ALIAS].close()
            del connections[ALIAS]
            del connections.settings[ALIAS]


def _waiting_for_a_lock() -> bool:
    """Return True when another session of the test waits for a row lock."""
    with connections[ALIAS].cursor() as cursor:
        # Inside a transaction the statistics views keep their first snapshot: drop it.
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
        )
        (waiting,) = cursor.fetchone()
    return bool(waiting)


class _Thread(threading.Thread):
    """Run ``target`` with its own database connection; keep its result or error."""

    def __init__(self, target: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self._target_fn = target
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self._target_fn()
        except BaseException as error:  # reported by the test
            self.error = error
        finally:
            connections[ALIAS].close()

    def outcome(self, timeout: float = 30.0) -> Any:
        self.join(timeout)
        assert not self.is_alive(), "the thread did not finish"
        if self.error is not None:
            raise self.error
        return self.result


def _failed_message(server: RecordingServer) -> OutboxMessage:
    (row,) = enqueue(EmailMessage("Hi", "Body", "from@example.com", [A, B]), run_after=T0)
    deliver(row.pk, now=T0)  # A sent, B failed (450)
    row.refresh_from_db()
    return row


def test_a_worker_mid_claim_makes_retry_wait_then_leave_the_message_alone(
    pg: None, smtp_server: ServerFactory, outbox: Any
) -> None:
    """Retry blocks on the worker's lock, then sees the message sending: busy, rows untouched."""
    server = smtp_server(rcpt_replies={B: "450 4.2.0 Busy"})
    outbox(server.host, server.port)
    row = _failed_message(server)
    assert row.state == "queued"  # B due again at T0+60
    claimed, finish = threading.Event(), threading.Event()

    def worker() -> Any:
        with transaction.atomic(using=ALIAS):
            taken = claim(row.pk, now=at(60), token="worker-1", lease=60)
            claimed.set()
            assert finish.wait(30), "the test never let the worker commit"
        return taken

    claiming = _Thread(worker)
    claiming.start()
    assert claimed.wait(30)
    retrying = _Thread(operations.retry)
    retrying.start()
    _wait_until(_waiting_for_a_lock, "retry to wait for the worker's row lock")
    assert retrying.is_alive()
    finish.set()
    assert claiming.outcome() is not None
    result = retrying.outcome()
    assert (result.messages, result.recipients, result.busy) == (0, 0, 1)
    row.refresh_from_db()
    assert (row.state, row.claimed_by) == ("sending", "worker-1")
    assert {r.address: r.status for r in row.recipients.all()} == {A: "sent", B: "failed"}


def test_a_claim_during_a_retry_skips_the_message_and_it_goes_out_on_commit(
    pg: None, smtp_server: ServerFactory, outbox: Any
) -> None:
    """The worker skips the locked row (SKIP LOCKED); once retry commits, B is sent, once."""
    server = smtp_server(rcpt_replies={B: "450 4.2.0 Busy"})
    outbox(server.host, server.port)
    row = _failed_message(server)
    server.rcpt_replies.clear()
    with transaction.atomic(using=ALIAS):
        assert operations.retry().recipients == 1
        other = _Thread(lambda: claim(row.pk, now=at(60), token="worker-1", lease=60))
        other.start()
        assert other.outcome() is None  # skipped at once, not waiting for the lock
        assert len(server.messages) == 1
    assert [m.rcpt_tos for m in server.messages] == [[A], [B]]
    row.refresh_from_db()
    assert row.state == "done"
    assert {r.address: (r.status, r.attempts) for r in row.recipients.all()} == {
        A: ("sent", 1),
        B: ("sent", 1),
    }


def test_cancel_waits_for_a_claim_and_leaves_the_claimed_message(
    pg: None, smtp_server: ServerFactory, outbox: Any
) -> None:
    """Cancel behind a worker's claim: the message stays the worker's; the other is cancelled."""
    server = smtp_server(rcpt_replies={B: "450 4.2.0 Busy"})
    outbox(server.host, server.port)
    held = _failed_message(server)
    (free,) = enqueue(EmailMessage("Later", "Body", "from@example.com", [B]), run_after=T0)
    claimed, finish = threading.Event(), threading.Event()

    def worker() -> Any:
        with transaction.atomic(using=ALIAS):
            taken = claim(held.pk, now=at(60), token="worker-1", lease=60)
            claimed.set()
            assert finish.wait(30)
        return taken

    claiming = _Thread(worker)
    claiming.start()
    assert claimed.wait(30)
    cancelling = _Thread(operations.cancel)
    cancelling.start()
    _wait_until(_waiting_for_a_lock, "cancel to wait for the worker's row lock")
    finish.set()
    assert claiming.outcome() is not None
    result = cancelling.outcome()
    assert (result.messages, result.recipients, result.busy) == (1, 1, 1)
    held.refresh_from_db()
    free.refresh_from_db()
    assert (held.state, free.state) == ("sending", "cancelled")


def test_prune_behind_a_retry_keeps_the_retried_message(
    pg: None, smtp_server: ServerFactory, outbox: Any
) -> None:
    """Prune waits for the retry's lock, then sees the message queued: nothing is deleted."""
    server = smtp_server(rcpt_replies={B: "450 4.2.0 Busy"})
    outbox(server.host, server.port, MAX_ATTEMPTS=1)
    row = _failed_message(server)  # MAX_ATTEMPTS=1: B failed for good, the message done
    assert row.state == "done"
    OutboxMessage.objects.filter(pk=row.pk).update(updated_at=timezone.now() - timedelta(days=40))
    server.rcpt_replies.clear()
    with transaction.atomic(using=ALIAS):
        assert operations.retry().recipients == 1
        pruning = _Thread(lambda: operations.prune(timedelta(days=30)))
        pruning.start()
        _wait_until(_waiting_for_a_lock, "prune to wait for the retry's row lock")
    result = pruning.outcome()
    assert (result.messages, result.recipients) == (0, 0)
    assert row.recipients.count() == 2
    # The engine was told on commit, while prune held the row a moment: its claim may
    # have skipped it (a real engine's sweep takes it up); sweep here to be sure.
    deliver_due()
    row.refresh_from_db()
    assert row.state == "done"
    assert {r.address: r.status for r in row.recipients.all()} == {A: "sent", B: "sent"}
    assert [m.rcpt_tos for m in server.messages] == [[A], [B]]
