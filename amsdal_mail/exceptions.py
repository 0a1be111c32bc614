"""Every error amsdal_mail raises, under one root.

::

    MailError
    ├── ConfigurationError (ValueError)            bad setting, env var or option
    │   └── UnknownBackendError (LookupError)      backend name not known
    ├── MissingDependencyError (ImportError)       optional extra not installed
    ├── InvalidMessageError (ValueError)           a message that must not be sent
    │   ├── InvalidAddressError                    a malformed e-mail address
    └── TransportError (OSError)                   could not talk to the server
        ├── ConnectError (ConnectionError)         refused, unreachable, 421 greeting
        ├── ServerDisconnectedError (smtplib.SMTPServerDisconnected, ConnectionError)
        ├── MailTimeoutError (TimeoutError)        a wait exceeded ``timeout``
        ├── TLSError (ssl.SSLError)                handshake or certificate failure
        ├── AuthenticationError (smtplib.SMTPAuthenticationError)
        ├── NotSupportedError (smtplib.SMTPNotSupportedError)
        ├── ProtocolError (smtplib.SMTPResponseException)   unexpected reply
        └── RecipientsRefusedError (smtplib.SMTPRecipientsRefused)

What the server refuses for a message (a recipient, the sender, the data) is
reported in :class:`~amsdal_mail.SendStatus`, not raised. Errors that carry an
SMTP reply also subclass the matching :mod:`smtplib` exception, so code written
for smtplib or Django keeps catching them; they expose ``smtp_code`` and
``smtp_error`` like smtplib's own.

Configuration errors are never swallowed by ``fail_silently``: they are
mistakes in code or deployment, not delivery problems.
"""

from __future__ import annotations

import smtplib
import ssl

__all__ = [
    "AuthenticationError",
    "ConfigurationError",
    "ConnectError",
    "InvalidAddressError",
    "InvalidMessageError",
    "MailError",
    "MailTimeoutError",
    "MissingDependencyError",
    "NotSupportedError",
    "ProtocolError",
    "RecipientsRefusedError",
    "ServerDisconnectedError",
    "TLSError",
    "TransportError",
    "UnknownBackendError",
]


class MailError(Exception):
    """Base class of every amsdal_mail error."""


class ConfigurationError(MailError, ValueError):
    """A setting, environment variable or option has an unusable value."""


class UnknownBackendError(ConfigurationError, LookupError):
    """A backend name is neither registered nor an importable dotted path."""


class MissingDependencyError(MailError, ImportError):
    """An optional dependency is needed; the message names the pip extra."""


class InvalidMessageError(MailError, ValueError):
    """A message is malformed and was not sent; the message names the field."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        #: The name of the offending field (``"to"``, ``"subject"``, ...), if any.
        self.field = field


class InvalidAddressError(InvalidMessageError):
    """An e-mail address is malformed."""

    def __init__(self, message: str, *, field: str | None = None, address: str = "") -> None:
        super().__init__(message, field=field)
        #: The address as given.
        self.address = address


class TransportError(MailError, OSError):
    """The library could not talk to the mail server as it needed to."""


class _ReplyMixin:
    """Give smtplib-style reply errors a readable ``str()``."""

    smtp_code: int
    smtp_error: bytes | str

    def __str__(self) -> str:
        text = self.smtp_error
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        return f"{self.smtp_code} {text}"


class ConnectError(TransportError, ConnectionError):
    """The connection could not be made (refused, unreachable, 421 greeting)."""


class ServerDisconnectedError(TransportError, smtplib.SMTPServerDisconnected, ConnectionError):
    """The server closed the connection unexpectedly."""


class MailTimeoutError(TransportError, TimeoutError):
    """Connecting, or waiting for a server reply, took longer than ``timeout``."""


class TLSError(TransportError, ssl.SSLError):
    """The TLS handshake failed, or the certificate was not trusted."""

    def __str__(self) -> str:
        # ssl.SSLError shows a lone argument as a tuple: "('message',)".
        if len(self.args) == 1:
            return str(self.args[0])
        return super().__str__()


class AuthenticationError(_ReplyMixin, TransportError, smtplib.SMTPAuthenticationError):
    """The server refused the username/password (``smtp_code`` is usually 535)."""


class NotSupportedError(TransportError, smtplib.SMTPNotSupportedError):
    """The server lacks an extension that the settings require (STARTTLS, AUTH)."""


class ProtocolError(_ReplyMixin, TransportError, smtplib.SMTPResponseException):
    """The server answered a connection-level command with an unexpected reply."""


class RecipientsRefusedError(TransportError, smtplib.SMTPRecipientsRefused):
    """Every recipient of a message was refused.

    Raised by the Django backend, where Django's contract requires it; the
    library itself reports refusals in the status. ``recipients`` maps each
    address to its ``(code, message)`` pair, as in :mod:`smtplib`.
    """
