"""Convert a Django ``EmailMessage`` into an :class:`amsdal_mail.EmailMessage`.

Every feature of Django's message survives: subject, body, from, to, cc,
bcc, reply_to, extra headers, ``encoding``, lazy translation strings,
``content_subtype``, ``EmailMultiAlternatives`` alternatives, attachments
given as tuples / ``EmailAttachment`` / ready-made MIME parts (``MIMEBase``,
``MIMEPart``), ``attach_file`` and, on Django 5.2, ``mixed_subtype``. The
result is laid out as Django lays out its own (``layout="django"``), and bare
local names such as ``root`` are accepted, as Django accepts them.

Two attributes a Django message may carry for amsdal_mail (Django has no
such options): ``message.dsn = amsdal_mail.DSN(...)`` asks for delivery
status notifications for that message, and ``message.unsubscribe =
"https://..."`` (or ``"mailto:..."``, or a list) adds ``List-Unsubscribe``
and, for https, ``List-Unsubscribe-Post`` (RFC 8058). A ``List-Unsubscribe``
given in the message's own ``headers`` is sent as given. ``message.return_path
= "bounces@example.com"`` sets that message's envelope sender (MAIL FROM), where
bounces go, over the backend's ``return_path``.
"""

from __future__ import annotations

import email.message
import email.policy
import mimetypes
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from email.generator import BytesGenerator
from email.mime.base import MIMEBase
from email.utils import format_datetime
from io import BytesIO
from typing import Any, Final

import django
from django.conf import settings
from django.core.mail import EmailMessage as DjangoEmailMessage
from django.utils.encoding import force_bytes, force_str
from django.utils.timezone import get_current_timezone

from amsdal_mail import Alternative, Attachment, EmailMessage, RawPart

__all__ = ["convert_message"]

#: Django 6.0 builds messages with Python's modern email API (``email.policy``).
_MODERN: Final = django.VERSION >= (6, 0)
#: Django 6.1 refuses a "Bcc" extra header.
_NO_BCC_HEADER: Final = django.VERSION >= (6, 1)
_DEFAULT_MIMETYPE: Final = "application/octet-stream"
# Django applies these extra headers only when spelled exactly so, and drops
# any other spelling of them (EmailMessage.message()).
_OVERRIDES: Final = {"from": "From", "to": "To", "cc": "Cc", "reply-to": "Reply-To"}


def convert_message(message: DjangoEmailMessage) -> EmailMessage:
    """Return the amsdal_mail message that carries everything ``message`` does.

    Raises:
        ValueError: a malformed address, a header with a line break, or
            anything else Django itself refuses (an
            :class:`amsdal_mail.InvalidMessageError` for what amsdal_mail
            refuses).
        AttributeError: on Django 6, ``mixed_subtype`` or
            ``alternative_subtype`` set on the message, which Django 6 refuses.
    """
    encoding = message.encoding or settings.DEFAULT_CHARSET
    alternatives = getattr(message, "alternatives", None) or []
    return EmailMessage(
        subject=force_str(message.subject),
        body=force_str(message.body or ""),
        from_email=force_str(message.from_email),
        to=_addresses(message.to),
        cc=_addresses(message.cc),
        bcc=_addresses(message.bcc),
        reply_to=_addresses(message.reply_to),
        attachments=[_attachment(item, encoding) for item in message.attachments],
        headers=_headers(message.extra_headers),
        alternatives=[
            _alternative(content, mimetype, encoding) for content, mimetype in alternatives
        ],
        content_subtype=message.content_subtype,
        mixed_subtype=_mixed_subtype(message, bool(alternatives)),
        encoding=encoding,
        allow_local_addresses=True,
        layout="django",
        dsn=getattr(message, "dsn", None),
        unsubscribe=getattr(message, "unsubscribe", None),
        return_path=getattr(message, "return_path", None),
    )


def _addresses(values: Iterable[Any]) -> list[str]:
    return [force_str(value) for value in values if value]


