"""Django's own SMTP backend and ours deliver the same messages.

Each message of the corpus is sent once through
``django.core.mail.backends.smtp.EmailBackend`` and once through
``django_amsdal_mail.backend.EmailBackend`` to a real SMTP server; both
received messages are parsed and must match in everything a reader sees:
the headers (decoded; not Message-ID or Date), the body text, the MIME tree
(types, order, charset, disposition, transfer encoding), every attachment
(filename, type, bytes, Content-ID), and the SMTP envelope (sender,
recipients with bcc). Against Django 5.2 all of it must be equal; the few
deliberate differences from Django 6 are recorded per case (``Case.django6``).
"""

from __future__ import annotations

import email.message
import email.policy
from collections.abc import Callable
from dataclasses import dataclass
from email.headerregistry import AddressHeader
from email.mime.application import MIMEApplication
from email.mime.image import MIMEImage
from email.mime.text import MIMEText
from pathlib import Path
from typing import Any

import django
import pytest
from django.core.mail import EmailAttachment, EmailMessage, EmailMultiAlternatives
from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.backends.smtp import EmailBackend as DjangoSMTPBackend
from django.utils.functional import lazy
from django.utils.translation import gettext_lazy

from django_amsdal_mail.backend import EmailBackend
from tests.smtpd import ReceivedMessage, RecordingServer

MODERN = django.VERSION >= (6, 0)  # Django 6 builds messages with email.policy
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 3
PDF = b"%PDF-1.4\n" + bytes(range(256)) + b"\n%%EOF\n"
HTML = '<p>Hello <b>there</b>, <img src="cid:logo@example.com"></p>'
CALENDAR = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nEND:VCALENDAR\r\n"
FROM = "webmaster@example.com"
TO = ["ann@example.com"]

Builder = Callable[[Path], EmailMessage]


@dataclass(frozen=True)
class Case:
    """One corpus message: a name for the test id and a builder (called once per send).

    ``django6`` records a deliberate difference from Django 6: it turns what a
    reader sees of Django 6's message into what ours must look like (its
    docstring says why). Django 5.2's message and ours must be the same.
    """

    name: str
    build: Builder
    django6: Callable[[dict[str, Any]], dict[str, Any]] | None = None


def _message(**kwargs: Any) -> EmailMessage:
    kwargs.setdefault("from_email", FROM)
    kwargs.setdefault("to", TO)
    kwargs.setdefault("subject", "Subject")
    kwargs.setdefault("body", "Body text.\n")
    return EmailMessage(**kwargs)


def _alternatives(**kwargs: Any) -> EmailMultiAlternatives:
    kwargs.setdefault("from_email", FROM)
    kwargs.setdefault("to", TO)
    kwargs.setdefault("subject", "Subject")
    kwargs.setdefault("body", "Plain text.\n")
    return EmailMultiAlternatives(**kwargs)


def _with(message: EmailMessage, change: Callable[[Any], Any]) -> EmailMessage:
    change(message)
    return message


def _html_message(_: Path) -> EmailMessage:
    message = _message(body=HTML)
    message.content_subtype = "html"
    return message


def _attach_file_text(tmp: Path) -> EmailMessage:
    path = tmp / "report.csv"
    path.write_text("name,score\nÅsa,10\nBob,7\n", encoding="utf-8")
    message = _message()
    message.attach_file(path)
    return message


def _attach_file_binary(tmp: Path) -> EmailMessage:
    path = tmp / "logo.png"
    path.write_bytes(PNG)
    message = _message()
    message.attach_file(path)
    return message


def _inline_image_part() -> email.message.Message:
    """An inline image with a Content-ID, as each Django version expects it."""
    if MODERN:
        part = email.message.MIMEPart()
        part.set_content(
            PNG,
            maintype="image",
            subtype="png",
            disposition="inline",
            filename="logo.png",
            cid="<logo@example.com>",
        )
        return part
    image = MIMEImage(PNG, _subtype="png")
    image.add_header("Content-ID", "<logo@example.com>")
    image.add_header("Content-Disposition", "inline", filename="logo.png")
    return image


