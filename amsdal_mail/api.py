"""The functions most code needs: :func:`get_connection`, :func:`send_mail`, :func:`asend_mail`."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any, Final, cast

from .backends.base import BaseBackend
from .config import ENV_PREFIX
from .exceptions import ConfigurationError, UnknownBackendError
from .message import EmailMessage
from .status import SendStatus

__all__ = [
    "BACKENDS",
    "BACKEND_METHODS",
    "asend_mail",
    "find_backend",
    "get_connection",
    "load_backend",
    "register_backend",
    "send_mail",
]

#: Short backend names and the dotted paths they stand for.
BACKENDS: dict[str, str] = {
    "smtp": "amsdal_mail.backends.smtp.SMTPBackend",
    "console": "amsdal_mail.backends.console.ConsoleBackend",
    "dummy": "amsdal_mail.backends.dummy.DummyBackend",
    "locmem": "amsdal_mail.backends.locmem.LocmemBackend",
    "file": "amsdal_mail.backends.filebased.FileBackend",
}


#: The methods a backend class must have (as :class:`BaseBackend` does) to be used.
BACKEND_METHODS: Final = ("send_messages", "asend_messages", "open", "close", "aopen", "aclose")


def _not_a_backend(cls: object) -> str | None:
    """Return why ``cls`` is not a backend class, or None if it is one (duck typing)."""
    if not isinstance(cls, type):
        return f"is a {type(cls).__name__}, not a class"
    missing = [name for name in BACKEND_METHODS if not callable(getattr(cls, name, None))]
    if missing:
        return f"lacks the backend method(s) {', '.join(missing)}"
    return None


def _methods_hint() -> str:
    return (
        f"a backend class has the methods {', '.join(BACKEND_METHODS)}; "
        "subclass amsdal_mail.BaseBackend to get them"
    )


def register_backend(name: str, backend: type[Any] | str) -> None:
    """Make ``name`` usable with :func:`get_connection` for ``backend``.

    ``backend`` is a backend class (a :class:`BaseBackend` subclass, or any
    class with its methods) or its dotted path. A class is recorded by its
    dotted path, so it must be defined at module level.

    Raises:
        ConfigurationError: a bad name, a class without the backend methods,
            or one that cannot be found again by its dotted path.
    """
    if not name or "." in name:
        raise ConfigurationError(f"a backend short name must be non-empty without dots: {name!r}")
    if not isinstance(backend, str):
        reason = _not_a_backend(backend)
        if reason is not None:
            raise ConfigurationError(f"{backend!r} {reason}; {_methods_hint()}")
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


def find_backend(name: str, source: str | None = None) -> type[BaseBackend] | str:
    """Return the backend class ``name`` stands for, or a sentence saying why there is none.

    ``name`` is a short name (see :data:`BACKENDS`) or a dotted path; a
    class is accepted when it has the backend methods (:data:`BACKEND_METHODS`),
    as Django accepts any class for ``EMAIL_BACKEND``. ``source`` says where
    the name came from (such as ``AMSDAL_EMAIL_BACKEND``), for the sentence.
    """
    where = f" (from {source})" if source else ""
    path = BACKENDS.get(name, name)
    module_name, _, attr = path.rpartition(".")
    if not module_name:
        return f"Unknown amsdal_mail backend {name!r}{where}"
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        return f"Cannot load amsdal_mail backend {name!r}{where}: {exc}"
    reason = _not_a_backend(cls)
    if reason is not None:
        return f"amsdal_mail backend {name!r}{where} {reason}; {_methods_hint()}"
    # Typed as the base class: a duck-typed backend has the same public methods.
    return cast("type[BaseBackend]", cls)


def load_backend(name: str, source: str | None = None) -> type[BaseBackend]:
    """Return the backend class for a short name or dotted path (see :func:`find_backend`).

    Raises:
        UnknownBackendError: no such backend; the message lists the known names.
    """
    found = find_backend(name, source)
    if isinstance(found, str):
        known = ", ".join(sorted(BACKENDS))
        raise UnknownBackendError(
            f"{found}; known backends are {known}, or give a dotted path such as "
            "'myapp.mail.MyBackend'"
        )
    return found


def get_connection(
    backend: str | None = None, fail_silently: bool = False, **kwargs: Any
) -> BaseBackend:
    """Return a backend instance.

    ``backend`` is a short name (``smtp``, ``console``, ``dummy``,
    ``locmem``, ``file``, or one added with :func:`register_backend`) or a
    dotted path to a backend class (a :class:`BaseBackend` subclass, or any
    class with the backend methods); when omitted, ``AMSDAL_EMAIL_BACKEND``,
    else ``smtp``.
    ``kwargs`` are the backend's options (for SMTP: ``host``, ``port``, ...).

    Raises:
        UnknownBackendError: the name is not known; the message lists the known ones.
        ConfigurationError: an option or environment variable is invalid.
    """
    source = None
    if not backend:
        # An empty AMSDAL_EMAIL_BACKEND counts as unset.
        backend = os.environ.get(ENV_PREFIX + "BACKEND", "").strip()
        source = ENV_PREFIX + "BACKEND" if backend else None
    cls = load_backend(backend.strip() or "smtp", source)
    return cls(fail_silently=fail_silently, **kwargs)


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
