"""The ``"tasks"`` engine: Django's task framework sends the outbox.

``django_amsdal_mail.outbox.tasks.deliver`` is the Django task (a
``Task``: ``django.tasks`` on Django 6.0+, the ``django-tasks`` backport on
5.2). It takes one outbox id, makes the attempt that is due
(:func:`django_amsdal_mail.outbox.worker.deliver`), and returns the
message's state afterwards (``None`` when nothing was due). The name is
looked up lazily (this module imports nothing of the framework until
then), and the task is built from the current settings: the backend alias
``AMSDAL_EMAIL_OUTBOX["TASK_BACKEND"]`` (default ``"default"``) and the
queue ``QUEUE`` (default ``"email"``).

Running the worker
------------------
With ``django-tasks-db`` (``pip install "amsdal-mail[tasks]"``; on Django
5.2 also ``django-tasks``)::

    INSTALLED_APPS += ["django_tasks_db", "django_amsdal_mail.outbox"]
    TASKS = {
        "default": {
            "BACKEND": "django_tasks_db.DatabaseBackend",
            "QUEUES": ["default", "email"],  # the backend must accept the outbox's QUEUE
        }
    }
    AMSDAL_EMAIL_OUTBOX = {"ENGINE": "tasks"}

then ``manage.py migrate`` and run one or more workers on the outbox's
queue: ``manage.py db_worker --queue-name email``. On SQLite, give the
database ``"OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 20}`` (and
WAL journal mode) so that several workers wait for each other instead of
failing with "database is locked". ``manage.py check`` reports a missing
task framework, an unknown ``TASK_BACKEND``, a backend that refuses
``QUEUE`` and a backend that cannot defer tasks. django-tasks-db keeps a
row per finished task: prune them now and then (``manage.py
prune_db_task_results``).

How the engine schedules
------------------------
* **Enqueue and retries.** The outbox tells the engine a message is due
  (on commit of :func:`~django_amsdal_mail.outbox.enqueue`, and after every
  attempt that leaves recipients due later): one task per message, its
  priority the message's ``priority`` clamped to the framework's range
  (-100..100; the default priority when the backend has none), with
  ``run_after`` the due time when it is later and the backend supports
  deferred tasks. A backend without ``supports_defer`` gets the task now;
  the task then finds the message not due and sends nothing, and the
  message waits for a sweep (below): use a backend that defers
  (``django-tasks-db`` does).
* **A task that finds nothing to do** sends nothing. If the message is
  queued and due later, the task that was told that time is already
  waiting (every change of a message's due time tells the engine), so
  nothing more is scheduled. If another worker holds the message, a look
  is scheduled for when that worker's lease ends.
* **Lost workers.** ``django-tasks-db`` never runs again a task whose
  worker died; the outbox does not rely on it. When a task claims a
  message it schedules, in the claiming transaction, one more ``deliver``
  for the same message at the end of the lease (``LEASE`` seconds). If the
  worker finished, that look finds the message released and does nothing;
  if the worker died, it finds the lease expired and takes the message up
  (recipients in flight become ``unknown``, the others are sent): within
  about ``LEASE`` seconds, whatever the backend did with the lost task. So
  ``LEASE`` must be longer than one attempt can last (connecting and
  sending, each bounded by the SMTP timeout): a worker still sending when
  its lease ends is taken over, and its outcome is dropped.
* **The sweep.** After its own message, every task also delivers up to
  :data:`SWEEP_LIMIT` messages that are overdue by more than ``LEASE``
  seconds (due, or with a lease expired, that long ago): a message whose
  task never reached the backend (the process ended between the commit and
  the enqueue, a task deleted from the backend) is sent by the next task
  that runs. With no traffic at all there is no next task; a periodic
  ``deliver_due()`` covers that case.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from types import ModuleType
from typing import Any, Final
from uuid import UUID

from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from .conf import SETTING, OutboxSettings, SettingsProblem, outbox_settings

__all__ = [
    "E_BACKEND",
    "E_NO_FRAMEWORK",
    "E_QUEUE",
    "SWEEP_LIMIT",
    "W_NO_DEFER",
    "framework",
    "inspect_task_engine",
    "notify",
    "task",
]

logger = logging.getLogger(__name__)

E_NO_FRAMEWORK: Final = "amsdal_mail.outbox.E007"
E_BACKEND: Final = "amsdal_mail.outbox.E008"
E_QUEUE: Final = "amsdal_mail.outbox.E009"
W_NO_DEFER: Final = "amsdal_mail.outbox.W002"

#: How many overdue messages a task delivers after its own.
SWEEP_LIMIT: Final = 10
#: How long after a lease's end its look runs (the lease must have expired by then).
_AFTER_LEASE: Final = timedelta(milliseconds=100)


def framework() -> ModuleType | None:
    """Return Django's task framework (``django.tasks``, else ``django_tasks``), or None."""
    for name in ("django.tasks", "django_tasks"):
        try:
            if importlib.util.find_spec(name) is not None:
                return importlib.import_module(name)
        except ImportError:
            continue
    return None