def _inline_image(_: Path) -> EmailMessage:
    message = _alternatives()
    message.attach_alternative(HTML, "text/html")
    message.attach(_inline_image_part())
    if not MODERN:
        message.mixed_subtype = "related"
    return message


def _newsletter(tmp: Path) -> EmailMessage:
    path = tmp / "terms.pdf"
    path.write_bytes(PDF)
    message = _alternatives(
        subject="Newsletter — März",
        body="Plain newsletter\n",
        cc=["Carl <carl@example.com>"],
        bcc=["hidden@example.com"],
        reply_to=["replies@example.com"],
        headers={"List-Unsubscribe": "<mailto:unsubscribe@example.com>"},
    )
    message.attach_alternative(HTML, "text/html")
    message.attach_file(path)
    message.attach("notes.txt", "Some notes\n", "text/plain")
    return message


def _lazy_message(_: Path) -> EmailMessage:
    lazy_str = lazy(str, str)
    return _message(
        subject=gettext_lazy("Password reset"),
        body=gettext_lazy("Follow the link to reset your password.") + "\n",
        to=[lazy_str("ann@example.com")],
        headers={"X-Lazy": gettext_lazy("translated header")},
    )


def _rfc822(_: Path) -> EmailMessage:
    inner = (
        b"From: old@example.com\r\nTo: ann@example.com\r\nSubject: Original\r\n"
        b"Message-ID: <original@example.com>\r\nDate: Mon, 02 Feb 2026 10:00:00 +0000\r\n"
        b"\r\nThe original message.\r\n"
    )
    message = _message(subject="Fwd: Original")
    message.attach("original.eml", inner, "message/rfc822")
    return message


def _mime_attachments(_: Path) -> EmailMessage:
    """Ready-made MIME parts: MIMEBase subclasses (both versions) and MIMEPart (Django 6)."""
    message = _message()
    application = MIMEApplication(PDF, "pdf")
    application.add_header("Content-Disposition", "attachment", filename="made.pdf")
    message.attach(application)
    text = MIMEText("ready-made text\n", "plain", "utf-8")
    text.add_header("Content-Disposition", "attachment", filename="made.txt")
    message.attach(text)
    if MODERN:
        part = email.message.MIMEPart()
        part.set_content(b"modern part", maintype="application", subtype="x-modern")
        part.add_header("Content-Disposition", "attachment", filename="modern.bin")
        message.attach(part)
    return message


def _leaves(tree: Any, change: Callable[[dict[str, Any]], dict[str, Any]]) -> Any:
    """Return ``tree`` (see ``_tree``) with ``change`` applied to every leaf part."""
    if isinstance(tree, dict):
        return change(tree)
    if str(tree[0]).startswith("multipart/"):
        return (tree[0], [_leaves(part, change) for part in tree[1]])
    return tree


def _non_utf8_text_as_quoted_printable(seen: dict[str, Any]) -> dict[str, Any]:
    """Django 6 sends non-UTF-8 text with short lines as 8bit (``email.policy``'s rule).

    Django 5.2 and ours send it quoted-printable (only UTF-8 goes 8bit), so it
    never needs 8BITMIME for a charset a relay cannot know.
    """

    def change(leaf: dict[str, Any]) -> dict[str, Any]:
        if leaf.get("charset") not in ("", "utf-8", None) and leaf["cte"] == "8bit":
            return {**leaf, "cte": "quoted-printable"}
        return leaf

    return {**seen, "tree": _leaves(seen["tree"], change)}


