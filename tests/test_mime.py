"""MIME rendering: what ``amsdal_mail.mime.render`` writes parses back to the same message."""

from __future__ import annotations

import email
import email.policy
import re
from datetime import UTC, datetime, timedelta
from email.header import decode_header, make_header
from email.message import EmailMessage as ParsedMessage
from email.utils import parsedate_to_datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amsdal_mail import Alternative, Attachment, EmailMessage, RawPart
from amsdal_mail.mime import render, render_chunks

FROM = "sender@example.com"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 3
BINARY = bytes(range(256)) * 8 + b"\r\n.\r\n\r\r\n\n\x00"


def make(**kwargs: Any) -> EmailMessage:
    """Return a message with valid defaults for everything not given."""
    kwargs.setdefault("subject", "Subject")
    kwargs.setdefault("body", "Body\n")
    kwargs.setdefault("from_email", FROM)
    kwargs.setdefault("to", ["rcpt@example.com"])
    return EmailMessage(**kwargs)


def parse(data: bytes) -> ParsedMessage:
    """Parse rendered bytes with the modern policy."""
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(parsed, ParsedMessage)
    return parsed


def text_of(part: Any) -> str:
    """Return a text part's content with CRLF turned back into LF."""
    content = part.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")


def assert_wire_format(data: bytes) -> None:
    """Every line break is CRLF (no bare CR or LF) and every line is at most 998 octets.

    The last line may end without one: a text body ends where its text ends.
    """
    assert re.search(rb"(?<!\r)\n", data) is None, "bare LF"
    assert re.search(rb"\r(?!\n)", data) is None, "bare CR"
    longest = max(len(line) for line in data.split(b"\r\n"))
    assert longest <= 998, f"a line of {longest} octets"


def header_block(data: bytes) -> bytes:
    """Return the top-level header section of rendered bytes."""
    return data.split(b"\r\n\r\n", 1)[0]


# -- structure --------------------------------------------------------------------------------


def test_text_only_message_is_a_single_part() -> None:
    """A text-only message is one text/plain part in UTF-8."""
    parsed = parse(render(make(body="Hello,\nworld.\n")))

    assert parsed.get_content_type() == "text/plain"
    assert parsed.get_content_charset() == "utf-8"
    assert not parsed.is_multipart()
    assert text_of(parsed) == "Hello,\nworld.\n"
    assert parsed["MIME-Version"] == "1.0"


