"""The steps of ``EmailBackend.send_messages()``, written once for its sync and async twins.

For each message: ``pre_send`` -> convert -> open the connection (once per
call) -> send -> ``post_send`` -> count it, or raise Django's error. The
steps do no I/O: :func:`send_flow` is a generator that yields what it needs
done (:class:`SendSignal`, :class:`Open`, :class:`Send`, :class:`Close`) and
is given back the reply, or the exception that raised, by a driver -- the
~10-line loops of :meth:`EmailBackend.send_messages` and
:meth:`EmailBackend.asend_messages`, which differ only by ``await``.
"""

from __future__ import annotations

import smtplib
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any, Final

from django.core.mail import EmailMessage as DjangoEmailMessage
from django.dispatch import Signal
from django.utils.encoding import force_str

from amsdal_mail import EmailMessage, RecipientsRefusedError, SendStatus, ServerDisconnectedError
from amsdal_mail.message import parse_address
from amsdal_mail.status import FAILED, INVALID, UNKNOWN

from .convert import convert_message
from .exceptions import CancelSend
from .signals import post_send, pre_send

__all__ = [
    "CLOSE",
    "OPEN",
    "Close",
    "Open",
    "Outcome",
    "Request",
    "Send",
    "SendSignal",
    "resume",
    "send_flow",
]


# --- what the flow asks its driver to do -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendSignal:
    """Send ``signal`` with these arguments (the driver adds sender and backend)."""

    signal: Signal
    arguments: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Open:
    """Open the connection; the reply says whether this opened it."""


@dataclass(frozen=True, slots=True)
class Send:
    """Send one converted message; the reply is its SendStatus."""

    message: EmailMessage


@dataclass(frozen=True, slots=True)
class Close:
    """Close the connection the flow opened."""


Request = SendSignal | Open | Send | Close
OPEN: Final = Open()
CLOSE: Final = Close()
Flow = Generator[Request, Any, int]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What carrying out a request gave: its reply, or the exception it raised."""

    reply: Any = None
    error: BaseException | None = None


def resume(flow: Flow, outcome: Outcome) -> Request | int:
    """Hand ``outcome`` to the flow; return its next request, or its result when done."""
    try:
        if outcome.error is not None:
            return flow.throw(outcome.error)
        return flow.send(outcome.reply)
    except StopIteration as done:
        sent: int = done.value
        return sent


# --- the steps ---------------------------------------------------------------------------------


@dataclass
class _Link:
    """The connection state of one ``send_messages()`` call."""

    started: bool = False
    opened: bool = False
    error: OSError | None = None


def send_flow(messages: Sequence[DjangoEmailMessage], *, fail_silently: bool) -> Flow:
    """Send ``messages`` over one connection, opened on demand; return how many were sent.

    Raises what ``EmailBackend.send_messages()`` documents; the connection
    this flow opened is closed in every case.
    """
    link = _Link()
    sent = 0
    try:
        for message in messages:
            outgoing = yield from _prepare(message)
            if outgoing is None:
                continue
            if (yield from _deliver(message, outgoing, link, fail_silently)):
                sent += 1
    finally:
        if link.opened:
            yield CLOSE
    return sent


def _prepare(message: DjangoEmailMessage) -> Generator[Request, Any, EmailMessage | None]:
    """Send ``pre_send`` and convert; return None for a message not to send."""
    message.amsdal_status = None  # type: ignore[attr-defined]
    if not message.recipients():
        return None
    try:
        yield SendSignal(pre_send, {"message": message})
    except CancelSend:
        return None
    except BaseExceptionGroup as group:
        # Several async receivers failed at once (Django 6's Signal.asend):
        # cancel only if all of them cancelled.
        _, others = group.split(CancelSend)
        if others is not None:
            raise
        return None
    if not message.recipients():  # a pre_send receiver removed them all
        return None
    try:
        return convert_message(message)
    except Exception as exc:  # reported on post_send, then raised as is
        yield from _report(message, _invalid_status(message, exc))
        raise


def _deliver(
    message: DjangoEmailMessage, outgoing: EmailMessage, link: _Link, fail_silently: bool
) -> Generator[Request, Any, bool]:
    """Send one converted message on the call's connection; return True if it counts."""
    if not link.started:
        link.started = True
        try:
            link.opened = yield OPEN
        except OSError as exc:
            link.error = exc
    error = link.error
    if error is None:
        try:
            status: SendStatus = yield Send(outgoing)
        except OSError as exc:
            error = link.error = exc
        except ValueError as exc:
            yield from _report(message, _invalid_status(message, exc))
            raise
        else:
            yield from _report(message, status)
            if status.get_successful_recipients():
                return True  # partial refusal still counts as sent, as in Django
            error = _refusal_error(outgoing, status)
            if fail_silently:
                return False
            raise error
    # The connection failed, for this message or an earlier one: not sent.
    yield from _report(message, _failed_status(outgoing, error))
    if fail_silently:
        return False
    raise error


def _report(message: DjangoEmailMessage, status: SendStatus) -> Generator[Request, Any, None]:
    """Keep ``status`` on the message and send ``post_send``."""
    message.amsdal_status = status  # type: ignore[attr-defined]
    yield SendSignal(post_send, {"message": message, "status": status})


# --- statuses and Django's errors --------------------------------------------------------------


def _bare(address: str) -> str:
    try:
        return parse_address(address, allow_local=True).addr_spec
    except ValueError:
        return address


def _invalid_status(message: DjangoEmailMessage, error: Exception) -> SendStatus:
    addresses = [_bare(force_str(a)) for a in message.recipients()]
    return SendStatus.uniform(addresses, INVALID, response=f"not sent: {error}")


def _failed_status(outgoing: EmailMessage, error: OSError) -> SendStatus:
    status = outgoing.status
    if status is None or not status.recipients:
        status = SendStatus.uniform(outgoing.recipients(), FAILED, response=f"not sent: {error}")
        outgoing.status = status
    return status


def _refusal_error(outgoing: EmailMessage, status: SendStatus) -> OSError:
    """Return the error Django's SMTP backend raises when no recipient was accepted."""
    replies = list(status.recipients.values())
    first = replies[0]
    text = first.response or ""
    if all(r.status == UNKNOWN for r in replies):
        return ServerDisconnectedError(text)
    if first.command == "MAIL":
        sender = parse_address(outgoing.from_email or "", allow_local=True).envelope
        return smtplib.SMTPSenderRefused(first.code or 0, text.encode(), sender)
    if first.command == "DATA":
        return smtplib.SMTPDataError(first.code or 0, text)
    if first.code is None:
        return smtplib.SMTPNotSupportedError(text)
    if first.command is None:
        # Refused before any command (the message exceeds the server's SIZE):
        # smtplib would see the server refuse MAIL FROM.
        sender = parse_address(outgoing.from_email or "", allow_local=True).envelope
        return smtplib.SMTPSenderRefused(first.code, text.encode(), sender)
    return RecipientsRefusedError(
        {
            address: (r.code or 0, (r.response or "").encode())
            for address, r in status.recipients.items()
        }
    )
