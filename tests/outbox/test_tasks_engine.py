"""The "tasks" engine in this process: what it enqueues, its checks, the task's decisions.

The task backends here are the framework's own: ``DummyBackend`` keeps what
was enqueued (so the test reads each task's priority, queue and run_after),
``ImmediateBackend`` runs the task at once. Real ``db_worker`` processes are
in ``tests/outbox/live/``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from typing import Any

import pytest
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import EmailMessage
from django.utils import timezone
from django.utils.module_loading import import_string

from django_amsdal_mail.outbox import enqueue, tasks
from django_amsdal_mail.outbox.checks import check_outbox_settings
from django_amsdal_mail.outbox.models import OutboxMessage
from django_amsdal_mail.outbox.worker import claim
from tests.smtpd import RecordingServer, ServerFactory

FRAMEWORK = tasks.framework()
assert FRAMEWORK is not None, "the dev environment installs a task framework"
DUMMY = f"{FRAMEWORK.__name__}.backends.dummy.DummyBackend"
IMMEDIATE = f"{FRAMEWORK.__name__}.backends.immediate.ImmediateBackend"


def _message(to: str = "ann@example.com") -> EmailMessage:
    return EmailMessage("Hello", "Body", "from@example.com", [to])


@pytest.fixture
def server(smtp_server: ServerFactory) -> RecordingServer:
    """A recording server."""
    return smtp_server()


@pytest.fixture
def dummy(server: RecordingServer, outbox: Any) -> Any:
    """ENGINE 'tasks' on a DummyBackend that accepts the 'email' queue; return the backend."""
    settings = outbox(server.host, server.port, ENGINE="tasks")
    settings.TASKS = {"default": {"BACKEND": DUMMY, "QUEUES": ["email"]}}
    backend = FRAMEWORK.task_backends["default"]
    backend.clear()
    return backend


def _enqueued(backend: Any) -> list[tuple[list[Any], int, str, Any]]:
    return [(r.args, r.task.priority, r.task.queue_name, r.task.run_after) for r in backend.results]


def test_deliver_is_the_task_the_worker_imports(dummy: Any) -> None:
    """The task's path is the module's name ``deliver``: a worker's import_string finds it."""
    assert tasks.deliver.module_path == "django_amsdal_mail.outbox.tasks.deliver"
    assert import_string(tasks.deliver.module_path) == tasks.deliver
    assert isinstance(tasks.deliver, import_string(f"{FRAMEWORK.__name__}.base.Task"))
    assert (tasks.deliver.backend, tasks.deliver.queue_name) == ("default", "email")
    with pytest.raises(AttributeError, match="no attribute 'other'"):
        tasks.other  # noqa: B018