def test_html_body_is_an_alternative() -> None:
    """With html_body the message is multipart/alternative: text first, then HTML."""
    parsed = parse(render(make(body="Text\n", html_body="<p>HTML</p>\n")))

    assert parsed.get_content_type() == "multipart/alternative"
    parts = list(parsed.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert [text_of(p) for p in parts] == ["Text\n", "<p>HTML</p>\n"]


def test_attachments_keep_bytes_name_and_type() -> None:
    """Attachments arrive byte for byte with their filename and content type."""
    message = make(
        html_body="<p>HTML</p>",
        attachments=[
            Attachment("data.bin", BINARY, "application/octet-stream"),
            Attachment("picture.png", PNG),
            Attachment("notes.txt", "first line\nsecond line\n"),
            Attachment("raw.txt", b"bytes in a text type\r\n\x00", "text/plain"),
        ],
    )

    parsed = parse(render(message))

    assert parsed.get_content_type() == "multipart/mixed"
    attachments = list(parsed.iter_attachments())
    assert [(a.get_filename(), a.get_content_type()) for a in attachments] == [
        ("data.bin", "application/octet-stream"),
        ("picture.png", "image/png"),
        ("notes.txt", "text/plain"),
        ("raw.txt", "text/plain"),
    ]
    assert attachments[0].get_content() == BINARY
    assert attachments[1].get_content() == PNG
    assert text_of(attachments[2]) == "first line\nsecond line\n"
    assert attachments[3].get_payload(decode=True) == b"bytes in a text type\r\n\x00"
    assert all(a.get_content_disposition() == "attachment" for a in attachments)


@pytest.mark.parametrize(
    "filename",
    [
        "résumé – 2025.pdf",
        "报告.pdf",
        "naïve file name with spaces and ümlauts.txt",
        "x" * 300 + ".bin",
        "ü" * 200 + ".bin",
        "quote\"and'apostrophe;semicolon.txt",
    ],
    ids=["latin", "cjk", "spaces", "long-ascii", "long-non-ascii", "specials"],
)
def test_filenames_survive(filename: str) -> None:
    """Non-ASCII, long and punctuated filenames decode back exactly, in short lines."""
    data = render(make(attachments=[Attachment(filename, b"content")]))

    assert_wire_format(data)
    [attachment] = parse(data).iter_attachments()
    assert attachment.get_filename() == filename
    assert attachment.get_payload(decode=True) == b"content"


def test_inline_parts_are_related_to_the_html_body() -> None:
    """An attachment with content_id is an inline part beside the HTML in multipart/related."""
    message = make(
        body="Text\n",
        html_body='<img src="cid:logo@example">\n',
        attachments=[
            Attachment("logo.png", PNG, content_id="logo@example"),
            Attachment("report.pdf", b"%PDF-1.4", "application/pdf"),
        ],
    )

    parsed = parse(render(message))

    assert parsed.get_content_type() == "multipart/mixed"
    related, report = parsed.iter_parts()
    assert related.get_content_type() == "multipart/related"
    alternative, logo = related.iter_parts()
    assert alternative.get_content_type() == "multipart/alternative"
    assert logo["Content-ID"] == "<logo@example>"
    assert logo.get_content_disposition() == "inline"
    assert logo.get_content_type() == "image/png"
    assert logo.get_content() == PNG
    assert report.get_filename() == "report.pdf"
    html = parsed.get_body(("html",))
    assert html is not None and 'src="cid:logo@example"' in text_of(html)


def test_other_alternatives_follow_the_html() -> None:
    """Alternative renderings (e.g. text/calendar) are further parts of multipart/alternative."""
    calendar = "BEGIN:VCALENDAR\nEND:VCALENDAR\n"
    message = make(html_body="<p>x</p>", alternatives=[Alternative(calendar, "text/calendar")])

    parsed = parse(render(message))

    parts = list(parsed.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html", "text/calendar"]
    assert text_of(parts[2]) == calendar


def test_raw_part_is_attached_as_is() -> None:
    """A RawPart is placed unchanged (line endings aside) among the attachments."""
    raw = RawPart(b"Content-Type: text/x-custom\nX-Part: kept\n\nraw body\n")

    parsed = parse(render(make(attachments=[raw])))

    _, part = parsed.iter_parts()
    assert part.get_content_type() == "text/x-custom"
    assert part["X-Part"] == "kept"
    assert text_of(part) == "raw body\n"


@pytest.mark.parametrize("html", [None, "<p>HTML</p>\n"])
@pytest.mark.parametrize("body", ["ends with a newline\n", "no newline at the end", "two\n\n"])
def test_text_parts_keep_exactly_their_line_breaks(html: str | None, body: str) -> None:
    """A text part inside a multipart ends where its text ends: no line break is added."""
    message = make(
        body=body, html_body=html, attachments=[Attachment("notes.txt", body, "text/plain")]
    )

    parsed = parse(render(message))

    plain = parsed.get_body(("plain",))
    assert plain is not None
    assert text_of(plain) == body
    [attachment] = parsed.iter_attachments()
    assert text_of(attachment) == body


@pytest.mark.parametrize("body", ["Content", "Content\n", "", "a\r\nb"])
def test_a_lone_text_body_is_sent_as_written(body: str) -> None:
    """EmailMessage(body="Content") renders a body "Content", as Django's does, nothing added."""
    data = render(make(body=body))

    assert data.endswith(b"\r\n\r\n" + body.replace("\r\n", "\n").replace("\n", "\r\n").encode())
    assert parse(data).get_payload() == body.replace("\r\n", "\n").replace("\n", "\r\n")


# -- headers -----------------------------------------------------------------------------------


def test_address_headers() -> None:
    """From, To, Cc and Reply-To hold the addresses with their display names."""
    message = make(
        from_email="Sender Name <sender@example.com>",
        to=["Ann <ann@example.com>", "bob@example.com"],
        cc=['"Doe, John" <john@example.com>'],
        reply_to=["replies@example.com"],
    )

    parsed = parse(render(message))

    def pairs(name: str) -> list[tuple[str, str]]:
        return [(a.display_name, a.addr_spec) for a in parsed[name].addresses]

    assert pairs("From") == [("Sender Name", "sender@example.com")]
    assert pairs("To") == [("Ann", "ann@example.com"), ("", "bob@example.com")]
    assert pairs("Cc") == [("Doe, John", "john@example.com")]
    assert pairs("Reply-To") == [("", "replies@example.com")]


def test_bcc_never_appears_in_the_message() -> None:
    """Bcc recipients are envelope-only: no Bcc header and no trace of the address."""
    data = render(make(bcc=["Secret Person <secret@example.com>"]))

    assert "Bcc" not in parse(data)
    assert b"secret" not in data.lower()
    assert b"Secret Person" not in data


def test_custom_headers_are_written() -> None:
    """Custom headers appear with their values; Message-ID and Date can be given."""
    message = make(
        headers={
            "X-Campaign": "spring",
            "List-Unsubscribe": "<mailto:unsub@example.com>",
            "Message-ID": "<custom-id@example.com>",
            "Date": "Tue, 01 Jul 2025 10:00:00 +0000",
            "X-Non-ASCII": "Grüße",
        }
    )

    parsed = parse(render(message))

    assert parsed["X-Campaign"] == "spring"
    assert parsed["List-Unsubscribe"] == "<mailto:unsub@example.com>"
    assert parsed["Message-ID"] == "<custom-id@example.com>"
    assert parsed["Date"] == "Tue, 01 Jul 2025 10:00:00 +0000"
    assert parsed["X-Non-ASCII"] == "Grüße"
    assert len(parsed.get_all("Message-ID") or []) == 1


def test_custom_reply_to_header_replaces_the_field() -> None:
    """A Reply-To given in headers is written once, as an address header."""
    message = make(reply_to=["field@example.com"], headers={"Reply-To": "Hdr <hdr@example.com>"})

    parsed = parse(render(message))

    assert len(parsed.get_all("Reply-To") or []) == 1
    assert parsed["Reply-To"].addresses[0].addr_spec == "hdr@example.com"


@pytest.mark.parametrize(
    "subject",
    [
        "Grüße aus Köln",
        "日本語の件名です",
        "Emoji 🎉 party",
        "=?utf-8?q?looks_encoded?=",
        "ascii only, with: punctuation (and) <brackets>",
        "",
    ],
)
def test_subject_decodes_back_equal(subject: str) -> None:
    """Non-ASCII (and look-alike encoded-word) subjects decode back to the same text."""
    data = render(make(subject=subject))

    assert header_block(data).isascii()
    assert parse(data)["Subject"] == subject


@pytest.mark.parametrize("name", ["Zoë Példa", "日本 太郎", "Ümlaut, Comma", 'Quote "Q" Name'])
def test_display_names_decode_back_equal(name: str) -> None:
    """Display names with non-ASCII or special characters decode back to the same text."""
    escaped = name.replace('"', '\\"')
    message = make(
        from_email=f'"{escaped}" <from@example.com>', to=[f'"{escaped}" <to@example.com>']
    )

    data = render(message)

    assert header_block(data).isascii()
    parsed = parse(data)
    assert parsed["From"].addresses[0].display_name == name
    assert parsed["To"].addresses[0].display_name == name


def test_long_non_ascii_display_name_is_split_into_encoded_words() -> None:
    """A long non-ASCII display name is folded into several encoded-words that decode back."""
    name = "Ünïcödé Nämé " * 12
    name = name.strip()
    data = render(make(to=[f"{name} <to@example.com>"]))

    assert_wire_format(data)
    raw = re.search(rb"\r\nTo: (.*?)\r\n(?! )", data, re.S)
    assert raw is not None
    phrase = raw.group(1).decode("ascii").replace("\r\n", "").rsplit(" <", 1)[0]
    # RFC 2047: whitespace between adjacent encoded-words is not part of the text
    # (Python's address parser keeps it, so decode the phrase directly).
    assert str(make_header(decode_header(phrase))) == name


def test_idn_domain_is_punycode_in_headers() -> None:
    """An IDN domain is written as punycode in address headers, keeping them ASCII."""
    data = render(make(to=["Name <user@bücher.example>"]))

    assert header_block(data).isascii()
    assert parse(data)["To"].addresses[0].addr_spec == "user@xn--bcher-kva.example"


def test_date_and_message_id() -> None:
    """Each rendering has a current Date and a new, unique Message-ID at the sender's domain."""
    message = make(from_email="a@mail.example.org")

    first, second = parse(render(message)), parse(render(message))

    date = parsedate_to_datetime(first["Date"])
    assert abs(datetime.now(UTC) - date) < timedelta(minutes=5)
    assert first["Message-ID"] != second["Message-ID"]
    assert re.fullmatch(r"<[^<>@\s]+@mail\.example\.org>", first["Message-ID"])
    ids = {parse(render(message))["Message-ID"] for _ in range(200)}
    assert len(ids) == 200


# -- wire format -------------------------------------------------------------------------------


def everything_message() -> EmailMessage:
    """Return a message using every feature, with long and non-ASCII values everywhere."""
    return make(
        subject="Ünïcödé " * 40,
        body="line one\r\nline two\nline three\rline four\n" + "é" * 3000 + "\n",
        html_body="<p>" + "x" * 5000 + "</p>\n",
        from_email="Ünïcödé Sender <sender@example.com>",
        to=[f"Recipient {i} <r{i}@example.com>" for i in range(60)],
        cc=["cc@example.com"],
        reply_to=["reply@example.com"],
        headers={"X-Long": "word " * 500, "X-Longer-Token": "y" * 2000},
        attachments=[
            Attachment("ü" * 150 + ".bin", BINARY),
            Attachment("inline.png", PNG, content_id="inline"),
            Attachment("text.txt", "text\nattachment\r\n" + "z" * 4000),
        ],
    )


def test_crlf_everywhere_and_no_long_lines() -> None:
    """Every line of a complex message ends in CRLF and is at most 998 octets."""
    assert_wire_format(render(everything_message()))


def test_chunks_join_to_the_message_and_split_no_crlf() -> None:
    """render_chunks gives chunks that join to a whole message, never splitting a CRLF."""
    chunks = render_chunks(everything_message(), message_id="<fixed@example.com>", date="fixed")

    assert len(chunks) > 1
    assert not any(chunk.endswith(b"\r") for chunk in chunks)
    assert not any(chunk.startswith(b"\n") for chunk in chunks)
    assert_wire_format(b"".join(chunks))
    parsed = parse(b"".join(chunks))
    assert (parsed["Message-ID"], parsed["Date"]) == ("<fixed@example.com>", "fixed")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"subject": "s" * 2000},
        {"subject": "word " * 400},
        {"subject": "ü" * 2000},
        {"body": "w" * 5000},
        {"body": "ü" * 5000},
        {"body": ("w" * 5000 + "\n") * 3},
        {"headers": {"X-Long": "v" * 3000}},
    ],
    ids=[
        "subject-one-word",
        "subject-words",
        "subject-non-ascii",
        "body-word",
        "body-non-ascii",
        "body-lines",
        "header",
    ],
)
def test_long_values_are_folded_and_decode_back(kwargs: dict[str, Any]) -> None:
    """Very long subjects, header values and body lines are folded or encoded, then decode back."""
    message = make(**kwargs)

    data = render(message)

    assert_wire_format(data)
    parsed = parse(data)
    if "subject" in kwargs:
        assert parsed["Subject"] == kwargs["subject"]
    if "body" in kwargs:
        assert text_of(parsed) == kwargs["body"]
    if "headers" in kwargs:
        assert parsed["X-Long"] == kwargs["headers"]["X-Long"]