def _inline_image_in_related(seen: dict[str, Any]) -> dict[str, Any]:
    """Django 6 puts an inline image in multipart/mixed beside the alternatives.

    Its HTML references the image by ``cid:``, so ours puts them together in
    multipart/related (RFC 2387), as Django 5.2 does with
    ``mixed_subtype = "related"``.
    """
    kind, parts = seen["tree"]
    assert kind == "multipart/mixed"
    return {**seen, "tree": ("multipart/related", parts)}


CORPUS: list[Case] = [
    Case("plain", lambda _: _message()),
    Case("empty-subject-and-body", lambda _: _message(subject="", body="")),
    Case(
        "to-cc-bcc",
        lambda _: _message(
            to=["ann@example.com", "bob@example.com"],
            cc=["carl@example.com", "dora@example.com"],
            bcc=["eve@example.com", "frank@example.com"],
        ),
    ),
    Case("bcc-only", lambda _: _message(to=[], bcc=["secret@example.com"])),
    Case(
        "reply-to",
        lambda _: _message(reply_to=["help@example.com", "Support <support@example.com>"]),
    ),
    Case(
        "display-names",
        lambda _: _message(
            from_email="Web Master <webmaster@example.com>",
            to=['"Doe, John" <john@example.com>', "Ann O'Neil <ann@example.com>"],
            cc=['"Quoted \\"Name\\"" <quoted@example.com>'],
        ),
    ),
    Case(
        "non-ascii-display-names",
        lambda _: _message(
            from_email="Jörg Müller <jorg@example.com>",
            to=["Zoë Ångström <zoe@example.com>", "山田太郎 <taro@example.com>"],
        ),
    ),
    Case(
        "non-ascii-subject-and-body",
        lambda _: _message(subject="Grüße aus Köln ☕", body="Hallo Zoë,\nschöne Grüße ☕\n"),
    ),
    Case("long-subject", lambda _: _message(subject="A rather long subject line " * 6)),
    Case(
        "long-non-ascii-subject",
        lambda _: _message(subject="Überlange Betreffzeile mit Umlauten äöü " * 4),
    ),
    Case("long-body-lines", lambda _: _message(body=("x" * 1200 + "\n") * 3)),
    Case(
        "dots-and-from-lines",
        lambda _: _message(body=".\n..leading dots\nFrom the start\n.\nend\n"),
    ),
    Case("crlf-body", lambda _: _message(body="line one\r\nline two\r\n\r\nline four")),
    Case(
        "extra-headers",
        lambda _: _message(
            headers={
                "X-Mailer": "differential",
                "X-Priority": "1",
                "X-Non-Ascii": "Wert mit Ümlaut",
                "Keywords": "alpha, beta",
                "In-Reply-To": "<earlier@example.com>",
            }
        ),
    ),
    Case(
        "header-overrides",
        lambda _: _message(
            to=["ann@example.com"],
            cc=["carl@example.com"],
            reply_to=["replies@example.com"],
            headers={
                "From": "Display Sender <display@example.com>",
                "To": "Shown To <shown@example.com>",
                "Cc": "shown-cc@example.com",
                "Reply-To": "Other <other@example.com>",
            },
        ),
    ),
    Case(
        "iso-8859-1-encoding",
        lambda _: _with(
            _message(subject="Café crème", body="Déjà vu à Noël\n"),
            lambda m: setattr(m, "encoding", "iso-8859-1"),
        ),
        _non_utf8_text_as_quoted_printable,
    ),
    Case(
        "iso-8859-1-text-attachment",
        lambda _: _with(
            _with(
                _message(body="Voilà\n"),
                lambda m: m.attach("menu.txt", "Crème brûlée\n", "text/plain"),
            ),
            lambda m: setattr(m, "encoding", "iso-8859-1"),
        ),
        _non_utf8_text_as_quoted_printable,
    ),
    Case(
        "address-headers-among-extra-headers",
        lambda _: _message(
            headers={"Sender": "Agent <agent@example.com>", "Resent-To": "r@example.com"}
        ),
    ),
    # Django 6.1 refuses a Bcc header (test_refusals); before, it is sent as given.
    *(
        [Case("bcc-header", lambda _: _message(headers={"Bcc": "shown@example.com"}))]
        if django.VERSION < (6, 1)
        else []
    ),
    Case("lazy-translation-strings", _lazy_message),
    Case("content-subtype-html", _html_message),
    Case(
        "html-alternative",
        lambda _: _with(_alternatives(), lambda m: m.attach_alternative(HTML, "text/html")),
    ),
    Case(
        "html-and-calendar-alternatives",
        lambda _: _alternatives(alternatives=[(HTML, "text/html"), (CALENDAR, "text/calendar")]),
    ),
    Case(
        "binary-alternative",
        lambda _: _alternatives(alternatives=[(b'{"a": 1}', "application/json")]),
    ),
    Case(
        "empty-body-html-only",
        lambda _: _with(_alternatives(body=""), lambda m: m.attach_alternative(HTML, "text/html")),
    ),
    Case(
        "attachment-tuples",
        lambda _: _message(
            attachments=[
                ("notes.txt", "Some notes\nwith two lines\n", "text/plain"),
                ("data.bin", b"\x00\x01\x02binary", "application/octet-stream"),
            ]
        ),
    ),
    Case(
        "email-attachment",
        lambda _: _message(attachments=[EmailAttachment("doc.pdf", PDF, "application/pdf")]),
    ),
    Case(
        "guessed-mimetypes",
        lambda _: _with(
            _message(),
            lambda m: [
                m.attach("picture.png", PNG),
                m.attach("table.csv", b"a,b\n1,2\n"),
                m.attach("page.html", "<p>attached page</p>"),
                m.attach("unknown.zzzq", b"???"),
            ],
        ),
    ),
    Case(
        "non-ascii-filename",
        lambda _: _with(_message(), lambda m: m.attach("résumé — 2026.pdf", PDF)),
    ),
    Case(
        "long-filename",
        lambda _: _with(_message(), lambda m: m.attach("a-very-long-file-name-" * 5 + ".pdf", PDF)),
    ),
    Case(
        "text-attachment-not-utf8",
        lambda _: _with(_message(), lambda m: m.attach("latin.txt", "Crème".encode("latin-1"))),
    ),
    Case(
        "attachment-without-filename",
        lambda _: _with(
            _message(),
            lambda m: [
                m.attach(content=PDF, mimetype="application/pdf"),
                m.attach(content="unnamed text\n", mimetype="text/plain"),
            ],
        ),
    ),
    Case("attach-file-text", _attach_file_text),
    Case("attach-file-binary", _attach_file_binary),
    Case(
        "attachments-only-no-body",
        lambda _: _message(body="", attachments=[("only.pdf", PDF, "application/pdf")]),
    ),
    Case("message-rfc822-attachment", _rfc822),
    Case("mime-part-attachments", _mime_attachments),
    Case("inline-image-content-id", _inline_image, _inline_image_in_related),
    Case("newsletter-everything", _newsletter),
    Case(
        "idn-domains",
        lambda _: _message(
            from_email="Info <info@bücher.example>",
            to=["kunde@müller.example", "user@例え.jp"],
            cc=["Zoë <zoe@münchen.example>"],
            bcc=["hidden@ñandú.example"],
        ),
    ),
    Case("bare-local-name", lambda _: _message(to=["root", "ann@example.com"])),
    Case(
        "many-recipients",
        lambda _: _message(to=[f"user{i}@example.com" for i in range(40)]),
    ),
]


