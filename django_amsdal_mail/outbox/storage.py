"""The stored form of a message: an :class:`amsdal_mail.EmailMessage` as JSON.

:func:`dump` and :func:`load` round-trip every field exactly: bytes (binary
attachments, binary alternatives, :class:`~amsdal_mail.RawPart` data) are
base64, text stays text, header order and spelling are kept (a list of
pairs, so no JSON reader may reorder them). The ``"v"`` key versions the form.

:func:`for_attempt` builds what one attempt sends: the same message with the
original ``To`` and ``Cc`` given as header overrides (the renderer lets a
custom ``To``/``Cc`` header replace its own) and only the recipients still
due as its envelope (all in ``bcc``, which never appears in the headers), so
every attempt sends the same headers and RCPT goes only to those recipients.
Two limits, both of the renderer: MIME boundaries are drawn afresh for every
rendering (so a multipart message's boundary strings differ between
attempts), and a display name that itself begins and ends with a double
quote loses those quotes in the override (the renderer's header parser
strips them).
"""

from __future__ import annotations

import base64
import email
import json
from collections.abc import Iterable, Sequence
from typing import Any, Final

from django.core.mail import EmailMessage as DjangoEmailMessage
from django.core.mail import EmailMultiAlternatives

from amsdal_mail import DSN, Alternative, Attachment, EmailMessage, RawPart

__all__ = [
    "VERSION",
    "address_header",
    "dump",
    "dumps",
    "for_attempt",
    "load",
    "loads",
    "to_django",
]

#: The version of the stored form written by :func:`dump`.
VERSION: Final = 1


def _blob(value: str | bytes) -> dict[str, str]:
    """Return a str as text and bytes as base64."""
    if isinstance(value, str):
        return {"text": value}
    return {"b64": base64.b64encode(value).decode()}


def _unblob(stored: dict[str, str]) -> str | bytes:
    if "text" in stored:
        return stored["text"]
    return base64.b64decode(stored["b64"])


def _dump_part(part: Attachment | RawPart) -> dict[str, Any]:
    if isinstance(part, RawPart):
        return {"raw": base64.b64encode(part.data).decode()}
    return {
        "filename": part.filename,
        "content": _blob(part.content),
        "mimetype": part.mimetype,
        "content_id": part.content_id,
    }


def _load_part(stored: dict[str, Any]) -> Attachment | RawPart:
    if "raw" in stored:
        return RawPart(base64.b64decode(stored["raw"]))
    return Attachment(
        stored["filename"], _unblob(stored["content"]), stored["mimetype"], stored["content_id"]
    )


def _dump_dsn(dsn: DSN | None) -> dict[str, Any] | None:
    if dsn is None:
        return None
    return {"notify": list(dsn.notify_words) or None, "ret": dsn.ret, "envid": dsn.envid}


def _load_dsn(stored: dict[str, Any] | None) -> DSN | None:
    if stored is None:
        return None
    return DSN(notify=stored["notify"], ret=stored["ret"], envid=stored["envid"])


def _unsubscribe(value: str | Sequence[str] | None) -> str | list[str] | None:
    return value if value is None or isinstance(value, str) else list(value)


def dump(message: EmailMessage) -> dict[str, Any]:
    """Return ``message`` as a JSON-ready dict (every field)."""
    return {
        "v": VERSION,
        "subject": message.subject,
        "body": message.body,
        "html_body": message.html_body,
        "from_email": message.from_email,
        "to": list(message.to),
        "cc": list(message.cc),
        "bcc": list(message.bcc),
        "reply_to": list(message.reply_to),
        "headers": [[name, value] for name, value in message.headers.items()],
        "attachments": [_dump_part(part) for part in message.attachments],
        "alternatives": [
            {"content": _blob(alt.content), "mimetype": alt.mimetype}
            for alt in message.alternatives
        ],
        "content_subtype": message.content_subtype,
        "mixed_subtype": message.mixed_subtype,
        "layout": message.layout,
        "encoding": message.encoding,
        "allow_local_addresses": message.allow_local_addresses,
        "dsn": _dump_dsn(message.dsn),
        "unsubscribe": _unsubscribe(message.unsubscribe),
        "return_path": message.return_path,
    }


