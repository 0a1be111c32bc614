"""Async twins of ``django.core.mail``'s sending functions.

Django's mail API has no awaitable way to send. These build the same
messages as :func:`django.core.mail.send_mail` and
:func:`django.core.mail.send_mass_mail` and send them through
``EmailBackend.asend_messages()``, amsdal_mail's async path, when the
connection is a :class:`~django_amsdal_mail.backend.EmailBackend`; any other
Django backend is run in a thread (``sync_to_async``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from asgiref.sync import sync_to_async
from django.core import mail
from django.core.mail import EmailMessage, EmailMultiAlternatives
from django.core.mail.backends.base import BaseEmailBackend

__all__ = ["asend_mail", "asend_mass_mail", "asend_messages"]


async def asend_messages(connection: BaseEmailBackend, messages: Sequence[EmailMessage]) -> int:
    """Send ``messages`` through ``connection``; return how many were sent.

    Uses the connection's ``asend_messages()`` when it has one (as
    :class:`~django_amsdal_mail.backend.EmailBackend` does), else runs its
    ``send_messages()`` in a thread.
    """
    asend = getattr(connection, "asend_messages", None)
    if asend is not None:
        sent: int = await asend(messages)
        return sent
    count: int | None = await sync_to_async(connection.send_messages)(messages)
    return count or 0


def _connection(
    using: str | None,
    fail_silently: bool,
    auth_user: str | None,
    auth_password: str | None,
) -> BaseEmailBackend:
    """Return the connection Django's ``send_mail`` would use for these arguments."""
    mailers = getattr(mail, "mailers", None)  # Django 6.1+
    if using is not None:
        if mailers is None:
            raise TypeError("'using' needs Django 6.1 or later (settings.MAILERS).")
        if fail_silently:
            raise TypeError("'fail_silently' is not compatible with 'using'.")
        if auth_user is not None or auth_password is not None:
            raise TypeError(
                "'auth_user' and 'auth_password' are not compatible with 'using'. "
                "Set 'username' and 'password' OPTIONS in MAILERS instead."
            )
        backend: BaseEmailBackend = mailers[using]
        return backend
    options: dict[str, Any] = {}
    if fail_silently:
        options["fail_silently"] = True
    if auth_user is not None:
        options["username"] = auth_user
    if auth_password is not None:
        options["password"] = auth_password
    if mailers is not None and not options:
        backend = mailers.default
        return backend
    backend = mail.get_connection(**options)
    return backend


async def asend_mail(
    subject: str,
    message: str,
    from_email: str | None,
    recipient_list: Sequence[str],
    fail_silently: bool = False,
    auth_user: str | None = None,
    auth_password: str | None = None,
    connection: BaseEmailBackend | None = None,
    html_message: str | None = None,
    *,
    using: str | None = None,
) -> int:
    """Async twin of :func:`django.core.mail.send_mail`; return 1 if sent, else 0.

    The arguments are Django's: ``from_email`` None means
    ``DEFAULT_FROM_EMAIL``; ``using`` names a MAILERS alias (Django 6.1+);
    without ``connection`` or ``using``, the default backend is used.

    Raises what the backend raises (see ``EmailBackend.send_messages()``).
    """
    connection = connection or _connection(using, fail_silently, auth_user, auth_password)
    email = EmailMultiAlternatives(subject, message, from_email, recipient_list)
    if html_message:
        email.attach_alternative(html_message, "text/html")
    if not email.recipients():
        return 0
    return await asend_messages(connection, [email])


async def asend_mass_mail(
    datatuple: Iterable[tuple[str, str, str | None, Sequence[str]]],
    fail_silently: bool = False,
    auth_user: str | None = None,
    auth_password: str | None = None,
    connection: BaseEmailBackend | None = None,
    *,
    using: str | None = None,
) -> int:
    """Async twin of :func:`django.core.mail.send_mass_mail`; return how many were sent.

    ``datatuple`` holds ``(subject, message, from_email, recipient_list)``
    tuples; all messages go over one connection.
    """
    connection = connection or _connection(using, fail_silently, auth_user, auth_password)
    messages = [
        EmailMessage(subject, message, sender, recipients)
        for subject, message, sender, recipients in datatuple
    ]
    return await asend_messages(connection, messages)
