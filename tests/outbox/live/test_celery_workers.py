"""The "celery" engine with real parts: Redis, ``celery worker`` processes, a shared database.

The test process enqueues (publishing through a Celery app on the test's
Redis server, as a web process does) and reads the rows; the workers,
started with ``celery -A tests.outbox.live.celery_app worker --pool=prefork
--concurrency=1 -Q email ...``, send to an SMTP server of this process that
records every session. Redis, the SMTP server and the workers live for the
module (one set per database); each test has its own sender and recipients.
The database is an SQLite file, and a PostgreSQL database where PostgreSQL
is installed.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from celery.signals import after_task_publish
from django.core.mail import EmailMessage
from django.db import connections
from django.test.utils import override_settings
from django.utils import timezone

from django_amsdal_mail.outbox import enqueue
from django_amsdal_mail.outbox.celery_tasks import TASK_NAME
from django_amsdal_mail.outbox.models import OutboxMessage
from django_amsdal_mail.outbox.policy import DIED
from tests.faulty_smtpd import Faults, FaultyServer

from .celery_workers import BROKER_ENV, CeleryWorker, producer_app, start_celery_worker
from .database import (
    LiveDatabase,
    activated,
    empty,
    migrate,
    postgres_database,
    sqlite_database,
    worker_environment,
)
from .redis import RedisServer

#: The outbox settings of the workers: quick retries and a short lease.
WORKER_OUTBOX = {
    "ENGINE": "celery",
    "QUEUE": "email",
    "RETRY_BACKOFF": 1,
    "MAX_RETRY_DELAY": 5,
    "MAX_ATTEMPTS": 3,
    "LEASE": 3,
}
#: How long a test waits for the workers (bounded polling; far above what it takes).
WAIT = 60.0


class RepliesOnce(dict[str, str]):
    """RCPT replies each given once, then the address is accepted (as a greylisting relay)."""

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        """Return the reply for ``key`` and forget it."""
        return self.pop(key, default)


@dataclass
class Live:
    """The module's real parts: the producer app, the database, the workers."""

    app: Celery
    env: dict[str, str]
    directory: Path
    alias: str
    workers: list[CeleryWorker] = field(default_factory=list)

    def worker(self, number: int) -> CeleryWorker:
        """Return worker ``number`` (1, 2, ...), starting the workers up to it."""
        while len(self.workers) < number:
            self.workers.append(
                start_celery_worker(
                    self.app,
                    env=self.env,
                    log_dir=self.directory,
                    name=f"w{len(self.workers) + 1}-{self.directory.name}",
                )
            )
        return self.workers[number - 1]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> LiveDatabase:
    """The database the module's processes share (migrated): an SQLite file, then PostgreSQL."""
    if request.param == "sqlite":
        live = sqlite_database(tmp_path_factory.mktemp("celery-live") / "outbox.sqlite3")
    else:
        cluster = request.getfixturevalue("postgres_cluster")
        live = postgres_database(cluster.create_database("outbox_live_celery"))
    migrate(live)
    return live


@pytest.fixture(scope="module")
def smtp(database: LiveDatabase) -> Iterator[FaultyServer]:
    """The SMTP server the workers send to (its faults set per test; one per database)."""
    with FaultyServer(Faults()) as server:
        yield server


