"""A backend that sends nothing and reports every recipient as sent."""

from __future__ import annotations

from ..message import EmailMessage, ValidatedMessage
from ..status import SENT, SendStatus
from .base import BaseBackend, addresses

__all__ = ["DummyBackend"]


class DummyBackend(BaseBackend):
    """Discard every message; each recipient is reported ``sent``."""

    def _deliver(self, message: EmailMessage, valid: ValidatedMessage) -> SendStatus:
        return SendStatus.uniform(addresses(valid), SENT)
