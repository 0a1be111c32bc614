"""Messages as validated data: addresses, parts and the message itself.

No I/O happens here. :mod:`.addresses` parses and checks addresses,
:mod:`.parts` holds what a message carries (attachments, ready-made MIME
parts, alternatives), :mod:`.email` the message and its validated form.
"""

from .addresses import Address, parse_address
from .dsn import DSN
from .email import EmailMessage, Layout, ValidatedMessage
from .parts import Alternative, Attachment, RawPart, normalize_line_endings

__all__ = [
    "Address",
    "Alternative",
    "Attachment",
    "DSN",
    "EmailMessage",
    "Layout",
    "RawPart",
    "ValidatedMessage",
    "normalize_line_endings",
    "parse_address",
]
