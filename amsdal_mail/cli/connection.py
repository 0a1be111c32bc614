"""The connection flags of ``amsdal-mail``, and the SMTP settings they make.

The flags follow the settings table: ``--host``, ``--port``, ``--starttls``
(``use_tls``), ``--ssl`` (``use_ssl``), ``--user`` (``username``),
``--timeout``, ``--ssl-certfile`` / ``--ssl-keyfile``, plus ``--cafile`` (a
CA bundle to trust, as ``SSL_CERT_FILE`` does). A flag given wins over the
``AMSDAL_EMAIL_*`` environment, which wins over the defaults, as
:func:`amsdal_mail.config.resolve_smtp_settings` applies it. The password
is never a flag: it comes from ``AMSDAL_EMAIL_PASSWORD``, else a prompt on
the terminal.
"""

from __future__ import annotations

import argparse
import getpass
import ssl
import sys
from collections.abc import Callable
from typing import Any

from ..backends.smtp import SMTPBackend
from ..config import SMTPSettings, resolve_smtp_settings
from ..exceptions import ConfigurationError

__all__ = ["PasswordPrompt", "add_connection_flags", "backend_from_args", "terminal_prompt"]

#: Asks for the password of ``username`` at ``host:port``; returns it.
PasswordPrompt = Callable[[SMTPSettings], str]


def add_connection_flags(parser: argparse.ArgumentParser) -> None:
    """Add the connection flags to ``parser``."""
    group = parser.add_argument_group(
        "connection",
        "Flags win over the AMSDAL_EMAIL_* environment variables. The password comes from "
        "AMSDAL_EMAIL_PASSWORD, else a prompt on the terminal (never a flag).",
    )
    group.add_argument("--host", help="SMTP server (AMSDAL_EMAIL_HOST; default localhost)")
    group.add_argument(
        "--port",
        help="port (AMSDAL_EMAIL_PORT; default 465 with --ssl, 587 with --starttls, else 25)",
    )
    tls = group.add_mutually_exclusive_group()
    tls.add_argument(
        "--starttls",
        action="store_true",
        default=None,
        help="upgrade with STARTTLS, required (AMSDAL_EMAIL_USE_TLS; usually port 587)",
    )
    tls.add_argument(
        "--ssl",
        action="store_true",
        default=None,
        help="implicit TLS from the first byte (AMSDAL_EMAIL_USE_SSL; usually port 465)",
    )
    group.add_argument("--user", help="login name (AMSDAL_EMAIL_USER)")
    group.add_argument(
        "--timeout", help="seconds for connecting and each reply (AMSDAL_EMAIL_TIMEOUT; 30)"
    )
    group.add_argument(
        "--cafile", help="trust the CA certificates in this PEM file (like SSL_CERT_FILE)"
    )
    group.add_argument("--ssl-certfile", help="client certificate (AMSDAL_EMAIL_SSL_CERTFILE)")
    group.add_argument("--ssl-keyfile", help="its private key (AMSDAL_EMAIL_SSL_KEYFILE)")


def terminal_prompt(settings: SMTPSettings) -> str:
    """Ask for the password on the terminal (not echoed).

    Raises:
        ConfigurationError: standard input is not a terminal (there is no
            one to ask): the password must come from ``AMSDAL_EMAIL_PASSWORD``.
    """
    if not sys.stdin.isatty():
        raise ConfigurationError(
            f"a login name is set ({settings.username!r}) but no password: set "
            "AMSDAL_EMAIL_PASSWORD (standard input is not a terminal to ask on)"
        )
    return getpass.getpass(f"Password for {settings.username} at {settings.host}:{settings.port}: ")


def _flag_options(args: argparse.Namespace) -> dict[str, Any]:
    """Return the SMTP options the flags give (the flags not given are left out)."""
    names = {
        "host": "host",
        "port": "port",
        "starttls": "use_tls",
        "ssl": "use_ssl",
        "user": "username",
        "timeout": "timeout",
        "ssl_certfile": "ssl_certfile",
        "ssl_keyfile": "ssl_keyfile",
    }
    options = {
        option: getattr(args, flag)
        for flag, option in names.items()
        if getattr(args, flag, None) is not None
    }
    labels = {"use_tls": "--starttls", "use_ssl": "--ssl", "username": "--user"}
    for option in list(options):
        if options[option] == "" and option not in ("use_tls", "use_ssl"):
            raise ConfigurationError(f"--{labels.get(option, option).lstrip('-')} is empty")
    return options


def _context(args: argparse.Namespace, settings: SMTPSettings) -> ssl.SSLContext | None:
    """Return a verifying context trusting ``--cafile``, or None without the flag."""
    cafile = getattr(args, "cafile", None)
    if not cafile:
        return None
    try:
        context = ssl.create_default_context(cafile=cafile)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(f"--cafile {cafile!r} cannot be loaded: {exc}") from exc
    if settings.ssl_certfile:
        try:
            context.load_cert_chain(settings.ssl_certfile, settings.ssl_keyfile)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigurationError(
                f"cannot load client certificate ssl_certfile={settings.ssl_certfile!r}: {exc}"
            ) from exc
    return context


def backend_from_args(
    args: argparse.Namespace, *, prompt: PasswordPrompt = terminal_prompt
) -> SMTPBackend:
    """Return the SMTP backend the flags and the environment describe (no I/O yet).

    The password is asked for with ``prompt`` when a login name is set and
    neither ``AMSDAL_EMAIL_PASSWORD`` nor an OAuth2 token provider gives a
    secret. The backend applies every rule of the library (a password is not
    sent unencrypted to a remote host, DKIM is complete, ...).

    Raises:
        ConfigurationError: a flag or variable has an unusable value.
    """
    settings = resolve_smtp_settings(_flag_options(args))
    options = settings.as_options()
    context = _context(args, settings)
    if context is not None:
        options["ssl_context"] = context
    if settings.username and not settings.password and settings.oauth2_token is None:
        options["password"] = prompt(settings)
    return SMTPBackend(**options)