def load(stored: dict[str, Any]) -> EmailMessage:
    """Return the message :func:`dump` stored.

    Raises:
        ValueError: an unknown version of the stored form.
    """
    if stored.get("v") != VERSION:
        raise ValueError(f"unknown stored message version {stored.get('v')!r}")
    return EmailMessage(
        subject=stored["subject"],
        body=stored["body"],
        html_body=stored["html_body"],
        from_email=stored["from_email"],
        to=stored["to"],
        cc=stored["cc"],
        bcc=stored["bcc"],
        reply_to=stored["reply_to"],
        headers={name: value for name, value in stored["headers"]},
        attachments=[_load_part(part) for part in stored["attachments"]],
        alternatives=[
            Alternative(_unblob(alt["content"]), alt["mimetype"]) for alt in stored["alternatives"]
        ],
        content_subtype=stored["content_subtype"],
        mixed_subtype=stored["mixed_subtype"],
        layout=stored["layout"],
        encoding=stored["encoding"],
        allow_local_addresses=stored["allow_local_addresses"],
        # Absent from rows stored before these fields existed.
        dsn=_load_dsn(stored.get("dsn")),
        unsubscribe=stored.get("unsubscribe"),
        return_path=stored.get("return_path"),
    )


def dumps(message: EmailMessage) -> str:
    """Return ``message`` as the JSON text stored in ``OutboxMessage.payload``."""
    return json.dumps(dump(message), ensure_ascii=False, separators=(",", ":"))


def loads(text: str) -> EmailMessage:
    """Return the message stored as ``text`` by :func:`dumps`."""
    stored: dict[str, Any] = json.loads(text)
    return load(stored)


def _quote(display_name: str) -> str:
    escaped = display_name.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def address_header(addresses: Iterable[Any]) -> str:
    """Return the header value naming ``addresses`` (parsed :class:`Address` objects)."""
    return ", ".join(
        f"{_quote(a.display_name)} <{a.addr_spec}>" if a.display_name else a.addr_spec
        for a in addresses
    )


def for_attempt(message: EmailMessage, recipients: Iterable[str]) -> EmailMessage:
    """Return ``message`` as one attempt sends it: its headers, RCPT only to ``recipients``."""
    valid = message.validate()
    headers = dict(message.headers)
    present = {name.lower() for name in headers}
    for name, addresses in (("To", valid.to), ("Cc", valid.cc)):
        if addresses and name.lower() not in present:
            headers[name] = address_header(addresses)
    return EmailMessage(
        subject=message.subject,
        body=message.body,
        html_body=message.html_body,
        from_email=message.from_email,
        bcc=list(recipients),
        reply_to=message.reply_to,
        headers=headers,
        attachments=message.attachments,
        alternatives=message.alternatives,
        content_subtype=message.content_subtype,
        mixed_subtype=message.mixed_subtype,
        layout=message.layout,
        encoding=message.encoding,
        allow_local_addresses=message.allow_local_addresses,
        dsn=message.dsn,
        unsubscribe=message.unsubscribe,
        return_path=message.return_path,
    )


def to_django(message: EmailMessage) -> DjangoEmailMessage:
    """Return a Django message carrying the stored fields, for signal receivers to read.

    Attachments are ``(filename, content, mimetype)`` tuples, and a
    :class:`~amsdal_mail.RawPart` is the parsed MIME part (an inline image's
    Content-ID is in ``message.extra_headers`` of neither: read the stored
    form for that). It is not what was sent: that is the stored message.
    """
    django_message = EmailMultiAlternatives(
        subject=message.subject,
        body=message.body,
        from_email=message.from_email,
        to=list(message.to),
        cc=list(message.cc),
        bcc=list(message.bcc),
        reply_to=list(message.reply_to),
        headers=dict(message.headers),
    )
    django_message.content_subtype = message.content_subtype
    django_message.encoding = message.encoding
    # Read back by django_amsdal_mail's conversion, as on a message a user sends.
    django_message.dsn = message.dsn  # type: ignore[attr-defined]
    django_message.unsubscribe = message.unsubscribe  # type: ignore[attr-defined]
    django_message.return_path = message.return_path  # type: ignore[attr-defined]
    if message.html_body is not None:
        django_message.attach_alternative(message.html_body, "text/html")
    for alt in message.alternatives:
        django_message.attach_alternative(alt.content, alt.mimetype)
    for part in message.attachments:
        if isinstance(part, RawPart):
            django_message.attachments.append(email.message_from_bytes(part.data))
        else:
            django_message.attachments.append((part.filename, part.content, part.mimetype))
    return django_message
