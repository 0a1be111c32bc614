"""amsdal_mail: send e-mail over SMTP, sync or async, with a status for every recipient.

Everything public is importable from here::

    from amsdal_mail import send_mail, get_connection, EmailMessage, Attachment
"""

from .api import asend_mail, get_connection, register_backend, send_mail
from .backends.base import BaseBackend
from .exceptions import (
    AuthenticationError,
    ConfigurationError,
    ConnectError,
    InvalidAddressError,
    InvalidMessageError,
    MailError,
    MailTimeoutError,
    MissingDependencyError,
    NotSupportedError,
    ProtocolError,
    RecipientsRefusedError,
    ServerDisconnectedError,
    TLSError,
    TransportError,
    UnknownBackendError,
)
from .message import DSN, Alternative, Attachment, EmailMessage, RawPart
from .status import RecipientStatus, SendStatus

__version__ = "0.1.0"

__all__ = [
    "Alternative",
    "Attachment",
    "AuthenticationError",
    "BaseBackend",
    "ConfigurationError",
    "ConnectError",
    "DSN",
    "EmailMessage",
    "InvalidAddressError",
    "InvalidMessageError",
    "MailError",
    "MailTimeoutError",
    "MissingDependencyError",
    "NotSupportedError",
    "ProtocolError",
    "RawPart",
    "RecipientStatus",
    "RecipientsRefusedError",
    "SendStatus",
    "ServerDisconnectedError",
    "TLSError",
    "TransportError",
    "UnknownBackendError",
    "asend_mail",
    "get_connection",
    "register_backend",
    "send_mail",
]
