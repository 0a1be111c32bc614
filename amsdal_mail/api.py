"""The functions most code needs: :func:`get_connection`, :func:`send_mail`, :func:`asend_mail`."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any

from .backends.base import BaseBackend
from .config import ENV_PREFIX
from .exceptions import ConfigurationError, UnknownBackendError
from .message import EmailMessage
from .status import SendStatus

__all__ = ["BACKENDS", "get_connection", "register_backend", "send_mail", "asend_mail"]

#: Short backend names and the dotted paths they stand for.
BACKENDS: dict[str, str] = {
    "smtp": "amsdal_mail.backends.smtp.SMTPBackend",
    "console": "amsdal_mail.backends.console.ConsoleBackend",
    "dummy": "amsdal_mail.backends.dummy.DummyBackend",
    "locmem": "amsdal_mail.backends.locmem.LocmemBackend",
    "file": "amsdal_mail.backends.filebased.FileBackend",
}


def register_backend(name: str, backend: type[BaseBackend] | str) -> None:
    """Make ``name`` usable with :func:`get_connection` for ``backend``.

    ``backend`` is a :class:`BaseBackend` subclass or its dotted path. A class
    is recorded by its dotted path, so it must be defined at module level.

    Raises:
        ConfigurationError: a bad name, a class that is not a BaseBackend
            subclass, or one that cannot be found again by its dotted path.
    """
    if not name or "." in name:
        raise ConfigurationError(f"a backend short name must be non-empty without dots: {name!r}")
    if isinstance(backend, type):
        if not issubclass(backend, BaseBackend):
            raise ConfigurationError(f"{backend!r} is not an amsdal_mail BaseBackend subclass")
        path = f"{backend.__module__}.{backend.__qualname__}"
        module = sys.modules.get(backend.__module__)
        if getattr(module, backend.__qualname__, None) is not backend:
            # A class defined in a function or nested in a class would only
            # fail later, in get_connection(); say so now.
            raise ConfigurationError(
                f"backend class {backend.__qualname__!r} cannot be loaded by its dotted path "
                f"{path!r}; define it at module level"
            )
        backend = path
    BACKENDS[name] = backend


def _load_backend(name: str) -> type[BaseBackend]:
    path = BACKENDS.get(name, name)
    known = ", ".join(sorted(BACKENDS))
    module_name, _, attr = path.rpartition(".")
    if not module_name:
        raise UnknownBackendError(
            f"unknown email backend {name!r}; known backends are {known}, "
            "or give a dotted path such as 'myapp.mail.MyBackend'"
        )
    try:
        module = importlib.import_module(module_name)
        cls = getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise UnknownBackendError(
            f"cannot load email backend {name!r} ({exc}); known backends are {known}, "
            "or give a dotted path to a BaseBackend subclass"
        ) from exc
    if not (isinstance(cls, type) and issubclass(cls, BaseBackend)):
        raise UnknownBackendError(f"email backend {name!r} is not a BaseBackend subclass")
    return cls


def get_connection(
    backend: str | None = None, fail_silently: bool = False, **kwargs: Any
) -> BaseBackend:
    """Return a backend instance.

    ``backend`` is a short name (``smtp``, ``console``, ``dummy``,
    ``locmem``, ``file``, or one added with :func:`register_backend`) or a
    dotted path; when omitted, ``AMSDAL_EMAIL_BACKEND``, else ``smtp``.
    ``kwargs`` are the backend's options (for SMTP: ``host``, ``port``, ...).

    Raises:
        UnknownBackendError: the name is not known; the message lists the known ones.
        ConfigurationError: an option or environment variable is invalid.
    """
    name = backend or os.environ.get(ENV_PREFIX + "BACKEND") or "smtp"
    return _load_backend(name.strip())(fail_silently=fail_silently, **kwargs)


def _build_message(
    subject: str,
    message: str,
    from_email: str,
    recipient_list: str | Sequence[str],
    html_message: str | None,
    kwargs: dict[str, Any],
) -> EmailMessage:
    return EmailMessage(
        subject=subject,
        body=message,
        from_email=from_email,
        to=recipient_list,
        html_body=html_message,
        **kwargs,
    )


def send_mail(
    subject: str,
    message: str,
    from_email: str,
    recipient_list: str | Sequence[str],
    fail_silently: bool = False,
    html_message: str | None = None,
    connection: BaseBackend | None = None,
    **kwargs: Any,
) -> SendStatus:
    """Send one message and return its status.

    ``recipient_list`` is a list of addresses or one address. Extra keyword
    arguments go to :class:`EmailMessage` (``cc``, ``bcc``, ``reply_to``,
    ``attachments``, ``headers``, ...). Without ``connection``, one is made
    with :func:`get_connection`.
    """
    msg = _build_message(subject, message, from_email, recipient_list, html_message, kwargs)
    conn = connection or get_connection(fail_silently=fail_silently)
    return conn.send_messages([msg])


async def asend_mail(
    subject: str,
    message: str,
    from_email: str,
    recipient_list: str | Sequence[str],
    fail_silently: bool = False,
    html_message: str | None = None,
    connection: BaseBackend | None = None,
    **kwargs: Any,
) -> SendStatus:
    """Async twin of :func:`send_mail`."""
    msg = _build_message(subject, message, from_email, recipient_list, html_message, kwargs)
    conn = connection or get_connection(fail_silently=fail_silently)
    return await conn.asend_messages([msg])
