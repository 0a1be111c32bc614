"""How the outbox tells a task engine that a message is due.

An engine receives only outbox ids (the database row is the truth) and an
optional time before which the message is not due. This version provides
one engine:

* ``"immediate"`` -- deliver in the calling process, at once (on commit of
  the enqueueing transaction), for development and tests. It has no
  scheduler: a retry that is due later waits for
  :func:`django_amsdal_mail.outbox.worker.deliver_due` to be called.

``"tasks"`` (Django's task framework) and ``"celery"`` are valid settings
but not provided yet: :func:`engine` raises ``ImproperlyConfigured`` for them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Final
from uuid import UUID

from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from .conf import SETTING, OutboxSettings

__all__ = ["AVAILABLE", "Notify", "engine"]

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


#: The engines this version provides, by ``ENGINE`` name.
_ENGINES: Final[dict[str, Notify]] = {"immediate": _immediate}
#: The ``ENGINE`` names this version can use.
AVAILABLE: Final = frozenset(_ENGINES)


def engine(rules: OutboxSettings) -> Notify:
    """Return the notify function of the configured engine.

    Raises:
        ImproperlyConfigured: the engine is not provided by this version.
    """
    try:
        return _ENGINES[rules.engine]
    except KeyError:
        raise ImproperlyConfigured(
            f"{SETTING}['ENGINE'] is {rules.engine!r}, which this version of "
            f"django_amsdal_mail.outbox does not provide yet; use one of {sorted(AVAILABLE)}."
        ) from None
