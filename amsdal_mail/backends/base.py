"""The contract every backend follows, sync and async.

A backend subclasses :class:`BaseBackend` and fills in the hooks that touch
the outside world. The base owns ``with`` / ``async with``, "close only what
you opened", validating a whole batch before anything is sent, setting each
message's own ``status`` and building the aggregate, and ``fail_silently``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from ..exceptions import TransportError
from ..message import EmailMessage
from ..status import FAILED, SendStatus

__all__ = ["BaseBackend"]


class BaseBackend:
    """Base class of all backends.

    Subclasses implement :meth:`_send` (one message, sync) and may override
    :meth:`_asend` (async; by default it calls :meth:`_send`), and for
    connection-based transports :meth:`open`/:meth:`close` and
    :meth:`aopen`/:meth:`aclose`.
    """

    def __init__(self, *, fail_silently: bool = False, **options: Any) -> None:
        if options:
            raise TypeError(f"{type(self).__name__} got unexpected option(s) {sorted(options)}")
        self.fail_silently = fail_silently

    # --- connection hooks (no-ops for backends without a connection) ---------

    def open(self) -> bool:
        """Open the connection if needed; return True if this call opened it."""
        return False

    def close(self) -> None:
        """Close the connection if open. Never raises for an already dead one."""

    def _is_open(self) -> bool:
        """Return True while a connection opened by :meth:`open` is held."""
        return False

    async def aopen(self) -> bool:
        """Async twin of :meth:`open`."""
        return self.open()

    async def aclose(self) -> None:
        """Async twin of :meth:`close`."""
        self.close()

    def __enter__(self) -> BaseBackend:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> BaseBackend:
        await self.aopen()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # --- sending -----------------------------------------------------------

    def _send(self, message: EmailMessage) -> SendStatus:
        """Deliver one validated message and return its status (subclasses)."""
        raise NotImplementedError

    async def _asend(self, message: EmailMessage) -> SendStatus:
        """Async twin of :meth:`_send`; by default calls it."""
        return self._send(message)

    @staticmethod
    def _validate_batch(messages: Sequence[EmailMessage]) -> list[EmailMessage]:
        """Check every message before any is sent, so a bad one sends nothing."""
        batch = list(messages)
        for message in batch:
            if not isinstance(message, EmailMessage):
                raise TypeError(
                    f"send_messages() takes amsdal_mail.EmailMessage objects, "
                    f"not {type(message).__name__}"
                )
            message.validate()
        return batch

    def _failed(self, message: EmailMessage, error: BaseException) -> SendStatus:
        """Record ``error`` as every recipient's failure on ``message``."""
        if message.status is None or not message.status.recipients:
            message.status = SendStatus.uniform(
                message.recipients(), FAILED, response=f"not sent: {error}"
            )
        return message.status

    def send_messages(self, messages: Sequence[EmailMessage]) -> SendStatus:
        """Send ``messages``; return the aggregate status (each message keeps its own).

        Raises:
            InvalidMessageError: a message is invalid; nothing was sent.
            TransportError: the server could not be reached or talked to
                (unless ``fail_silently``); messages sent before keep their
                status, the others are marked ``failed`` or ``unknown``.
        """
        batch = self._validate_batch(messages)
        if not batch:
            return SendStatus()
        for message in batch:
            message.status = None
        was_open = self._is_open()
        try:
            for message in batch:
                try:
                    message.status = self._send(message)
                except TransportError as exc:
                    self._failed(message, exc)
                    raise
        except TransportError as exc:
            for message in batch:
                if message.status is None:
                    self._failed(message, exc)
            if not self.fail_silently:
                raise
        finally:
            if not was_open:
                # Close only what this call opened (a connection made on demand).
                self.close()
        return SendStatus.merge(m.status for m in batch if m.status is not None)

    async def asend_messages(
        self, messages: Sequence[EmailMessage], *, concurrency: int = 1
    ) -> SendStatus:
        """Async twin of :meth:`send_messages`.

        ``concurrency`` is how many messages may be in flight at once; the
        SMTP backend spreads the batch over that many connections.
        """
        if not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency must be a whole number >= 1, got {concurrency!r}")
        batch = self._validate_batch(messages)
        if not batch:
            return SendStatus()
        try:
            await self._asend_batch(batch, concurrency)
        except TransportError as exc:
            for message in batch:
                if message.status is None:
                    self._failed(message, exc)
            if not self.fail_silently:
                raise
        return SendStatus.merge(m.status for m in batch if m.status is not None)

    async def _asend_batch(self, batch: list[EmailMessage], concurrency: int) -> None:
        """Send a validated batch, setting each message's status (override for I/O)."""
        for message in batch:
            message.status = None
        opened = await self.aopen()
        try:
            queue = list(reversed(batch))

            async def worker() -> None:
                while queue:
                    message = queue.pop()
                    try:
                        message.status = await self._asend(message)
                    except TransportError as exc:
                        self._failed(message, exc)
                        raise

            await asyncio.gather(*(worker() for _ in range(min(concurrency, len(batch)))))
        finally:
            if opened:
                await self.aclose()
