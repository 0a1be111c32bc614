"""Render a validated message to RFC 5322 bytes.

The renderer writes MIME directly instead of going through
``email.message``: it is several times faster, it can hand large
attachments to the transport as separate chunks instead of copying them into
one buffer, and every line it produces is CRLF-terminated (but a text part's
last line, which ends where its text ends) and at most 998 octets. Output is
what ``email.message_from_bytes`` parses back to an equal message (the tests
check this for generated messages). :mod:`.headers` writes the header
section, :mod:`.bodies` the parts.

:func:`render_chunks` returns a list of byte chunks that, joined, are the
message; no CRLF is split between two chunks, so the transport can dot-stuff
and send them one by one. :func:`render` joins them.
"""

from __future__ import annotations

import secrets
import time
from email.utils import formatdate

from ..message import EmailMessage, ValidatedMessage
from .bodies import Base64Slice, body_parts, materialized
from .headers import header_lines

__all__ = ["Base64Slice", "make_message_id", "render", "render_chunks"]

_date_cache: tuple[int, str] = (-1, "")


def _current_date() -> str:
    """Return ``formatdate(localtime=True)``, made once per second rather than per message."""
    global _date_cache
    now = time.time()
    second, text = _date_cache
    if int(now) != second:
        text = formatdate(now, localtime=True)
        _date_cache = (int(now), text)
    return text


def make_message_id(domain: str | None = None) -> str:
    """Return a new, globally unique ``<...@domain>`` Message-ID (no DNS look-up)."""
    stamp = int(time.time() * 1000)
    return f"<{stamp}.{secrets.token_hex(10)}@{domain or 'localhost'}>"


def render_chunks(
    message: ValidatedMessage | EmailMessage,
    *,
    message_id: str | None = None,
    date: str | None = None,
) -> list[bytes]:
    """Return the message as RFC 5322 byte chunks; joined, they are the message.

    Pass the :class:`~amsdal_mail.message.ValidatedMessage` a send validated
    (an :class:`~amsdal_mail.EmailMessage` is validated here). No CRLF is
    split between chunks; the last one ends where the message ends (a text
    body without a final line break ends without one). ``message_id`` and
    ``date`` default to a new unique Message-ID and the current local time.
    Bcc never appears in the headers.
    """
    return materialized(_chunks(message, message_id, date))


def lazy_chunks(
    message: ValidatedMessage | EmailMessage,
    *,
    message_id: str | None = None,
    date: str | None = None,
) -> list[bytes]:
    """:func:`render_chunks`, a large attachment's chunks :class:`Base64Slice` values.

    For a transport that writes each chunk as it goes (``bytes(chunk)``):
    the encoded attachment is never held whole.
    """
    return _chunks(message, message_id, date)


def _chunks(
    message: ValidatedMessage | EmailMessage, message_id: str | None, date: str | None
) -> list[bytes]:
    msg = message.validate() if isinstance(message, EmailMessage) else message
    if message_id is None:
        message_id = make_message_id(msg.from_address.ascii_domain or None)
    if date is None:
        date = _current_date()
    head = "\r\n".join(header_lines(msg, message_id, date)) + "\r\n"
    return [head.encode("utf-8"), *body_parts(msg)]


def render(
    message: ValidatedMessage | EmailMessage,
    *,
    message_id: str | None = None,
    date: str | None = None,
) -> bytes:
    """Return the whole message as RFC 5322 bytes with CRLF line endings."""
    return b"".join(render_chunks(message, message_id=message_id, date=date))
