"""The contract every backend follows, sync and async.

A backend subclasses :class:`BaseBackend` and fills in the hooks that touch
the outside world. The base owns ``with`` / ``async with``, "close only what
you opened", validating a whole batch before anything is sent (each message
once per send), setting each message's own ``status`` and building the
aggregate, and ``fail_silently``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any

from ..exceptions import TransportError
from ..message import EmailMessage, ValidatedMessage
from ..status import FAILED, SendStatus

__all__ = ["BaseBackend"]

#: A message with the result of its one validation for this send.
Checked = tuple[EmailMessage, ValidatedMessage]


def addresses(valid: ValidatedMessage) -> list[str]:
    """Return the status keys of a validated message: each recipient as written, once."""
    return [address.addr_spec for address in valid.recipients]


class BaseBackend:
    """Base class of all backends.

    Subclasses implement :meth:`_deliver` (one validated message, sync) and
    may override :meth:`_adeliver` (async; by default it calls
    :meth:`_deliver`), and for connection-based transports
    :meth:`open`/:meth:`close` and :meth:`aopen`/:meth:`aclose`. A custom
    backend may instead implement only :meth:`_send`, given the message.
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

    # --- hooks for subclasses ------------------------------------------------

    def _send(self, message: EmailMessage) -> SendStatus:
        """Deliver one message and return its status (the simple hook for custom backends).

        Called by the default :meth:`_deliver` after the message was
        validated. May raise :class:`~amsdal_mail.TransportError`.
        """
        raise NotImplementedError

    def _deliver(self, message: EmailMessage, valid: ValidatedMessage) -> SendStatus:
        """Deliver ``message``, validated as ``valid``; return its status.

        Backends render ``valid`` (never validating again). May raise
        :class:`~amsdal_mail.TransportError`; the base records it on the message.
        """
        return self._send(message)

    async def _adeliver(self, message: EmailMessage, valid: ValidatedMessage) -> SendStatus:
        """Async twin of :meth:`_deliver`; by default calls it."""
        return self._deliver(message, valid)

    # --- the steps of one message --------------------------------------------

    @staticmethod
    def _validate(message: EmailMessage) -> ValidatedMessage:
        """Return the validated form of ``message`` (its one validation for this send)."""
        if not isinstance(message, EmailMessage):
            raise TypeError(
                f"send_messages() takes amsdal_mail.EmailMessage objects, "
                f"not {type(message).__name__}"
            )
        return message.validate()

    def _validate_batch(self, messages: Sequence[EmailMessage]) -> list[Checked]:
        """Check every message before any is sent, so a bad one sends nothing."""
        batch = [(message, self._validate(message)) for message in messages]
        for message, _ in batch:
            message.status = None
        return batch

    def _failed(self, message: EmailMessage, valid: ValidatedMessage, error: BaseException) -> None:
        """Record ``error`` as every recipient's failure on ``message``."""
        message.status = SendStatus.uniform(addresses(valid), FAILED, response=f"not sent: {error}")

    def _finish(
        self, message: EmailMessage, valid: ValidatedMessage, outcome: SendStatus | TransportError
    ) -> SendStatus:
        """Set ``message.status`` from what its delivery returned or raised; raise the error."""
        if isinstance(outcome, TransportError):
            self._failed(message, valid, outcome)
            raise outcome
        message.status = outcome
        return outcome

    def _give_up(self, batch: list[Checked], error: TransportError) -> None:
        """Mark the messages of ``batch`` without status failed; raise unless fail_silently."""
        for message, valid in batch:
            if message.status is None:
                self._failed(message, valid, error)
        if not self.fail_silently:
            raise error

    @staticmethod
    def _aggregate(batch: list[Checked]) -> SendStatus:
        return SendStatus.merge(m.status for m, _ in batch if m.status is not None)

    # --- sending ---------------------------------------------------------------

    def send_message(self, message: EmailMessage) -> SendStatus:
        """Send one message over the current connection; set and return ``message.status``.

        A connection is opened on demand and left open until :meth:`close`.
        ``fail_silently`` does not apply here.

        Raises:
            InvalidMessageError: the message is invalid; nothing was sent.
            TransportError: the server could not be reached or talked to;
                ``message.status`` records the failure first.
        """
        valid = self._validate(message)
        return self._finish(message, valid, self._attempt(message, valid))

    async def asend_message(self, message: EmailMessage) -> SendStatus:
        """Async twin of :meth:`send_message` (the connection stays open until :meth:`aclose`)."""
        return await self._asend_checked(message, self._validate(message), self._adeliver)

    async def _asend_checked(
        self,
        message: EmailMessage,
        valid: ValidatedMessage,
        deliver: Callable[[EmailMessage, ValidatedMessage], Awaitable[SendStatus]],
    ) -> SendStatus:
        """Deliver one validated message with ``deliver``; record and return its status."""
        try:
            outcome: SendStatus | TransportError = await deliver(message, valid)
        except TransportError as exc:
            outcome = exc
        return self._finish(message, valid, outcome)

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
        was_open = self._is_open()
        try:
            self._send_batch(batch)
        except TransportError as exc:
            self._give_up(batch, exc)
        finally:
            if not was_open:
                # Close only what this call opened (a connection made on demand).
                self.close()
        return self._aggregate(batch)

    def _send_batch(self, batch: list[Checked]) -> None:
        """Deliver a validated batch in order, setting each message's status.

        Raises the first TransportError (its message marked failed); the
        messages not attempted then have no status. Override to send several
        at once; the SMTP backend keeps several in flight on one connection.
        """
        for message, valid in batch:
            self._finish(message, valid, self._attempt(message, valid))

    def _attempt(
        self, message: EmailMessage, valid: ValidatedMessage
    ) -> SendStatus | TransportError:
        """Return what delivering ``message`` returned, or the TransportError it raised."""
        try:
            return self._deliver(message, valid)
        except TransportError as exc:
            return exc

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
            self._give_up(batch, exc)
        return self._aggregate(batch)

    async def _asend_lane(
        self,
        queue: list[Checked],
        deliver: Callable[[EmailMessage, ValidatedMessage], Awaitable[SendStatus]],
    ) -> None:
        """Send messages taken from the end of ``queue`` one after another, until it is empty."""
        while queue:
            message, valid = queue.pop()
            await self._asend_checked(message, valid, deliver)

    async def _asend_batch(self, batch: list[Checked], concurrency: int) -> None:
        """Send a validated batch, setting each message's status (override for I/O)."""
        opened = await self.aopen()
        try:
            queue = list(reversed(batch))
            lanes = min(concurrency, len(batch))
            await asyncio.gather(*(self._asend_lane(queue, self._adeliver) for _ in range(lanes)))
        finally:
            if opened:
                await self.aclose()
