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

import threading
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

import django
from django.core.mail import EmailMessage as DjangoEmailMessage
from django.core.mail.backends.base import BaseEmailBackend

from amsdal_mail import BaseBackend
from amsdal_mail.config import UNSET

from .flow import Open, Outcome, Request, Send, SendSignal, resume, send_flow
from .settings import build_backend, resolve_mailer

if TYPE_CHECKING:
    from amsdal_mail.config import OAuth2Token, _Unset

__all__ = ["EmailBackend"]

#: Django 6.1 builds backends from MAILERS with an ``alias``, and its
#: BaseEmailBackend reports unknown options.
_MAILERS: Final = django.VERSION >= (6, 1)


class EmailBackend(BaseEmailBackend):
    """A Django email backend that sends through amsdal_mail, sync or async.

    It takes the options of Django's SMTP backend (``host``, ``port``,
    ``username``, ``password``, ``use_tls``, ``use_ssl``, ``timeout``,
    ``ssl_keyfile``, ``ssl_certfile``, ``fail_silently``), plus ``backend``:
    the amsdal_mail backend to send through (``smtp`` by default, or
    ``console``, ``locmem``, ``file``, ``dummy``, a registered name or a
    dotted path; ``AMSDAL_EMAIL_BACKEND`` when not given), and amsdal_mail's
    ``oauth2_token`` (in compatibility mode also ``EMAIL_OAUTH2_TOKEN_PROVIDER``),
    ``max_messages_per_connection``, ``rate_limit``, ``dsn_notify``, ``dsn_ret``
    and the DKIM options (``dkim_selector``, ``dkim_domain``, ``dkim_private_key``,
    ``dkim_private_key_file``; in compatibility mode also ``EMAIL_DSN_NOTIFY``,
    ``EMAIL_DSN_RET``, ``EMAIL_DKIM_*``). Where they come
    from when not given is described in :mod:`django_amsdal_mail.settings`.
    Unlike Django's, the default timeout is 30 seconds, not None.

    The attributes of Django's SMTP backend hold the effective values
    (``host``, ``port``, ... ``fail_silently``); ``amsdal_backend`` is the
    amsdal_mail backend that does the sending.

    Each message goes through :data:`~django_amsdal_mail.signals.pre_send`,
    is converted by :func:`~django_amsdal_mail.convert.convert_message`,
    sent, and reported on :data:`~django_amsdal_mail.signals.post_send` and
    as ``message.amsdal_status``; those steps are written once, in
    :func:`django_amsdal_mail.flow.send_flow`, which both twins drive.
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
        oauth2_token: OAuth2Token | None | _Unset = UNSET,
        max_messages_per_connection: int | str | None | _Unset = UNSET,
        rate_limit: float | str | None | _Unset = UNSET,
        dsn_notify: str | list[str] | None | _Unset = UNSET,
        dsn_ret: str | None | _Unset = UNSET,
        dkim_selector: str | None | _Unset = UNSET,
        dkim_domain: str | None | _Unset = UNSET,
        dkim_private_key: str | None | _Unset = UNSET,
        dkim_private_key_file: str | None | _Unset = UNSET,
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
            "oauth2_token": oauth2_token,
            "max_messages_per_connection": max_messages_per_connection,
            "rate_limit": rate_limit,
            "dsn_notify": dsn_notify,
            "dsn_ret": dsn_ret,
            "dkim_selector": dkim_selector,
            "dkim_domain": dkim_domain,
            "dkim_private_key": dkim_private_key,
            "dkim_private_key_file": dkim_private_key_file,
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
        except OSError as exc:
            self._unless_silent(exc)
            return None

    def close(self) -> None:
        """Close the connection, if open."""
        self.amsdal_backend.close()

    async def aopen(self) -> bool | None:
        """Async twin of :meth:`open`."""
        try:
            return await self.amsdal_backend.aopen()
        except OSError as exc:
            self._unless_silent(exc)
            return None

    def _unless_silent(self, error: OSError) -> None:
        """Raise ``error`` unless ``fail_silently`` is set."""
        if not self.fail_silently:
            raise error

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
        with self._lock:
            flow = send_flow(email_messages, fail_silently=self.fail_silently)
            step = resume(flow, Outcome())
            while not isinstance(step, int):
                try:
                    outcome = Outcome(self._perform(step))
                except BaseException as exc:  # handed to the flow, which decides
                    outcome = Outcome(error=exc)
                step = resume(flow, outcome)
            return step

    async def asend_messages(self, email_messages: Sequence[DjangoEmailMessage]) -> int:
        """Async twin of :meth:`send_messages`, through amsdal_mail's async path.

        Signals are sent with ``Signal.asend()``, so synchronous receivers run
        in a thread and may use the ORM.
        """
        flow = send_flow(email_messages, fail_silently=self.fail_silently)
        step = resume(flow, Outcome())
        while not isinstance(step, int):
            try:
                outcome = Outcome(await self._aperform(step))
            except BaseException as exc:  # handed to the flow, which decides
                outcome = Outcome(error=exc)
            step = resume(flow, outcome)
        return step

    def _perform(self, request: Request) -> Any:
        """Carry out one request of the flow with the sync calls; return the reply."""
        backend = self.amsdal_backend
        if isinstance(request, SendSignal):
            return request.signal.send(sender=type(self), backend=self, **request.arguments)
        if isinstance(request, Send):
            if isinstance(backend, BaseBackend):
                return backend.send_message(request.message)
            return backend.send_messages([request.message])  # a duck-typed backend
        if isinstance(request, Open):
            return backend.open()
        return backend.close()

    async def _aperform(self, request: Request) -> Any:
        """Async twin of :meth:`_perform`."""
        backend = self.amsdal_backend
        if isinstance(request, SendSignal):
            return await request.signal.asend(sender=type(self), backend=self, **request.arguments)
        if isinstance(request, Send):
            if isinstance(backend, BaseBackend):
                return await backend.asend_message(request.message)
            return await backend.asend_messages([request.message])  # a duck-typed backend
        if isinstance(request, Open):
            return await backend.aopen()
        return await backend.aclose()
