"""System checks (``manage.py check``) for the amsdal_mail email backend.

Each mailer that uses :class:`~django_amsdal_mail.backend.EmailBackend`
(``EMAIL_BACKEND``, or each MAILERS alias on Django 6.1+) is resolved exactly
as the backend resolves it, and every problem is reported:

* ``amsdal_mail.E001`` -- ``use_tls`` and ``use_ssl`` both true;
* ``amsdal_mail.E002`` -- an unknown amsdal_mail backend name;
* ``amsdal_mail.E003`` -- a value that is not a boolean for ``use_tls`` / ``use_ssl``;
* ``amsdal_mail.E004`` -- a port that is not a number from 1 to 65535;
* ``amsdal_mail.E005`` -- another invalid value (such as a negative timeout);
* ``amsdal_mail.E006`` -- a MAILERS ``smtp`` mailer without a host;
* ``amsdal_mail.E007`` -- an unknown MAILERS option;
* ``amsdal_mail.E008`` -- settings amsdal_mail refuses (such as a password over an
  unencrypted connection to another host);
* ``amsdal_mail.W001`` -- an ASGI project (``ASGI_APPLICATION`` set) sending over
  SMTP without aiosmtplib, which async sending needs;
* ``amsdal_mail.W002`` -- a key file (``EMAIL_SSL_KEYFILE``, ``ssl_keyfile``) without
  its certificate: accepted, as Django accepts it, but ignored;
* ``amsdal_mail.W003`` -- a password configured for ``smtp.office365.com`` or
  ``smtp.gmail.com``, which are retiring password logins for SMTP: the hint says
  how to switch to ``oauth2_token`` with ``amsdal_mail.oauth``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator, Sequence
from typing import Any, Final

import django
from django.apps import AppConfig
from django.conf import settings
from django.core import checks
from django.utils.module_loading import import_string

from amsdal_mail.backends.smtp import SMTPBackend

from .settings import (
    BACKEND_OPTION,
    E_UNKNOWN_OPTION,
    OPTIONS,
    email_setting,
    inspect_mailer,
)

__all__ = ["W_ASYNC_WITHOUT_AIOSMTPLIB", "check_mail_settings"]

W_ASYNC_WITHOUT_AIOSMTPLIB: Final = "amsdal_mail.W001"
_DJANGO_SMTP_BACKEND: Final = "django.core.mail.backends.smtp.EmailBackend"
_KNOWN_OPTIONS: Final = frozenset({*OPTIONS, BACKEND_OPTION, "fail_silently"})


def check_mail_settings(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """Return an error or a warning for each problem in the settings of the amsdal_mail backend."""
    messages: list[checks.CheckMessage] = []
    smtp_used = False
    for alias, options, unknown in _our_mailers():
        if unknown:
            names = ", ".join(repr(name) for name in unknown)
            messages.append(
                checks.Error(
                    f"MAILERS[{alias!r}]: Unknown options {names}.",
                    hint=f"The amsdal_mail backend accepts {sorted(_KNOWN_OPTIONS)}.",
                    id=E_UNKNOWN_OPTION,
                )
            )
        resolved, problems = inspect_mailer(options, alias=alias)
        messages.extend(
            (checks.Error if p.is_error else checks.Warning)(p.message, hint=p.hint, id=p.id)
            for p in problems
        )
        smtp_used = smtp_used or (
            resolved is not None and issubclass(resolved.backend_class, SMTPBackend)
        )
    if smtp_used and getattr(settings, "ASGI_APPLICATION", None) and not _has_aiosmtplib():
        messages.append(
            checks.Warning(
                "The project runs under ASGI (ASGI_APPLICATION is set), and asynchronous "
                "sending (asend_mail, EmailBackend.asend_messages) over SMTP needs aiosmtplib, "
                "which is not installed.",
                hint="pip install 'amsdal-mail[smtp]'",
                id=W_ASYNC_WITHOUT_AIOSMTPLIB,
            )
        )
    return messages


def _has_aiosmtplib() -> bool:
    try:
        return importlib.util.find_spec("aiosmtplib") is not None
    except ValueError:  # a module object without a spec stands in for it
        return False


def _our_mailers() -> Iterator[tuple[str | None, dict[str, Any], list[str]]]:
    """Yield ``(alias, options, unknown option names)`` for each mailer using our backend."""
    mailers: dict[str, Any] | None = getattr(settings, "MAILERS", None)
    if django.VERSION >= (6, 1) and mailers is not None:
        for alias, config in mailers.items():
            if not _is_ours(config.get("BACKEND", _DJANGO_SMTP_BACKEND)):
                continue
            options = dict(config.get("OPTIONS", {}))
            unknown = [name for name in options if name not in _KNOWN_OPTIONS]
            known = {k: v for k, v in options.items() if k in _KNOWN_OPTIONS}
            known.pop("fail_silently", None)
            yield alias, known, unknown
        return
    if _is_ours(email_setting("EMAIL_BACKEND")):
        yield None, {}, []


def _is_ours(path: Any) -> bool:
    from .backend import EmailBackend

    try:
        backend_class = import_string(path) if isinstance(path, str) else path
    except ImportError:
        return False
    return isinstance(backend_class, type) and issubclass(backend_class, EmailBackend)
