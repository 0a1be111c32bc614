"""An in-memory outbox for tests: ``amsdal_mail.backends.locmem.outbox``."""

from __future__ import annotations

import threading

from ..message import EmailMessage, ValidatedMessage
from ..mime import render
from ..status import SENT, SendStatus
from .base import BaseBackend, addresses

__all__ = ["LocmemBackend", "outbox"]

#: Every message sent through a :class:`LocmemBackend`, oldest first.
#: Clear it between tests with ``outbox.clear()``.
outbox: list[EmailMessage] = []
_lock = threading.Lock()


class LocmemBackend(BaseBackend):
    """Keep sent messages in :data:`outbox` instead of sending them.

    The message is rendered (so a message that could not be rendered fails
    here as it would with SMTP), and each recipient is reported ``sent``.
    """

    def _deliver(self, message: EmailMessage, valid: ValidatedMessage) -> SendStatus:
        render(valid)
        with _lock:
            outbox.append(message)
        return SendStatus.uniform(addresses(valid), SENT)