def _headers(extra: Mapping[Any, Any]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for key, value in extra.items():
        name = force_str(key)
        lower = name.lower()
        if lower in _OVERRIDES and name != _OVERRIDES[lower]:
            continue
        if lower == "bcc" and _NO_BCC_HEADER:
            raise ValueError(
                'Bcc is not a valid email header. Use the "bcc" argument to specify blind '
                "carbon copy recipients."
            )
        headers[name] = _header_value(value)
    if not any(name.lower() == "date" for name in headers):
        headers["Date"] = _date()
    return headers


def _header_value(value: Any) -> str:
    if isinstance(value, datetime):
        return format_datetime(value)
    return force_str(value)


def _date() -> str:
    """Return the Date header as Django writes it (local time per EMAIL_USE_LOCALTIME)."""
    zone = get_current_timezone() if settings.EMAIL_USE_LOCALTIME else UTC
    return format_datetime(datetime.now(zone))


def _mixed_subtype(message: DjangoEmailMessage, has_alternatives: bool) -> str:
    if _MODERN:
        # Django 6 dropped these undocumented attributes and refuses them.
        if message.attachments and hasattr(message, "mixed_subtype"):
            raise AttributeError(
                "EmailMessage no longer supports the undocumented `mixed_subtype` attribute"
            )
        if has_alternatives and hasattr(message, "alternative_subtype"):
            raise AttributeError(
                "EmailMultiAlternatives no longer supports the undocumented "
                "`alternative_subtype` attribute"
            )
        return "mixed"
    alternative_subtype = getattr(message, "alternative_subtype", "alternative")
    if has_alternatives and alternative_subtype != "alternative":
        raise ValueError(
            f"alternative_subtype={alternative_subtype!r} is not supported by "
            "django_amsdal_mail; the alternatives are always sent as multipart/alternative"
        )
    return str(getattr(message, "mixed_subtype", "mixed"))


def _alternative(content: Any, mimetype: Any, encoding: str) -> Alternative:
    mimetype = force_str(mimetype)
    if mimetype.split("/", 1)[0] == "text":
        if isinstance(content, bytes):
            content = content.decode()
        return Alternative(force_str(content), mimetype)
    return Alternative(force_bytes(content, encoding=encoding), mimetype)


def _attachment(item: Any, encoding: str) -> Attachment | RawPart:
    if isinstance(item, email.message.Message):
        # A ready-made MIME part (MIMEBase on Django 5.2, MIMEPart on Django 6).
        return RawPart(_flatten(item))
    filename, content, mimetype = item
    if filename is not None:
        filename = force_str(filename)
    mimetype = force_str(
        mimetype or (filename and mimetypes.guess_type(filename)[0]) or _DEFAULT_MIMETYPE
    )
    maintype, subtype = mimetype.split("/", 1)
    if maintype == "text" and isinstance(content, bytes):
        # As Django's attach(): text that is not UTF-8 is sent as binary.
        try:
            content = content.decode()
        except UnicodeDecodeError:
            mimetype, maintype = _DEFAULT_MIMETYPE, "application"
    if maintype == "message":
        return RawPart(_flatten(_message_part(filename, content, subtype)))
    if maintype == "text":
        content = force_str(content)
    elif not isinstance(content, (bytes, bytearray, memoryview)):
        content = force_bytes(content)
    if filename is None and not _MODERN:
        # Django 5.2 writes no Content-Disposition for an unnamed attachment.
        return RawPart(_flatten(_legacy_unnamed_part(content, mimetype, encoding)))
    return Attachment(filename, content, mimetype)


def _message_part(filename: str | None, content: Any, subtype: str) -> email.message.Message:
    """Return a ``message/*`` attachment built as Django builds it.

    RFC 2046 forbids encoding a ``message/rfc822`` part, so it is carried as a
    MIME part rather than as a (base64) :class:`amsdal_mail.Attachment`.
    """
    policy: Any = email.policy.SMTP if _MODERN else email.policy.compat32
    inner: email.message.Message
    if isinstance(content, DjangoEmailMessage):
        inner = content.message(policy=policy) if _MODERN else content.message()
    elif isinstance(content, email.message.Message):
        inner = content
    else:
        inner = email.message_from_bytes(force_bytes(content), policy=policy)
    if _MODERN:
        part = email.message.EmailMessage(policy=policy)
        part.set_content(inner, subtype=subtype, filename=filename)
        if "Content-Disposition" not in part:
            part["Content-Disposition"] = "attachment"
        return part
    from django.core.mail.message import SafeMIMEMessage

    legacy = SafeMIMEMessage(inner, subtype)
    if filename:
        legacy.add_header("Content-Disposition", "attachment", filename=_legacy_filename(filename))
    return legacy


def _legacy_filename(filename: str) -> str | tuple[str, str, str]:
    return filename if filename.isascii() else ("utf-8", "", filename)


def _legacy_unnamed_part(
    content: str | bytes, mimetype: str, encoding: str
) -> email.message.Message:
    """Return an unnamed attachment part as Django 5.2 builds it."""
    from email import encoders

    from django.core.mail.message import SafeMIMEText

    maintype, subtype = mimetype.split("/", 1)
    if maintype == "text":
        return SafeMIMEText(force_str(content), subtype, encoding)
    part = MIMEBase(maintype, subtype)
    part.set_payload(content)
    encoders.encode_base64(part)
    return part


def _flatten(part: email.message.Message) -> bytes:
    """Return ``part`` as bytes, written as Django's own message would write it."""
    # Django 6 writes the whole message with email.policy.SMTP, subparts
    # included; Django 5.2 with each part's own (compat32) policy.
    policy = email.policy.SMTP if _MODERN else part.policy.clone(linesep="\r\n")
    buffer = BytesIO()
    BytesGenerator(buffer, mangle_from_=False, policy=policy).flatten(part)
    return buffer.getvalue()