def _require_framework() -> ModuleType:
    found = framework()
    if found is None:
        raise ImproperlyConfigured(
            f"{SETTING}['ENGINE'] is 'tasks', which needs Django's task framework: "
            "Django 6.0+ has it (django.tasks); on older Django install the django-tasks "
            "backport (pip install django-tasks), with a worker backend such as django-tasks-db."
        )
    return found


def _constants() -> tuple[int, int, int]:
    """Return the framework's (lowest, highest, default) task priority."""
    base = importlib.import_module(f"{_require_framework().__name__}.base")
    return base.TASK_MIN_PRIORITY, base.TASK_MAX_PRIORITY, base.DEFAULT_TASK_PRIORITY


def _deliver(message_id: str) -> str | None:
    """Deliver the outbox message ``message_id``; return its state afterwards (None: not due)."""
    from . import worker

    now = timezone.now()
    message = worker.deliver(message_id, now=now, on_claim=_look_after_lease)
    if message is None:
        _not_available(UUID(str(message_id)), now)
    _sweep(timezone.now())
    return None if message is None else str(message.state)


# The task's module path must be "django_amsdal_mail.outbox.tasks.deliver", the
# name under which this module gives the task (see __getattr__).
_deliver.__name__ = _deliver.__qualname__ = "deliver"


def _task_for(backend: str, queue: str) -> Any:
    # Built afresh (cheap): the framework checks it against the current TASKS.
    return _require_framework().task(_deliver, backend=backend, queue_name=queue)


def task(rules: OutboxSettings | None = None) -> Any:
    """Return the ``deliver`` task for ``rules`` (default: the current settings).

    Raises:
        ImproperlyConfigured: no task framework is installed, ``TASK_BACKEND``
            names no usable backend of ``TASKS``, or that backend refuses ``QUEUE``
            (the text names the setting to change).
    """
    rules = rules or outbox_settings()
    try:
        return _task_for(rules.task_backend, rules.queue)
    except Exception as error:
        problems = inspect_task_engine(rules)
        errors = [p for p in problems if p.id != W_NO_DEFER]
        if not errors:
            raise
        raise ImproperlyConfigured(f"{errors[0].message} {errors[0].hint}") from error


def __getattr__(name: str) -> Any:
    """Give ``deliver``, the task, built from the current settings at each look-up."""
    if name == "deliver":
        return task()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _priority(priority: int, backend: Any) -> int:
    low, high, default = _constants()
    if not getattr(backend, "supports_priority", False):
        return default
    return max(low, min(high, priority))


def _enqueue(
    message_id: UUID, *, priority: int, eta: datetime | None, rules: OutboxSettings
) -> None:
    deliver = task(rules)
    backend = deliver.get_backend()
    options: dict[str, Any] = {"priority": _priority(priority, backend)}
    if eta is not None and eta > timezone.now() and backend.supports_defer:
        options["run_after"] = eta
    deliver.using(**options).enqueue(str(message_id))


def notify(message_ids: Sequence[UUID], eta: datetime | None) -> None:
    """Enqueue one ``deliver`` task per message, due at ``eta`` (None: now)."""
    from .models import OutboxMessage

    rules = outbox_settings()
    priorities = dict(
        OutboxMessage.objects.filter(pk__in=list(message_ids)).values_list("pk", "priority")
    )
    for message_id in message_ids:
        _enqueue(message_id, priority=priorities.get(message_id, 0), eta=eta, rules=rules)