def _django_backend(server: RecordingServer) -> BaseEmailBackend:
    """Return Django's own SMTP backend for ``server``."""
    if django.VERSION >= (6, 1):
        # Built as MAILERS builds it: direct construction is deprecated on 6.1.
        return DjangoSMTPBackend(host=server.host, port=server.port, alias="differential")
    return DjangoSMTPBackend(host=server.host, port=server.port)


# --- what a reader sees -------------------------------------------------------------

#: Headers that differ on every send, or that describe the MIME tree (compared there).
_NOT_COMPARED = frozenset(
    {"message-id", "date", "mime-version", "content-type", "content-transfer-encoding"}
)


def _header_value(value: Any) -> object:
    if isinstance(value, AddressHeader):
        return tuple(
            (address.display_name, address.username.lower(), address.domain.lower())
            for address in value.addresses
        )
    return " ".join(str(value).split())


def _headers(message: email.message.EmailMessage, *, skip: frozenset[str]) -> dict[str, Any]:
    headers: dict[str, list[object]] = {}
    for name, value in message.items():
        if name.lower() not in skip:
            headers.setdefault(name.lower(), []).append(_header_value(value))
    return headers


def _text(text: str) -> str:
    """Normalise line endings; on Django 6 also the final line break.

    Django 6 (``set_content``) ends every text part with a line break; Django
    5.2 and ours send the text as written, so there the text must match exactly.
    """
    text = text.replace("\r\n", "\n")
    return text.rstrip("\n") if MODERN else text


