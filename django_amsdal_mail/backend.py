"""The Django email backend that sends through amsdal_mail.

Switch from Django's SMTP backend by changing one line::

    EMAIL_BACKEND = "django_amsdal_mail.backend.EmailBackend"

or, on Django 6.1+::

    MAILERS = {
        "default": {
            "BACKEND": "django_amsdal_mail.backend.EmailBackend",
            "OPTIONS": {"host": "smtp.example.com", "use_tls": True},
        },
    }
"""

from __future__ import annotations

import smtplib
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

import django
from django.core.mail import EmailMessage as DjangoEmailMessage
from django.core.mail.backends.base import BaseEmailBackend
from django.utils.encoding import force_str

from amsdal_mail import (
    BaseBackend,
    EmailMessage,
    RecipientsRefusedError,
    SendStatus,
    ServerDisconnectedError,
)
from amsdal_mail.config import UNSET
from amsdal_mail.message import parse_address
from amsdal_mail.status import FAILED, INVALID, UNKNOWN

from .convert import convert_message
from .exceptions import CancelSend
from .settings import build_backend, resolve_mailer
from .signals import post_send, pre_send

if TYPE_CHECKING:
    from amsdal_mail.config import _Unset

__all__ = ["EmailBackend"]

#: Django 6.1 builds backends from MAILERS with an ``alias``, and its
#: BaseEmailBackend reports unknown options.
_MAILERS: Final = django.VERSION >= (6, 1)


@dataclass
class _Batch:
    """The connection state of one ``send_messages()`` call."""

    started: bool = False
    opened: bool = False
    error: OSError | None = None