def _look_after_lease(message_id: UUID, lease_until: datetime) -> None:
    """Schedule a ``deliver`` for when the lease just taken ends (if the backend can defer)."""
    from .models import OutboxMessage

    rules = outbox_settings()
    if not task(rules).get_backend().supports_defer:
        return
    priority = OutboxMessage.objects.filter(pk=message_id).values_list("priority", flat=True)
    _enqueue(
        message_id, priority=priority.first() or 0, eta=lease_until + _AFTER_LEASE, rules=rules
    )


def _not_available(message_id: UUID, now: datetime) -> None:
    """A task found nothing to send: if another worker holds the message, look after its lease."""
    from .models import OutboxMessage

    row = (
        OutboxMessage.objects.filter(pk=message_id)
        .values_list("state", "lease_until", "next_attempt_at")
        .first()
    )
    if row is None:
        logger.info("outbox: message %s no longer exists", message_id)
        return
    state, lease_until, next_at = row
    if state == OutboxMessage.State.SENDING and lease_until is not None and lease_until >= now:
        _look_after_lease(message_id, lease_until)
    elif state == OutboxMessage.State.QUEUED and next_at is not None and next_at > now:
        # The change that made it due later told the engine of that time.
        logger.debug("outbox: message %s is due at %s", message_id, next_at.isoformat())


def _sweep(now: datetime) -> None:
    """Deliver up to SWEEP_LIMIT messages overdue by more than LEASE seconds."""
    from . import worker

    rules = outbox_settings()
    overdue = worker.due_messages(now=now - timedelta(seconds=rules.lease), limit=SWEEP_LIMIT)
    for message_id in overdue:
        try:
            worker.deliver(message_id, on_claim=_look_after_lease)
        except Exception:  # another message's problem must not fail this task
            logger.exception("outbox: the sweep could not deliver message %s", message_id)


def inspect_task_engine(rules: OutboxSettings) -> list[SettingsProblem]:
    """Return the problems that keep the ``"tasks"`` engine from working with ``rules``."""
    found = framework()
    if found is None:
        try:
            _require_framework()
        except ImproperlyConfigured as error:
            return [
                SettingsProblem(
                    str(error),
                    "pip install django-tasks (and django-tasks-db for its db_worker), "
                    "or upgrade to Django 6.0+.",
                    E_NO_FRAMEWORK,
                )
            ]
    assert found is not None
    where = f"{SETTING}['TASK_BACKEND']"
    try:
        configured = found.task_backends.settings
    except Exception as error:  # a malformed TASKS: the framework's own check names it
        return [SettingsProblem(f"TASKS cannot be read: {error}", "Fix TASKS.", E_BACKEND)]
    if rules.task_backend not in configured:
        return [
            SettingsProblem(
                f"{where} is {rules.task_backend!r}, which is not a backend of TASKS "
                f"(its aliases: {sorted(configured)}).",
                f"Add TASKS[{rules.task_backend!r}] or set {where} to one of them.",
                E_BACKEND,
            )
        ]
    try:
        backend = found.task_backends[rules.task_backend]
    except Exception as error:
        return [
            SettingsProblem(
                f"TASKS[{rules.task_backend!r}] (the outbox's {where}) cannot be loaded: {error}",
                "Fix its BACKEND.",
                E_BACKEND,
            )
        ]
    problems: list[SettingsProblem] = []
    if backend.queues and rules.queue not in backend.queues:
        problems.append(
            SettingsProblem(
                f"TASKS[{rules.task_backend!r}] does not accept the outbox's queue "
                f"{rules.queue!r} ({SETTING}['QUEUE']); its QUEUES are {sorted(backend.queues)}.",
                f"Add {rules.queue!r} to TASKS[{rules.task_backend!r}]['QUEUES'].",
                E_QUEUE,
            )
        )
    if not backend.supports_defer:
        problems.append(
            SettingsProblem(
                f"TASKS[{rules.task_backend!r}] ({type(backend).__name__}) cannot defer tasks: "
                "retries and later due times are not scheduled, they wait for the next task.",
                "Use a backend that supports run_after, such as django_tasks_db.DatabaseBackend.",
                W_NO_DEFER,
            )
        )
    return problems
