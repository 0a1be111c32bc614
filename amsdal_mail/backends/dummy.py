"""A backend that sends nothing and reports every recipient as sent."""

from __future__ import annotations

from ..message import EmailMessage
from ..status import SENT, SendStatus
from .base import BaseBackend

__all__ = ["DummyBackend"]


class DummyBackend(BaseBackend):
    """Discard every message; each recipient is reported ``sent``."""

    def _send(self, message: EmailMessage) -> SendStatus:
        return SendStatus.uniform(message.recipients(), SENT)
