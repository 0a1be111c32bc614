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

What a redelivered task does
----------------------------

The task is acknowledged late and rejected (put back) when its worker
process is lost, so a worker killed mid-send (SIGKILL, out of memory) gives
the task back to the broker. The next worker that gets it finds the message
still claimed by the dead one: the claim's lease (``LEASE`` seconds) must
run out first, so the task is published again for the moment the lease
ends; then the message is taken up, the recipients that were in flight
become ``unknown`` (resent once only with ``ON_UNKNOWN="resend"``), and the
others are sent. A task that finds the message done, cancelled or not yet
due does nothing (the outbox told the broker of every due time it set).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any, Final
from uuid import UUID

from celery import shared_task  # type: ignore[import-untyped]

__all__ = ["TASK_NAME", "deliver"]

logger = logging.getLogger(__name__)

#: The name the task is registered and published under (DESIGN).
TASK_NAME: Final = "django_amsdal_mail.outbox.deliver"
#: Published again this long after a held lease ends (clocks of machines differ a little).
LEASE_MARGIN: Final = timedelta(seconds=1)


def _deliver(message_id: str) -> None:
    """Make one attempt at outbox message ``message_id`` (a UUID string), if it is available.

    If another worker holds the message (its lease not yet over), the task
    is published again for the end of that lease, so that a message whose
    worker died is taken up even though its own task is gone.
    """
    from django.utils import timezone

    from .conf import outbox_settings
    from .engines import engine
    from .models import OutboxMessage
    from .worker import deliver as deliver_now

    if deliver_now(message_id) is not None:
        return
    held = (
        OutboxMessage.objects.filter(pk=UUID(str(message_id)), state=OutboxMessage.State.SENDING)
        .values_list("lease_until", flat=True)
        .first()
    )
    if held is None:
        return  # done, cancelled, gone, or queued for later (that time was published)
    eta = max(held, timezone.now()) + LEASE_MARGIN
    logger.info("outbox: %s is held by a worker until %s; looking again then", message_id, held)
    engine(outbox_settings())([UUID(str(message_id))], eta)


#: The Celery task (a proxy to the current app's copy, as ``shared_task`` returns).
deliver: Any = shared_task(
    name=TASK_NAME,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    autoretry_for=(),
    max_retries=0,
)(_deliver)