def test_the_module_imports_without_the_framework_or_settings() -> None:
    """Importing the module loads no task framework and needs no configured settings."""
    code = (
        "import sys, django_amsdal_mail.outbox.tasks\n"
        "loaded = [m for m in ('django.tasks', 'django_tasks') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.django_db(transaction=True)
def test_one_task_per_message_on_commit_with_priority_clamped_and_run_after(
    dummy: Any, server: RecordingServer
) -> None:
    """Queue and backend from the settings; priority clamped to -100..100; a later due time
    deferred, a past one not."""
    later = timezone.now() + timedelta(hours=1)
    (high,) = enqueue(_message(), priority=500)
    (low,) = enqueue(_message(), priority=-500, run_after=later)
    (past,) = enqueue(_message(), priority=7, run_after=timezone.now() - timedelta(hours=1))
    assert _enqueued(dummy) == [
        ([str(high.pk)], 100, "email", None),
        ([str(low.pk)], -100, "email", later),
        ([str(past.pk)], 7, "email", None),
    ]
    assert server.connections == 0  # the dummy backend runs nothing


@pytest.mark.django_db(transaction=True)
def test_task_backend_and_queue_name_where_the_task_goes(
    server: RecordingServer, outbox: Any
) -> None:
    """TASK_BACKEND picks the TASKS alias, QUEUE the queue; the default backend is left alone."""
    settings = outbox(server.host, server.port, ENGINE="tasks", TASK_BACKEND="mail", QUEUE="bulk")
    settings.TASKS = {
        "default": {"BACKEND": DUMMY, "QUEUES": []},
        "mail": {"BACKEND": DUMMY, "QUEUES": ["bulk"]},
    }
    (row,) = enqueue(_message())
    (result,) = FRAMEWORK.task_backends["mail"].results
    assert (result.args, result.task.backend, result.task.queue_name) == (
        [str(row.pk)],
        "mail",
        "bulk",
    )
    assert FRAMEWORK.task_backends["default"].results == []


@pytest.mark.django_db(transaction=True)
def test_the_task_sends_and_schedules_a_look_after_its_lease(
    dummy: Any, server: RecordingServer
) -> None:
    """Running the task sends; the claim scheduled a deliver for just after the lease's end."""
    (row,) = enqueue(_message())
    dummy.clear()
    before = timezone.now()
    assert tasks.deliver.call(str(row.pk)) == "done"
    assert [m.rcpt_tos for m in server.messages] == [["ann@example.com"]]
    ((args, priority, queue, run_after),) = _enqueued(dummy)
    assert (args, queue) == ([str(row.pk)], "email")
    assert before + timedelta(seconds=60) < run_after < timezone.now() + timedelta(seconds=61)
    assert tasks.deliver.call(str(row.pk)) is None  # the look: done, nothing more
    assert len(server.messages) == 1 and _enqueued(dummy) == [(args, priority, queue, run_after)]


@pytest.mark.django_db(transaction=True)
def test_a_task_finding_the_message_held_looks_again_after_that_lease(
    dummy: Any, server: RecordingServer
) -> None:
    """Another worker holds it: nothing sent; a deliver scheduled for when that lease ends."""
    (row,) = enqueue(_message())
    dummy.clear()
    held = claim(row.pk, now=timezone.now(), token="other", lease=60)
    assert held is not None and held.lease_until is not None
    assert tasks.deliver.call(str(row.pk)) is None
    assert server.connections == 0
    assert _enqueued(dummy) == [
        ([str(row.pk)], 0, "email", held.lease_until + timedelta(milliseconds=100))
    ]


@pytest.mark.django_db(transaction=True)
def test_an_early_task_sends_nothing_and_schedules_nothing_more(
    dummy: Any, server: RecordingServer
) -> None:
    """Due later: the task told of that time is already there; an early one adds none."""
    later = timezone.now() + timedelta(hours=1)
    (row,) = enqueue(_message(), run_after=later)
    assert _enqueued(dummy) == [([str(row.pk)], 0, "email", later)]
    assert tasks.deliver.call(str(row.pk)) is None
    assert server.connections == 0 and len(dummy.results) == 1


@pytest.mark.django_db(transaction=True)
def test_a_message_whose_task_was_lost_is_sent_by_the_next_task(
    dummy: Any, server: RecordingServer
) -> None:
    """Overdue by more than LEASE and never run (its task lost): the next task's sweep sends it."""
    (lost,) = enqueue(_message("lost@example.com"), run_after=timezone.now() - timedelta(hours=1))
    (fresh,) = enqueue(_message("fresh@example.com"))
    assert tasks.deliver.call(str(fresh.pk)) == "done"
    assert sorted(m.rcpt_tos[0] for m in server.messages) == [
        "fresh@example.com",
        "lost@example.com",
    ]
    lost.refresh_from_db()
    assert lost.state == "done"


@pytest.mark.django_db(transaction=True)
def test_the_immediate_task_backend_sends_on_commit(server: RecordingServer, outbox: Any) -> None:
    """With the framework's ImmediateBackend the task runs on commit, in this process."""
    settings = outbox(server.host, server.port, ENGINE="tasks")
    settings.TASKS = {"default": {"BACKEND": IMMEDIATE, "QUEUES": []}}
    (row,) = enqueue(_message())
    row.refresh_from_db()
    assert row.state == "done" and [m.rcpt_tos for m in server.messages] == [["ann@example.com"]]
    assert OutboxMessage.objects.get().recipients.get().status == "sent"


@pytest.mark.parametrize(
    ("outbox_settings", "tasks_setting", "expected"),
    [
        ({}, {"default": {"BACKEND": DUMMY, "QUEUES": ["email"]}}, []),
        ({}, {"default": {"BACKEND": DUMMY, "QUEUES": []}}, []),
        (
            {"TASK_BACKEND": "mail"},
            {"default": {"BACKEND": DUMMY}},
            [(checks.Error, "amsdal_mail.outbox.E008")],
        ),
        (
            {},
            {"default": {"BACKEND": "no.such.Backend"}},
            [(checks.Error, "amsdal_mail.outbox.E008")],
        ),
        ({}, {"default": {"BACKEND": DUMMY}}, [(checks.Error, "amsdal_mail.outbox.E009")]),
        (
            {"QUEUE": "default"},
            {"default": {"BACKEND": IMMEDIATE}},
            [(checks.Warning, "amsdal_mail.outbox.W002")],
        ),
    ],
    ids=["ok", "any-queue", "unknown-alias", "bad-backend", "queue-refused", "no-defer"],
)
def test_the_checks_of_the_tasks_engine(
    settings: Any, outbox_settings: dict[str, Any], tasks_setting: Any, expected: Any
) -> None:
    """Each problem of the engine's setup is one check message with its id."""
    settings.AMSDAL_EMAIL_OUTBOX = {"ENGINE": "tasks", **outbox_settings}
    settings.TASKS = tasks_setting
    found = [(type(m), m.id) for m in check_outbox_settings()]
    assert found == expected
    if expected and expected[0][0] is checks.Error:
        with pytest.raises(ImproperlyConfigured, match="TASKS"):
            tasks.task()


def test_the_check_names_the_unknown_alias_and_the_missing_queue(settings: Any) -> None:
    """The texts say what to change."""
    settings.AMSDAL_EMAIL_OUTBOX = {"ENGINE": "tasks", "TASK_BACKEND": "mail"}
    settings.TASKS = {"default": {"BACKEND": DUMMY}}
    (message,) = check_outbox_settings()
    assert message.msg == (
        "AMSDAL_EMAIL_OUTBOX['TASK_BACKEND'] is 'mail', which is not a backend of TASKS "
        "(its aliases: ['default'])."
    )
    settings.AMSDAL_EMAIL_OUTBOX = {"ENGINE": "tasks"}
    (message,) = check_outbox_settings()
    assert message.hint == "Add 'email' to TASKS['default']['QUEUES']."


def test_without_a_task_framework_the_check_and_enqueue_name_django_tasks(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No framework: E007 naming the django-tasks package, and the engine refuses.

    The framework cannot be uninstalled from a running Django 6 (``django.tasks``
    is part of it), so ``framework()`` is patched to find none.
    """
    settings.AMSDAL_EMAIL_OUTBOX = {"ENGINE": "tasks"}
    monkeypatch.setattr(tasks, "framework", lambda: None)
    (message,) = check_outbox_settings()
    assert message.id == "amsdal_mail.outbox.E007" and "django-tasks" in message.msg
    with pytest.raises(ImproperlyConfigured, match="pip install django-tasks"):
        tasks.task()
