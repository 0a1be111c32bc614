"""The outbox's Celery task (``ENGINE = "celery"``): ``django_amsdal_mail.outbox.deliver``.

Importable only where Celery is installed (``pip install "celery[redis]"``).
The task carries one argument, the outbox id; the message itself stays in
the database. It is declared with ``shared_task``, so it belongs to
whichever Celery app the project runs, and the outbox's ``AppConfig.ready``
imports this module when ``AMSDAL_EMAIL_OUTBOX["ENGINE"]`` is ``"celery"``:
a worker started the usual way registers it without an extra line (Celery's
``app.autodiscover_tasks()`` imports ``<app>.tasks``, which for the outbox is
the Django task framework's module, harmless under Celery).

Running the worker
------------------

The project's Celery app, as Celery's Django guide writes it
(``proj/celery.py``, imported from ``proj/__init__.py``)::

    import os
    from celery import Celery

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proj.settings")
    app = Celery("proj")
    app.config_from_object("django.conf:settings", namespace="CELERY")
    app.autodiscover_tasks()

with, in the settings::

    AMSDAL_EMAIL_OUTBOX = {"ENGINE": "celery"}   # QUEUE defaults to "email"
    CELERY_BROKER_URL = "redis://127.0.0.1:6379/0"
    # Longer than the outbox's longest wait (MAX_RETRY_DELAY, default 3600 s),
    # else Redis hands a retry that waits for its due time to a second worker
    # (harmless: the second finds it not due, but wasteful).
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 2 * 3600}

then one or more workers, on any machines that reach the database and the
broker (each message is claimed by one worker at a time)::

    celery -A proj worker -Q email --concurrency 4 --loglevel INFO

``-Q`` must name the outbox's ``QUEUE``. Retries are the outbox's own: after
an attempt the worker publishes the task again with an ``eta`` (the next
due time); Celery's ``autoretry`` is never used, and no result is stored.

How a worker's death is covered
-------------------------------

* **Redelivery.** The task is acknowledged late and rejected (put back)
  when its worker process is lost, so a pool process killed mid-send
  (SIGKILL, the OOM killer) gives the task back to the broker at once.
* **A task finding the message held** (its claim's lease, ``LEASE``
  seconds, not yet over -- as the redelivered task does, the dead worker's
  lease still running) is published again for the moment that lease ends.
* **A look after every lease.** When a task claims a message it also
  publishes, inside the claiming transaction, one more task for the end of
  the lease: if the worker finished, that task finds the message released
  and does nothing; if the worker died, it takes the message up -- even
  when the broker keeps the lost task for its visibility timeout, as Redis
  does when a whole worker machine is gone (unless that machine held the
  look as well; then the sweep below, or the visibility timeout, takes it).
* **The sweep.** After its own message, every task delivers up to
  :data:`SWEEP_LIMIT` messages overdue by more than ``LEASE`` seconds (a
  message whose task never reached the broker, a look that was lost).

Taken up, the recipients that were in flight become ``unknown`` (resent
once only with ``ON_UNKNOWN="resend"``) and the others are sent. A task that
finds the message done, cancelled or not yet due does nothing (the outbox
published a task for every due time it set).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any, Final
from uuid import UUID

from celery import shared_task  # type: ignore[import-untyped]

__all__ = ["LEASE_MARGIN", "SWEEP_LIMIT", "TASK_NAME", "deliver"]

logger = logging.getLogger(__name__)

#: The name the task is registered and published under (DESIGN).
TASK_NAME: Final = "django_amsdal_mail.outbox.deliver"
#: A look runs this long after the lease it waits for ends (machines' clocks differ a little).
LEASE_MARGIN: Final = timedelta(seconds=1)
#: How many overdue messages a task delivers after its own.
SWEEP_LIMIT: Final = 10


def _deliver(message_id: str) -> None:
    """Make the attempt that is due at outbox message ``message_id`` (a UUID string), if any.

    Then: if another worker holds the message, publish the task again for
    the end of that lease; and deliver a few overdue messages (the sweep).
    """
    from django.utils import timezone

    from .worker import deliver as deliver_now

    if deliver_now(message_id, on_claim=_look_after_lease) is None:
        _look_if_held(UUID(str(message_id)), timezone.now())
    _sweep(timezone.now())


def _look_after_lease(message_id: UUID, lease_until: datetime) -> None:
    """Publish the task for ``message_id`` for just after ``lease_until``."""
    from .engines import celery_notify

    celery_notify([message_id], lease_until + LEASE_MARGIN)


def _look_if_held(message_id: UUID, now: datetime) -> None:
    """The message was not available: if a worker holds it, look again when its lease ends."""
    from .models import OutboxMessage

    held = (
        OutboxMessage.objects.filter(pk=message_id, state=OutboxMessage.State.SENDING)
        .values_list("lease_until", flat=True)
        .first()
    )
    if held is None:
        return  # done, cancelled, gone, or queued for a later time (that time was published)
    logger.info("outbox: %s is held by a worker until %s; looking again then", message_id, held)
    _look_after_lease(message_id, max(held, now))


def _sweep(now: datetime) -> None:
    """Deliver up to :data:`SWEEP_LIMIT` messages overdue by more than ``LEASE`` seconds."""
    from .conf import outbox_settings
    from .worker import deliver as deliver_now
    from .worker import due_messages

    lease = timedelta(seconds=outbox_settings().lease)
    for message_id in due_messages(now=now - lease, limit=SWEEP_LIMIT):
        try:
            deliver_now(message_id, on_claim=_look_after_lease)
        except Exception:  # another message's problem must not fail this task
            logger.exception("outbox: the sweep could not deliver message %s", message_id)


#: The Celery task (a proxy to the current app's copy, as ``shared_task`` returns).
deliver: Any = shared_task(
    name=TASK_NAME,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    autoretry_for=(),
    max_retries=0,
)(_deliver)