@pytest.fixture(scope="module")
def live(
    database: LiveDatabase,
    django_db_blocker: Any,
    tmp_path_factory: pytest.TempPathFactory,
    redis_server: RedisServer,
    smtp: FaultyServer,
) -> Iterator[Live]:
    """The shared database, the producer app on Redis, and the workers (started on demand)."""
    directory = tmp_path_factory.mktemp(f"celery-{database.vendor}")
    env = worker_environment(
        {
            "DATABASES": {"default": database.settings},
            "EMAIL_BACKEND": "django_amsdal_mail.backend.EmailBackend",
            "EMAIL_HOST": smtp.host,
            "EMAIL_PORT": smtp.port,
            "EMAIL_TIMEOUT": 30,
            "AMSDAL_EMAIL_OUTBOX": WORKER_OUTBOX,
        }
    )
    env[BROKER_ENV] = redis_server.url
    with (
        django_db_blocker.unblock(),
        activated(database) as alias,
        override_settings(AMSDAL_EMAIL_OUTBOX={"ENGINE": "celery", "QUEUE": "email"}),
        producer_app(redis_server.url) as app,
    ):
        empty(alias)
        live = Live(app, env, directory, alias)
        try:
            yield live
        finally:
            for worker in live.workers:
                worker.stop()
    # activated() keeps the alias (once per vendor): forget it, so that another module's
    # database of the same vendor gets the alias with its own settings.
    connections[alias].close()
    del connections[alias]
    del connections.settings[alias]


@pytest.fixture(autouse=True)
def _fresh(live: Live, smtp: FaultyServer) -> Iterator[None]:
    """A well-behaved server for each test; the outbox emptied after it."""
    smtp.faults = Faults()
    yield
    empty(live.alias)


def wait_for(what: str, predicate: Callable[[], bool], timeout: float = WAIT) -> None:
    """Poll ``predicate`` (a database read) until it holds; fail after ``timeout`` saying what."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.05)  # polling interval, not a synchronisation


def done(*rows: OutboxMessage) -> Callable[[], bool]:
    """Return a predicate: every one of ``rows`` is ``done`` in the database."""
    ids = [row.pk for row in rows]
    return lambda: OutboxMessage.objects.filter(pk__in=ids, state="done").count() == len(ids)


def statuses(row: OutboxMessage) -> dict[str, tuple[str, int | None, int]]:
    """Return each recipient's (status, code, attempts)."""
    return {r.address: (r.status, r.code, r.attempts) for r in row.recipients.all()}


def rcpts(smtp: FaultyServer, sender: str) -> list[list[str]]:
    """Return, per session that used ``sender``, the RCPT addresses in order."""
    sessions = []
    for session in smtp.sessions:
        lines = [c.line for c in session.commands]
        if not any(sender in line for line in lines if line.upper().startswith("MAIL")):
            continue
        sessions.append(
            [
                line.split(":", 1)[1].strip().strip("<>")
                for line in lines
                if line.upper().startswith("RCPT")
            ]
        )
    return sessions


def test_the_broker_carries_only_the_outbox_id_then_a_worker_delivers(
    live: Live, smtp: FaultyServer, redis_server: RedisServer
) -> None:
    """The queued Redis message holds the id alone (no subject, body or address); then sent."""
    sender, to, bcc = "only-id@example.com", "ann.id@example.com", "hidden.id@example.com"
    worker = live.worker(1)
    # The app module names no outbox task: the outbox app registered it (ENGINE "celery").
    registered = live.app.control.inspect(destination=[worker.nodename], timeout=5).registered()
    assert TASK_NAME in registered[worker.nodename]
    # Published to a queue no worker consumes yet, so the test reads it from Redis first.
    with override_settings(AMSDAL_EMAIL_OUTBOX={"ENGINE": "celery", "QUEUE": "held"}):
        message = EmailMessage("Secret subject", "Secret body text", sender, [to], bcc=[bcc])
        (row,) = enqueue(message)
    client = redis_server.client()
    keys = [key for key in client.keys("held*") if client.type(key) == b"list"]
    assert len(keys) == 1, keys  # one priority list: priority 0 becomes Redis's 9 (last read)
    (raw,) = client.lrange(keys[0], 0, -1)
    published = json.loads(raw)
    args, kwargs, _embed = json.loads(base64.b64decode(published["body"]))
    assert (args, kwargs) == ([str(row.pk)], {})
    assert published["headers"]["task"] == TASK_NAME
    assert published["properties"]["priority"] == 9
    for secret in (b"Secret", sender.encode(), to.encode(), bcc.encode(), b"Subject"):
        assert secret not in raw
    assert smtp.connections == 0 or not rcpts(smtp, sender)

    live.app.control.add_consumer("held", destination=[worker.nodename], reply=True)
    try:
        wait_for("the message sent", done(row))
    finally:
        live.app.control.cancel_consumer("held", destination=[worker.nodename], reply=True)
    row.refresh_from_db()
    assert statuses(row) == {to: ("sent", 250, 1), bcc: ("sent", 250, 1)}
    assert (row.attempts, row.next_attempt_at, row.claimed_by) == (1, None, "")
    (arrived,) = [m for m in smtp.messages if m.header("Message-ID") == row.message_id]
    assert arrived.rcpt_tos == [to, bcc]
    assert arrived.header("Subject") == "Secret subject" and arrived.header("Bcc") is None


