"""How the outbox tells a task engine that a message is due.

An engine receives only outbox ids (the database row is the truth) and an
optional time before which the message is not due. The engines, by
``ENGINE`` name:

* ``"immediate"`` -- deliver in the calling process, at once (on commit of
  the enqueueing transaction), for development and tests. It has no
  scheduler: a retry that is due later waits for
  :func:`django_amsdal_mail.outbox.worker.deliver_due` to be called.

* ``"celery"`` -- publish the Celery task ``django_amsdal_mail.outbox.deliver``
  (see :mod:`django_amsdal_mail.outbox.celery_tasks`) with the outbox id as its
  only argument, on ``QUEUE``, with ``eta`` for a later due time and the
  message's priority. Needs the ``celery`` package.

* ``"tasks"`` -- Django's task framework (``django.tasks`` on 6.0+, the
  ``django-tasks`` backport on 5.2): one ``django_amsdal_mail.outbox.tasks.deliver``
  task per message, on the ``TASK_BACKEND`` alias and the ``QUEUE`` queue,
  deferred to a later due time; see :mod:`django_amsdal_mail.outbox.tasks` for
  how it schedules retries and takes up the messages of workers that died.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Final
from uuid import UUID

from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from .conf import SETTING, OutboxSettings, outbox_settings

__all__ = [
    "AVAILABLE",
    "Notify",
    "celery_installed",
    "celery_notify",
    "celery_priority",
    "engine",
]

logger = logging.getLogger(__name__)

#: Tells the engine that these messages are due at ``eta`` (None: now).
Notify = Callable[[Sequence[UUID], "datetime | None"], None]


def _immediate(message_ids: Sequence[UUID], eta: datetime | None) -> None:
    """Deliver each message now, in this process; a later ``eta`` is left to a sweep."""
    if eta is not None and eta > timezone.now():
        logger.info(
            "outbox: %d message(s) due at %s; the immediate engine does not schedule, "
            "call deliver_due() then",
            len(message_ids),
            eta.isoformat(),
        )
        return
    from .worker import deliver

    for message_id in message_ids:
        deliver(message_id)


def _tasks(message_ids: Sequence[UUID], eta: datetime | None) -> None:
    """Enqueue the Django task once per message (see :mod:`django_amsdal_mail.outbox.tasks`)."""
    from .tasks import notify

    notify(message_ids, eta)


def celery_installed() -> bool:
    """Return True when the ``celery`` package can be imported."""
    return importlib.util.find_spec("celery") is not None


def celery_priority(priority: int, driver: str) -> int:
    """Return the Celery priority (0-9) for an outbox ``priority`` (higher is sooner).

    The outbox's priority is clamped to 0-9. Brokers read Celery's number
    differently: RabbitMQ sends a higher number first, Redis a lower one
    (kombu's Redis transport keeps one list per priority step and reads the
    list of 0 first), so for a Redis broker (``driver`` ``"redis"``) the
    number is turned around.
    """
    clamped = max(0, min(9, priority))
    return 9 - clamped if driver == "redis" else clamped


def celery_notify(message_ids: Sequence[UUID], eta: datetime | None) -> None:
    """Publish the Celery task once per message, through one producer of the current app."""
    from .celery_tasks import deliver
    from .models import OutboxMessage

    rules = outbox_settings()
    if eta is not None and eta <= timezone.now():
        eta = None
    priorities = dict(
        OutboxMessage.objects.filter(pk__in=list(message_ids)).values_list("pk", "priority")
    )
    with deliver.app.producer_or_acquire() as producer:
        driver = producer.connection.transport.driver_type
        for message_id in message_ids:
            deliver.apply_async(
                args=[str(message_id)],
                eta=eta,
                queue=rules.queue,
                priority=celery_priority(priorities.get(message_id, 0), driver),
                producer=producer,
            )


#: The engines this version provides, by ``ENGINE`` name.
_ENGINES: Final[dict[str, Notify]] = {
    "immediate": _immediate,
    "tasks": _tasks,
    "celery": celery_notify,
}
#: The ``ENGINE`` names this version can use.
AVAILABLE: Final = frozenset(_ENGINES)


def engine(rules: OutboxSettings) -> Notify:
    """Return the notify function of the configured engine.

    Raises:
        ImproperlyConfigured: the engine is not provided by this version, or
            its package (``celery``) is not installed.
    """
    if rules.engine == "celery" and not celery_installed():
        raise ImproperlyConfigured(
            f"{SETTING}['ENGINE'] is 'celery', but the celery package is not installed; "
            'install it (pip install "celery[redis]") or choose another engine.'
        )
    if rules.engine == "tasks":
        from .tasks import task

        task(rules)  # refuses now, before anything is stored, when it cannot work
    try:
        return _ENGINES[rules.engine]
    except KeyError:
        raise ImproperlyConfigured(
            f"{SETTING}['ENGINE'] is {rules.engine!r}, which this version of "
            f"django_amsdal_mail.outbox does not provide yet; use one of {sorted(AVAILABLE)}."
        ) from None