class EmailBackend(BaseEmailBackend):
    """A Django email backend that sends through amsdal_mail, sync or async.

    It takes the options of Django's SMTP backend (``host``, ``port``,
    ``username``, ``password``, ``use_tls``, ``use_ssl``, ``timeout``,
    ``ssl_keyfile``, ``ssl_certfile``, ``fail_silently``), plus ``backend``:
    the amsdal_mail backend to send through (``smtp`` by default, or
    ``console``, ``locmem``, ``file``, ``dummy``, a registered name or a
    dotted path; ``AMSDAL_EMAIL_BACKEND`` when not given). Where they come
    from when not given is described in :mod:`django_amsdal_mail.settings`.
    Unlike Django's, the default timeout is 30 seconds, not None.

    The attributes of Django's SMTP backend hold the effective values
    (``host``, ``port``, ... ``fail_silently``); ``amsdal_backend`` is the
    amsdal_mail backend that does the sending.

    Each message goes through :data:`~django_amsdal_mail.signals.pre_send`,
    is converted by :func:`~django_amsdal_mail.convert.convert_message`,
    sent, and reported on :data:`~django_amsdal_mail.signals.post_send` and
    as ``message.amsdal_status``.
    """

    def __init__(
        self,
        host: str | None | _Unset = UNSET,
        port: int | str | None | _Unset = UNSET,
        username: str | None | _Unset = UNSET,
        password: str | None | _Unset = UNSET,
        use_tls: bool | str | None | _Unset = UNSET,
        fail_silently: bool = False,
        use_ssl: bool | str | None | _Unset = UNSET,
        timeout: float | None | _Unset = UNSET,
        ssl_keyfile: str | None | _Unset = UNSET,
        ssl_certfile: str | None | _Unset = UNSET,
        *,
        backend: str | None | _Unset = UNSET,
        alias: str | None = None,
        **kwargs: Any,
    ) -> None:
        # Django 6.1's base class reports unknown options, naming the alias;
        # earlier versions ignore them (and know no alias).
        if _MAILERS:
            super().__init__(alias=alias, **kwargs)
        else:
            super().__init__(**kwargs)
        self.alias = alias
        self.fail_silently = fail_silently
        explicit = {
            "host": host,
            "port": port,
            "username": username,
            "password": password,
            "use_tls": use_tls,
            "use_ssl": use_ssl,
            "timeout": timeout,
            "ssl_keyfile": ssl_keyfile,
            "ssl_certfile": ssl_certfile,
            "backend": backend,
        }
        mailer = resolve_mailer(explicit, alias=alias)
        #: The amsdal_mail backend that sends (its own fail_silently stays off:
        #: this backend applies Django's rules).
        self.amsdal_backend: BaseBackend = build_backend(mailer)
        smtp = mailer.smtp
        # Django's EMAIL_HOST_USER and EMAIL_HOST_PASSWORD default to "" (MAILERS: None).
        unset = "" if alias is None else None
        self.host: str | None = smtp.host if smtp else None
        self.port: int | None = smtp.port if smtp else None
        self.username: str | None = (smtp.username if smtp else None) or unset
        self.password: str | None = (smtp.password if smtp else None) or unset
        self.use_tls: bool = smtp.use_tls if smtp else False
        self.use_ssl: bool = smtp.use_ssl if smtp else False
        self.timeout: float | None = smtp.timeout if smtp else None
        self.ssl_certfile: str | None = smtp.ssl_certfile if smtp else None
        self.ssl_keyfile: str | None = smtp.ssl_keyfile if smtp else None
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        alias = "" if self.alias is None else f" alias={self.alias!r}"
        return f"<{type(self).__name__}{alias} {self.amsdal_backend!r}>"

    # --- connection -------------------------------------------------------------

    def open(self) -> bool | None:
        """Open the connection if needed.

        Return True if this call opened it, False if it was open already, or
        None if opening failed and ``fail_silently`` is set (as Django's SMTP
        backend does).
        """
        try:
            return self.amsdal_backend.open()
        except OSError:
            if not self.fail_silently:
                raise
            return None

    def close(self) -> None:
        """Close the connection, if open."""
        self.amsdal_backend.close()

    async def aopen(self) -> bool | None:
        """Async twin of :meth:`open`."""
        try:
            return await self.amsdal_backend.aopen()
        except OSError:
            if not self.fail_silently:
                raise
            return None

    async def aclose(self) -> None:
        """Async twin of :meth:`close`."""
        await self.amsdal_backend.aclose()

    async def __aenter__(self) -> EmailBackend:
        try:
            await self.aopen()
        except Exception:
            await self.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # --- sending -------------------------------------------------------------------

    def send_messages(self, email_messages: Sequence[DjangoEmailMessage]) -> int:
        """Send Django messages; return how many were sent.

        A message counts as sent when at least one recipient was accepted.
        Messages without recipients, and those a ``pre_send`` receiver
        cancelled, are skipped. An empty list opens no connection.

        Raises:
            ValueError: a malformed message (such as a bad address), refused
                before any SMTP command for it; never silenced.
            smtplib.SMTPRecipientsRefused: every recipient of a message was
                refused (an :class:`amsdal_mail.RecipientsRefusedError`, with
                each address's ``(code, message)``).
            smtplib.SMTPSenderRefused, smtplib.SMTPDataError: the server
                refused the sender or the message data.
            OSError: the server could not be reached or talked to (amsdal_mail's
                errors subclass the matching smtplib ones).

        Delivery errors are silenced with ``fail_silently``; ``post_send`` is
        sent for each message before any error about it propagates.
        """
        if not email_messages:
            return 0
        with self._lock:
            batch = _Batch()
            try:
                sent = 0
                for message in email_messages:
                    outgoing = self._prepare(message)
                    if outgoing is not None and self._deliver(message, outgoing, batch):
                        sent += 1
                return sent
            finally:
                if batch.opened:
                    self.amsdal_backend.close()

    async def asend_messages(self, email_messages: Sequence[DjangoEmailMessage]) -> int:
        """Async twin of :meth:`send_messages`, through amsdal_mail's async path.

        Signals are sent with ``Signal.asend()``, so synchronous receivers run
        in a thread and may use the ORM.
        """
        if not email_messages:
            return 0
        batch = _Batch()
        try:
            sent = 0
            for message in email_messages:
                outgoing = await self._aprepare(message)
                if outgoing is not None and await self._adeliver(message, outgoing, batch):
                    sent += 1
            return sent
        finally:
            if batch.opened:
                await self.amsdal_backend.aclose()

    # --- the steps of one message ------------------------------------------------------
    #
    # pre_send -> convert -> (open) -> send -> post_send -> raise or count.
    # The sync and async twins differ only in how they send signals and bytes.

    def _prepare(self, message: DjangoEmailMessage) -> EmailMessage | None:
        """Send ``pre_send`` and convert; return None for a message not to send."""
        message.amsdal_status = None  # type: ignore[attr-defined]
        if not message.recipients():
            return None
        try:
            pre_send.send(sender=type(self), message=message, backend=self)
        except CancelSend:
            return None
        if not message.recipients():  # a pre_send receiver removed them all
            return None
        try:
            return convert_message(message)
        except Exception as exc:  # reported on post_send, then raised as is
            self._post_send(message, _invalid_status(message, exc))
            raise

    async def _aprepare(self, message: DjangoEmailMessage) -> EmailMessage | None:
        """Async twin of :meth:`_prepare`."""
        message.amsdal_status = None  # type: ignore[attr-defined]
        if not message.recipients():
            return None
        try:
            await pre_send.asend(sender=type(self), message=message, backend=self)
        except CancelSend:
            return None
        except BaseExceptionGroup as group:
            # Several async receivers failed at once: cancel only if all of them cancelled.
            if group.subgroup(lambda exc: not isinstance(exc, CancelSend)) is not None:
                raise
            return None
        if not message.recipients():
            return None
        try:
            return convert_message(message)
        except Exception as exc:
            await self._apost_send(message, _invalid_status(message, exc))
            raise

    def _deliver(self, message: DjangoEmailMessage, outgoing: EmailMessage, batch: _Batch) -> bool:
        """Send one converted message on the batch's connection; return True if sent."""
        if not batch.started:
            batch.started = True
            try:
                batch.opened = self.amsdal_backend.open()
            except OSError as exc:
                batch.error = exc
        if batch.error is None:
            try:
                self.amsdal_backend.send_messages([outgoing])
            except OSError as exc:
                batch.error = exc
                return self._failed(message, outgoing, exc)
            except ValueError as exc:
                self._post_send(message, _invalid_status(message, exc))
                raise
            return self._outcome(message, outgoing)
        return self._failed(message, outgoing, batch.error)

    async def _adeliver(
        self, message: DjangoEmailMessage, outgoing: EmailMessage, batch: _Batch
    ) -> bool:
        """Async twin of :meth:`_deliver`."""
        if not batch.started:
            batch.started = True
            try:
                batch.opened = await self.amsdal_backend.aopen()
            except OSError as exc:
                batch.error = exc
        if batch.error is None:
            try:
                await self.amsdal_backend.asend_messages([outgoing])
            except OSError as exc:
                batch.error = exc
                return await self._afailed(message, outgoing, exc)
            except ValueError as exc:
                await self._apost_send(message, _invalid_status(message, exc))
                raise
            return await self._aoutcome(message, outgoing)
        return await self._afailed(message, outgoing, batch.error)

    def _failed(self, message: DjangoEmailMessage, outgoing: EmailMessage, error: OSError) -> bool:
        """Report a message the connection failed for; raise unless fail_silently."""
        self._post_send(message, _failed_status(outgoing, error))
        if not self.fail_silently:
            raise error
        return False

    async def _afailed(
        self, message: DjangoEmailMessage, outgoing: EmailMessage, error: OSError
    ) -> bool:
        """Async twin of :meth:`_failed`."""
        await self._apost_send(message, _failed_status(outgoing, error))
        if not self.fail_silently:
            raise error
        return False

    def _outcome(self, message: DjangoEmailMessage, outgoing: EmailMessage) -> bool:
        """Report a message the server answered; raise Django's error if none was accepted."""
        status = outgoing.status or SendStatus()
        self._post_send(message, status)
        return self._count_or_raise(outgoing, status)

    async def _aoutcome(self, message: DjangoEmailMessage, outgoing: EmailMessage) -> bool:
        """Async twin of :meth:`_outcome`."""
        status = outgoing.status or SendStatus()
        await self._apost_send(message, status)
        return self._count_or_raise(outgoing, status)

    def _count_or_raise(self, outgoing: EmailMessage, status: SendStatus) -> bool:
        if status.get_successful_recipients():
            return True  # partial refusal still counts as sent, as in Django
        error = _refusal_error(outgoing, status)
        if not self.fail_silently:
            raise error
        return False

    def _post_send(self, message: DjangoEmailMessage, status: SendStatus) -> None:
        message.amsdal_status = status  # type: ignore[attr-defined]
        post_send.send(sender=type(self), message=message, status=status, backend=self)

    async def _apost_send(self, message: DjangoEmailMessage, status: SendStatus) -> None:
        message.amsdal_status = status  # type: ignore[attr-defined]
        await post_send.asend(sender=type(self), message=message, status=status, backend=self)


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