# -- generated messages --------------------------------------------------------------------------

# Visible text with single spaces between words: leading, trailing and runs of
# whitespace are not significant in RFC 5322 unstructured headers.
_WORD = st.text(
    st.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp")), min_size=1, max_size=30
)
_PHRASE = st.lists(_WORD, max_size=12).map(" ".join)


@settings(max_examples=150, deadline=None)
@given(subject=_PHRASE, body=st.text(st.characters(blacklist_categories=("Cs",)), max_size=2000))
def test_generated_subjects_and_bodies_round_trip(subject: str, body: str) -> None:
    """Any subject and body renders to valid wire format and parses back equal."""
    message = make(subject=subject, body=body.replace("\0", ""))

    data = render(message)

    assert_wire_format(data)
    parsed = parse(data)
    assert parsed["Subject"] == subject
    assert text_of(parsed) == re.sub(r"\r\n|\r", "\n", body.replace("\0", ""))


@settings(max_examples=150, deadline=None)
@given(
    # Python's parser unquotes a decoded filename that starts and ends with '"'.
    filename=_PHRASE.filter(lambda f: bool(f) and not (f[0] == f[-1] == '"')),
    content=st.binary(max_size=600),
    name=_WORD.filter(lambda w: len(w.encode()) <= 40 and not set(w) & set('<>"\\')),
)
def test_generated_attachments_and_names_round_trip(
    filename: str, content: bytes, name: str
) -> None:
    """Any filename, content and (one-word) display name survive rendering exactly."""
    message = make(to=[f'"{name}" <to@example.com>'], attachments=[Attachment(filename, content)])

    data = render(message)

    assert_wire_format(data)
    parsed = parse(data)
    assert parsed["To"].addresses[0].display_name == name
    [attachment] = parsed.iter_attachments()
    assert attachment.get_filename() == filename
    assert attachment.get_payload(decode=True) == content
