"""The stored form: every field survives JSON (and the database) and renders to the same bytes."""

from __future__ import annotations

import json
from email.mime.image import MIMEImage
from typing import Any

import pytest
from django.core.mail import EmailMultiAlternatives

from amsdal_mail import DSN, Alternative, Attachment, EmailMessage, RawPart
from amsdal_mail.mime import render
from django_amsdal_mail.convert import convert_message
from django_amsdal_mail.outbox.models import OutboxMessage
from django_amsdal_mail.outbox.storage import dump, dumps, for_attempt, load, loads, to_django

from .conftest import same_bytes

FIXED = {"Message-ID": "<fixed.1@example.com>", "Date": "Tue, 01 Jan 2030 12:00:00 +0000"}
PNG = bytes(range(256)) * 40  # every byte value, more than one base64 line


def rich_django_message() -> EmailMultiAlternatives:
    """A Django message with a bit of everything the stored form must keep."""
    message = EmailMultiAlternatives(
        subject="Chère maman — ünïcode",
        body="Line one\nLine two with é\n.leading dot\n",
        from_email="Sender Näme <from@example.com>",
        to=["Ann <ann@example.com>", "bob@example.com"],
        cc=['"Doe, John" <john@example.com>'],
        bcc=["hidden@example.com"],
        reply_to=["replies@example.com"],
        headers={**FIXED, "X-Campaign": "spring", "x-campaign": "lower too"},
    )
    message.attach_alternative("<p>Hi <img src='cid:logo@example.com'></p>", "text/html")
    message.attach_alternative(b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n", "text/calendar")
    message.attach("report.bin", PNG, "application/octet-stream")
    message.attach("latin.txt", "é".encode("latin-1"), "text/plain")  # not UTF-8: binary
    message.attach("naïve résumé.txt", "text attachment ✓\n", "text/plain")
    image = MIMEImage(PNG[:300], "png")
    image.add_header("Content-ID", "<logo@example.com>")
    image.add_header("Content-Disposition", "inline", filename="logo.png")
    message.attach(image)
    return message


def _json_round_trip(message: EmailMessage) -> EmailMessage:
    return load(json.loads(json.dumps(dump(message))))


def test_a_rich_message_renders_to_the_same_bytes_after_storage() -> None:
    """Headers, alternatives, attachments, the inline image, Bcc: the same bytes, byte for byte."""
    converted = convert_message(rich_django_message())
    assert any(isinstance(part, RawPart) for part in converted.attachments)
    restored = _json_round_trip(converted)
    assert same_bytes(render(restored)) == same_bytes(render(converted))
    assert restored.bcc == ["hidden@example.com"]
    assert restored.layout == converted.layout == "django"
    # An attempt keeps the layout too: the converted Django message renders as Django lays it out.
    attempt = for_attempt(restored, restored.recipients())
    assert same_bytes(render(attempt)) == same_bytes(render(converted))
    assert restored.headers == converted.headers
    assert list(restored.headers) == list(converted.headers)


def test_every_amsdal_field_round_trips() -> None:
    """Each field of an amsdal_mail EmailMessage comes back equal (bytes stay bytes)."""
    message = EmailMessage(
        subject="S",
        body="plain",
        html_body="<b>html</b>",
        from_email="root",
        to=["root", "a@example.com"],
        cc="c@example.com",
        bcc=["b@example.com"],
        reply_to="r@example.com",
        headers={"X-A": "1", **FIXED},
        attachments=[
            Attachment("a.bin", b"\x00\xff\x10binary", "application/octet-stream"),
            Attachment("t.txt", "text with NUL \0 inside", "text/plain"),
            Attachment(None, b"inline", "image/png", content_id="img1@example.com"),
            RawPart(b"Content-Type: text/plain\r\n\r\nraw part\r\n"),
        ],
        alternatives=[Alternative(b"\x01\x02", "application/x-thing"), Alternative("x", "text/x")],
        content_subtype="plain",
        mixed_subtype="related",
        layout="django",
        encoding="iso-8859-1",
        allow_local_addresses=True,
        return_path="bounces@example.com",
    )
    restored = _json_round_trip(message)
    for name in (
        "subject", "body", "html_body", "from_email", "to", "cc", "bcc", "reply_to",
        "headers", "attachments", "alternatives", "content_subtype", "mixed_subtype",
        "layout", "encoding", "allow_local_addresses", "return_path",
    ):  # fmt: skip
        assert getattr(restored, name) == getattr(message, name), name
    assert same_bytes(render(restored)) == same_bytes(render(message))


def test_an_unknown_version_is_refused() -> None:
    """A stored form of another version is never guessed at."""
    stored = dump(EmailMessage("S", "B", "f@example.com", ["t@example.com"]))
    stored["v"] = 99
    with pytest.raises(ValueError, match="version 99"):
        load(stored)


@pytest.mark.django_db
def test_the_database_keeps_the_stored_form_exactly() -> None:
    """Through the JSON column (and back), the message renders to the same bytes."""
    converted = convert_message(rich_django_message())
    row = OutboxMessage.objects.create(payload=dumps(converted), message_id=FIXED["Message-ID"])
    again = OutboxMessage.objects.get(pk=row.pk)
    assert same_bytes(render(loads(again.payload))) == same_bytes(render(converted))


ADDRESSES = [
    "a@example.com",
    "Plain Name <b@example.com>",
    '"Doe, John" <c@example.com>',
    "Ünï Cödé <d@exämple.com>",
    '"q\\"uo\\\\te" <e@example.com>',
    "Dr. J. (Jim) Smith <h@example.com>",
    "x;y <i@example.com>",
    "ünï@exämple.com",
    "A very long display name that goes on and on, and on and on and on <g@example.com>",
]


@pytest.mark.parametrize("address", ADDRESSES)
def test_an_attempt_sends_the_headers_of_the_message(address: str) -> None:
    """To/Cc given as overrides render exactly as the message's own To/Cc (every recipient)."""
    cc = address.replace("@", "x@", 1)
    message = EmailMessage(
        "S", "B", "f@example.com", to=[address, "z@example.com"], cc=[cc],
        bcc=["secret@example.com"], headers=FIXED,
    )  # fmt: skip
    attempt = for_attempt(_json_round_trip(message), message.recipients())
    assert same_bytes(render(attempt)) == same_bytes(render(message))
    assert attempt.to == [] and attempt.cc == []
    assert attempt.recipients() == message.recipients()


def test_an_attempt_to_some_recipients_keeps_every_header() -> None:
    """Only the recipients given are the envelope; the headers still name everyone."""
    message = EmailMessage(
        "S", "B", "f@example.com", to=["a@example.com", "b@example.com"], cc=["c@example.com"],
        bcc=["d@example.com"], headers=FIXED,
    )  # fmt: skip
    attempt = for_attempt(message, ["b@example.com", "d@example.com"])
    assert attempt.recipients() == ["b@example.com", "d@example.com"]
    assert same_bytes(render(attempt)) == same_bytes(render(message))


def test_a_to_header_of_the_message_itself_wins() -> None:
    """A Django extra header "To" (shown instead of the envelope) is kept, not replaced."""
    message = EmailMessage(
        "S", "B", "f@example.com", to=["a@example.com"], headers={**FIXED, "To": "list@example.com"}
    )
    assert same_bytes(render(for_attempt(message, ["a@example.com"]))) == same_bytes(
        render(message)
    )


def test_the_django_message_for_receivers_carries_the_fields() -> None:
    """post_send receivers get a Django message with the stored fields."""
    stored = convert_message(rich_django_message())
    rebuilt: Any = to_django(stored)
    assert rebuilt.subject == stored.subject
    assert rebuilt.to == stored.to and rebuilt.cc == stored.cc and rebuilt.bcc == stored.bcc
    assert rebuilt.extra_headers["X-Campaign"] == "spring"
    assert [mimetype for _, mimetype in rebuilt.alternatives] == ["text/html", "text/calendar"]
    assert ("report.bin", PNG, "application/octet-stream") in rebuilt.attachments
    assert len(rebuilt.attachments) == len(stored.attachments)


def test_dsn_unsubscribe_and_return_path_survive_storage_and_every_attempt() -> None:
    """A message's DSN request, unsubscribe links and return path are kept everywhere.

    Stored, in each attempt, and on the Django message signal receivers get.
    """
    django_message = rich_django_message()
    django_message.return_path = "bounces@example.com"  # type: ignore[attr-defined]
    django_message.dsn = DSN(notify="failure,delay", ret="headers", envid="env-1")  # type: ignore[attr-defined]
    django_message.unsubscribe = [  # type: ignore[attr-defined]
        "https://example.com/u/1",
        "mailto:unsub@example.com",
    ]
    converted = convert_message(django_message)
    restored = _json_round_trip(converted)
    assert restored.dsn == DSN(notify=("failure", "delay"), ret="headers", envid="env-1")
    assert restored.unsubscribe == ["https://example.com/u/1", "mailto:unsub@example.com"]
    attempt = for_attempt(restored, ["bob@example.com"])
    assert attempt.dsn == restored.dsn
    assert restored.return_path == attempt.return_path == "bounces@example.com"
    rendered = render(attempt)
    assert b"List-Unsubscribe: <https://example.com/u/1>, <mailto:unsub@example.com>" in rendered
    assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click" in rendered
    back = to_django(restored)
    assert back.dsn == restored.dsn  # type: ignore[attr-defined]
    assert back.unsubscribe == restored.unsubscribe  # type: ignore[attr-defined]
    assert back.return_path == "bounces@example.com"  # type: ignore[attr-defined]


def test_a_row_stored_without_dsn_or_unsubscribe_still_loads() -> None:
    """Rows written before the stored form had ``dsn`` and ``unsubscribe`` load with neither."""
    stored = dump(convert_message(rich_django_message()))
    del stored["dsn"], stored["unsubscribe"], stored["return_path"]
    restored = load(stored)
    assert restored.return_path is None
    assert restored.dsn is None
    assert restored.unsubscribe is None