def test_a_temporary_refusal_is_retried_through_celery_eta_only_to_that_recipient(
    live: Live, smtp: FaultyServer
) -> None:
    """450 for one of three: the retry (published with an eta) goes to it alone; 550 is final."""
    sender = "retry@example.com"
    a, b, c = "ann.retry@example.com", "bob.retry@example.com", "carl.retry@example.com"
    smtp.faults = Faults(rcpt_replies=RepliesOnce({b: "450 4.2.0 Busy", c: "550 5.1.1 No"}))
    live.worker(1)
    (row,) = enqueue(EmailMessage("Retry", "Body", sender, [a, b], cc=[c]))
    wait_for("the retry made", done(row))
    row.refresh_from_db()
    assert statuses(row) == {a: ("sent", 250, 1), b: ("sent", 250, 2), c: ("rejected", 550, 1)}
    assert rcpts(smtp, sender) == [[a, b, c], [b]]
    first, second = [m for m in smtp.messages if m.mail_from == sender]
    assert (first.rcpt_tos, second.rcpt_tos) == ([a], [b])
    assert first.header("Message-ID") == second.header("Message-ID") == row.message_id
    assert row.attempts == 2 and row.first_attempt_at is not None
    # Due RETRY_BACKOFF (1 s) after the first attempt: a retry published without
    # its eta would have run at once, found nothing due, and ended there.
    b_row = row.recipients.get(address=b)
    assert (b_row.updated_at - row.first_attempt_at).total_seconds() >= 1


def test_a_permanent_refusal_is_final_after_one_attempt(live: Live, smtp: FaultyServer) -> None:
    """5xx for the data: every recipient rejected, the message done, never tried again."""
    sender = "final@example.com"
    smtp.faults = Faults(data_reply="554 5.7.1 Refused")
    live.worker(1)
    (row,) = enqueue(EmailMessage("Final", "Body", sender, ["a.final@example.com"]))
    wait_for("the message done", done(row))
    row.refresh_from_db()
    assert statuses(row) == {"a.final@example.com": ("rejected", 554, 1)}
    assert (row.attempts, row.next_attempt_at) == (1, None)
    assert len(rcpts(smtp, sender)) == 1