def _tree(part: email.message.EmailMessage) -> object:
    """Return what a reader sees of ``part`` and everything in it."""
    content_type = part.get_content_type()
    if content_type == "message/rfc822":
        (inner,) = part.iter_parts()
        return (content_type, part.get_filename(), part.get_content_disposition(), _seen(inner))
    if part.is_multipart():
        return (content_type, [_tree(p) for p in part.iter_parts()])
    seen: dict[str, object] = {
        "type": content_type,
        "disposition": part.get_content_disposition(),
        "filename": part.get_filename(),
        "content-id": part["Content-ID"],
    }
    seen["cte"] = str(part.get("Content-Transfer-Encoding", "7bit")).lower()
    if part.get_content_maintype() == "text":
        seen["charset"] = (part.get_content_charset() or "").lower()
        seen["text"] = _text(part.get_content())
    else:
        seen["bytes"] = part.get_payload(decode=True)
    return seen


def _seen(message: email.message.EmailMessage) -> dict[str, object]:
    skip = _NOT_COMPARED | {"content-disposition", "content-id"}
    return {"headers": _headers(message, skip=skip), "tree": _tree(message)}


def _envelope(received: ReceivedMessage) -> tuple[str, list[str]]:
    recipients = list(dict.fromkeys(address.lower() for address in received.rcpt_tos))
    return received.mail_from.lower(), recipients


def _parsed(received: ReceivedMessage) -> email.message.EmailMessage:
    parsed = email.message_from_bytes(received.data, policy=email.policy.default)
    assert isinstance(parsed, email.message.EmailMessage)
    return parsed


# --- the test -------------------------------------------------------------------------


def test_the_corpus_covers_at_least_30_messages() -> None:
    """The differential corpus holds at least 30 distinct messages."""
    assert len(CORPUS) >= 30
    assert len({case.name for case in CORPUS}) == len(CORPUS)


@pytest.mark.parametrize("case", CORPUS, ids=lambda case: case.name)
def test_our_backend_delivers_what_djangos_own_delivers(
    case: Case, server: RecordingServer, tmp_path: Path
) -> None:
    """A message sent through our backend arrives as Django's own SMTP backend delivers it."""
    theirs = _django_backend(server)
    ours = EmailBackend(host=server.host, port=server.port)

    assert theirs.send_messages([case.build(tmp_path)]) == 1
    assert ours.send_messages([case.build(tmp_path)]) == 1

    django_received, amsdal_received = server.wait_for_messages(2)
    assert _envelope(amsdal_received) == _envelope(django_received)
    expected = _seen(_parsed(django_received))
    if MODERN and case.django6 is not None:
        expected = case.django6(expected)
    assert _seen(_parsed(amsdal_received)) == expected
