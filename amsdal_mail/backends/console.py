"""A backend that writes each rendered message to a stream (stdout by default)."""

from __future__ import annotations

import sys
import threading
from typing import IO, Any

from ..message import EmailMessage, ValidatedMessage
from ..mime import render
from ..status import SENT, SendStatus
from .base import BaseBackend, addresses

__all__ = ["ConsoleBackend"]


class ConsoleBackend(BaseBackend):
    """Print each message as it would go on the wire, followed by a separator line.

    ``stream`` is any text stream (default ``sys.stdout``).
    """

    def __init__(
        self, *, fail_silently: bool = False, stream: IO[str] | None = None, **options: Any
    ) -> None:
        super().__init__(fail_silently=fail_silently, **options)
        self.stream = stream
        self._lock = threading.Lock()

    def _deliver(self, message: EmailMessage, valid: ValidatedMessage) -> SendStatus:
        text = render(valid).decode("utf-8", "replace").replace("\r\n", "\n")
        stream = self.stream or sys.stdout
        with self._lock:
            stream.write(text)
            stream.write("-" * 79 + "\n")
            stream.flush()
        return SendStatus.uniform(addresses(valid), SENT)