def test_a_worker_killed_after_the_data_went_out_leaves_unknown_never_resent(
    live: Live, smtp: FaultyServer
) -> None:
    """SIGKILL mid-task: the task is given back, taken up after the lease; unknown, not resent.

    The server accepts the data and then holds its reply to QUIT, so the
    worker is killed after the message went out and before it recorded
    anything: the recipients' "attempt begun" marks are all that is left.
    """
    sender = "killed@example.com"
    a, b = "ann.killed@example.com", "bob.killed@example.com"
    smtp.faults = Faults(stall_before={"QUIT": 60})
    worker = live.worker(1)
    published: list[tuple[str, list[Any]]] = []

    def on_publish(sender: str, headers: dict[str, Any], body: Any, **kwargs: Any) -> None:
        published.append((headers["id"], body[0]))

    after_task_publish.connect(on_publish, weak=False)
    try:
        (row,) = enqueue(EmailMessage("Killed", "Body", sender, [a, b]))
    finally:
        after_task_publish.disconnect(on_publish)
    (task_id,) = [task for task, args in published if args == [str(row.pk)]]
    smtp.wait_until(lambda s: any(m.mail_from == sender for m in s.messages), timeout=WAIT)
    wait_for(
        "the attempt marked begun",
        lambda: all(row.recipients.values_list("attempt_token", flat=True)),
    )
    (child,) = worker.pool_pids()
    os.kill(child, signal.SIGKILL)

    wait_for("the message taken up after the lease", done(row))
    row.refresh_from_db()
    assert statuses(row) == {a: ("unknown", None, 1), b: ("unknown", None, 1)}
    assert set(row.recipients.values_list("response", flat=True)) == {DIED}
    assert row.attempts == 1
    assert len([m for m in smtp.messages if m.mail_from == sender]) == 1  # never resent
    assert len(rcpts(smtp, sender)) == 1
    log = worker.log_text()
    assert "WorkerLostError" in log and "SIGKILL" in log  # the task's process was lost
    assert log.count(f"[{task_id}] received") == 2  # given back (not acked), delivered again


def test_two_workers_never_send_one_message_twice(live: Live, smtp: FaultyServer) -> None:
    """Every task published twice in a row, two workers racing: each message arrives once."""
    from django_amsdal_mail.outbox.celery_tasks import deliver

    sender = "race@example.com"
    smtp.faults = Faults(stall_after_data=0.05)
    first, second = live.worker(1), live.worker(2)
    # Stored with the engine's task parked on a queue no worker reads; then each
    # message's task is published twice in a row (as a redelivery duplicates it),
    # so that the two workers get the two copies of one message at the same time.
    with override_settings(AMSDAL_EMAIL_OUTBOX={"ENGINE": "celery", "QUEUE": "parked"}):
        rows = enqueue(
            [EmailMessage(f"Race {n}", "Body", sender, [f"r{n}@example.com"]) for n in range(16)]
        )
    for row in rows:
        deliver.apply_async(args=[str(row.pk)], queue="email")
        deliver.apply_async(args=[str(row.pk)], queue="email")
    wait_for("every message sent", done(*rows))
    arrived = [m.header("Message-ID") for m in smtp.messages if m.mail_from == sender]
    assert sorted(arrived) == sorted(row.message_id for row in rows)  # each exactly once
    for row in rows:
        assert {s for s, _, n in statuses(row).values() if n == 1} == {"sent"}
    for worker in (first, second):
        assert f"{TASK_NAME}[" in worker.log_text()  # both workers ran tasks


def test_a_message_whose_task_never_reached_the_broker_is_sent_by_the_next_task(
    live: Live, smtp: FaultyServer
) -> None:
    """Overdue by more than LEASE with no task of its own: the next task's sweep sends it."""
    sender = "swept@example.com"
    live.worker(1)
    # Its task is parked on a queue no worker reads, as if it had never been published.
    with override_settings(AMSDAL_EMAIL_OUTBOX={"ENGINE": "celery", "QUEUE": "parked"}):
        (lost,) = enqueue(EmailMessage("Lost", "Body", sender, ["lost@example.com"]))
    overdue = timezone.now() - timedelta(seconds=WORKER_OUTBOX["LEASE"] + 5)
    OutboxMessage.objects.filter(pk=lost.pk).update(next_attempt_at=overdue)
    lost.recipients.update(next_attempt_at=overdue)
    (other,) = enqueue(EmailMessage("Other", "Body", sender, ["other@example.com"]))
    wait_for("both sent", done(lost, other))
    assert sorted(m.rcpt_tos[0] for m in smtp.messages if m.mail_from == sender) == [
        "lost@example.com",
        "other@example.com",
    ]
