"""MIME rendering: what ``amsdal_mail.mime.render`` writes parses back to the same message."""

from __future__ import annotations

import base64
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
from amsdal_mail.mime.headers import encoded_words

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


# -- encoded-words -------------------------------------------------------------------------------

_Q_TEXT_WORD = re.compile(r"=\?utf-8\?q\?((?:[!-<>@-^`-~_]|=[0-9A-F]{2})*)\?=")
_Q_PHRASE_WORD = re.compile(r"=\?utf-8\?q\?((?:[A-Za-z0-9!*+\-/_]|=[0-9A-F]{2})*)\?=")
_B_WORD = re.compile(r"=\?utf-8\?b\?([A-Za-z0-9+/]*={0,2})\?=")


def raw_header(data: bytes, name: str) -> str:
    """Return header ``name`` as written (folded lines joined with CRLF)."""
    found = re.search(rb"(?:^|\r\n)" + name.encode() + rb": ?(.*?)\r\n(?![ \t])", data, re.S)
    assert found is not None, name
    return found.group(1).decode("ascii")


def test_subject_is_q_encoded_when_that_is_shorter() -> None:
    """The readable Q form is written when it is not longer than B, as Django and the stdlib do."""
    data = render(make(subject="Chère maman"))

    assert raw_header(data, "Subject") == "=?utf-8?q?Ch=C3=A8re_maman?="
    assert raw_header(render(make(subject="日本語")), "Subject") == "=?utf-8?b?5pel5pys6Kqe?="


def test_display_name_is_encoded_with_the_shorter_form() -> None:
    """A display name gets Q or B, whichever is shorter; both decode back."""
    data = render(make(to=["Françoise Dupont <f@example.com>", "山田太郎 <t@example.com>"]))

    assert raw_header(data, "To") == (
        "=?utf-8?q?Fran=C3=A7oise_Dupont?= <f@example.com>,\r\n =?utf-8?b?5bGx55Sw5aSq6YOO?= "
        "<t@example.com>"
    )
    names = [a.display_name for a in parse(data)["To"].addresses]
    assert names == ["Françoise Dupont", "山田太郎"]


@settings(max_examples=200, deadline=None)
@given(text=st.text(st.characters(blacklist_categories=("Cs",)), max_size=300))
def test_encoded_words_are_short_whole_and_use_only_allowed_q_characters(text: str) -> None:
    """Each word is at most 75 characters, holds whole characters, is the shorter form,
    and its Q text uses only what RFC 2047 5(1) (text) or 5(3) (phrases) allows."""
    for phrase, q_word in ((False, _Q_TEXT_WORD), (True, _Q_PHRASE_WORD)):
        words = encoded_words(text, phrase=phrase)
        decoded = []
        for word in words:
            assert len(word) <= 75
            q, b = q_word.fullmatch(word), _B_WORD.fullmatch(word)
            assert (q is None) != (b is None), word
            [(data, charset)] = decode_header(word)
            assert charset == "utf-8"
            piece = data.decode("utf-8")  # a split character would not decode
            other = len(base64.b64encode(data)) if q else len(_q_length(data, phrase))
            assert len(word) - 12 <= other, "the longer form was chosen"
            decoded.append(piece)
        assert "".join(decoded) == text


def _q_length(data: bytes, phrase: bool) -> str:
    """Return the Q text of ``data`` (its length is what matters here)."""
    literal = re.compile(rb"[A-Za-z0-9!*+\-/]" if phrase else rb"[!-<>@-^`-~]")
    return "".join(
        "_" if b == 0x20 else chr(b) if literal.fullmatch(bytes([b])) else f"={b:02X}" for b in data
    )


@pytest.mark.parametrize(
    "value",
    [
        "Überlange Betreffzeile mit Umlauten äöü " * 4,
        "日本語の件名です" * 10,
        "é" + "x" * 200,
        "Grüße",
        "x" * 60 + "ü",
    ],
)
@pytest.mark.parametrize("name", ["Subject", "X-A-Rather-Long-Custom-Header", "To"])
def test_encoded_headers_fold_within_78_characters(name: str, value: str) -> None:
    """Every line of an encoded header, the first one with its name, is at most 78 characters."""
    if name == "To":
        data = render(make(to=[f"{value.strip()} <to@example.com>"]))
    else:
        data = render(make(subject=value) if name == "Subject" else make(headers={name: value}))

    raw = raw_header(data, name)
    lines = f"{name}: {raw}".split("\r\n")
    assert max(len(line) for line in lines) <= 78, lines
    if name == "To":
        # Decoded directly: Python's address parser keeps the space between words.
        phrase = raw.replace("\r\n", "").rsplit(" <", 1)[0]
        assert str(make_header(decode_header(phrase))) == value.strip()
    else:
        assert parse(data)[name] == value


# -- transfer encodings ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "encoding", "cte"),
    [
        ("plain ASCII\n", "utf-8", "7bit"),
        ("Grüße aus Köln ☕\n", "utf-8", "8bit"),
        ("ü" * 499 + "\n", "utf-8", "8bit"),  # 998 octets: still within the line limit
        ("ü" * 500 + "\n", "utf-8", "quoted-printable"),
        ("x" * 999, "utf-8", "quoted-printable"),
        ("Déjà vu\n", "iso-8859-1", "quoted-printable"),
        ("ASCII in Latin-1\n", "iso-8859-1", "7bit"),
    ],
)
def test_text_parts_go_8bit_as_django_sends_them(body: str, encoding: str, cte: str) -> None:
    """UTF-8 text with lines of at most 998 octets is 8bit; longer lines or other charsets QP."""
    message = make(body=body, encoding=encoding, attachments=[Attachment("a.txt", body)])

    data = render(message)

    parsed = parse(data)
    plain = parsed.get_body(("plain",))
    [attachment] = parsed.iter_attachments()
    for part in (plain, attachment):
        assert part is not None
        assert part["Content-Transfer-Encoding"] == cte
        assert part.get_content_charset() == encoding
        assert text_of(part) == body
    if cte == "8bit":
        assert body.encode().rstrip(b"\n") in data
    assert_wire_format(data)


# -- layouts and multipart/related ----------------------------------------------------------------

LOGO = Attachment("logo.png", PNG, content_id="logo@example")
REPORT = Attachment("report.pdf", b"%PDF-1.4", "application/pdf")
HTML_WITH_LOGO = '<p><img src="cid:logo@example"></p>'


def tree(part: Any) -> Any:
    """Return the MIME tree of a parsed message as nested (type, [children]) or type."""
    if part.is_multipart():
        return (part.get_content_type(), [tree(p) for p in part.iter_parts()])
    return part.get_content_type()


def test_related_names_the_type_of_its_root() -> None:
    """multipart/related carries type= with the root part's type (RFC 2387)."""
    with_text = parse(render(make(html_body=HTML_WITH_LOGO, attachments=[LOGO])))
    html_only = parse(render(make(body=HTML_WITH_LOGO, content_subtype="html", attachments=[LOGO])))

    assert with_text.get_content_type() == "multipart/related"
    assert with_text.get_param("type") == "multipart/alternative"
    assert html_only.get_param("type") == "text/html"
    assert tree(html_only) == ("multipart/related", ["text/html", "image/png"])


def test_mixed_subtype_alone_keeps_the_standard_layout() -> None:
    """mixed_subtype names the attachments' multipart only; the layout is a separate choice."""
    message = make(body="", mixed_subtype="mixed", attachments=[REPORT])

    parsed = parse(render(message))

    # The standard layout keeps an empty body; Django's leaves it out.
    assert tree(parsed) == ("multipart/mixed", ["text/plain", "application/pdf"])
    message.layout = "django"
    assert tree(parse(render(message))) == ("multipart/mixed", ["application/pdf"])


@pytest.mark.parametrize("layout", ["standard", "django"])
def test_a_part_the_html_references_goes_into_related_with_it(layout: str) -> None:
    """In both layouts a cid: reference puts the part in multipart/related with the HTML."""
    message = make(
        body="Text",
        html_body=HTML_WITH_LOGO,
        attachments=[REPORT, LOGO],
        layout=layout,
    )

    parsed = parse(render(message))

    assert tree(parsed) == (
        "multipart/mixed",
        [
            (
                "multipart/related",
                [("multipart/alternative", ["text/plain", "text/html"]), "image/png"],
            ),
            "application/pdf",
        ],
    )
    [related, _] = parsed.iter_parts()
    assert related.get_param("type") == "multipart/alternative"


def test_the_django_layout_moves_only_referenced_parts() -> None:
    """In Django's layout a Content-ID nobody references stays an attachment, in order."""
    unused = Attachment("unused.png", PNG, content_id="unused@example")
    message = make(html_body=HTML_WITH_LOGO, attachments=[unused, LOGO], layout="django")

    parsed = parse(render(message))

    assert tree(parsed) == (
        "multipart/mixed",
        [
            (
                "multipart/related",
                [("multipart/alternative", ["text/plain", "text/html"]), "image/png"],
            ),
            "image/png",
        ],
    )
    assert [p["Content-ID"] for p in parsed.walk() if p.get_content_type() == "image/png"] == [
        "<logo@example>",
        "<unused@example>",
    ]


@pytest.mark.parametrize("layout", ["standard", "django"])
def test_a_raw_part_with_a_referenced_content_id_goes_into_related(layout: str) -> None:
    """A ready-made part's own Content-ID header counts, even folded: it joins the HTML."""
    raw = RawPart(
        b"Content-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n"
        b"Content-ID:\r\n <logo@example>\r\nContent-Disposition: inline\r\n\r\niVBORw0KGgo=\r\n"
    )
    message = make(html_body=HTML_WITH_LOGO, attachments=[raw], layout=layout)

    parsed = parse(render(message))

    assert raw.content_id == "logo@example"
    assert tree(parsed) == (
        "multipart/related",
        [("multipart/alternative", ["text/plain", "text/html"]), "image/png"],
    )


def test_a_raw_part_nobody_references_stays_an_attachment() -> None:
    """Without a cid: reference a raw part with a Content-ID is attached as before."""
    raw = RawPart(b"Content-Type: image/png\r\nContent-ID: <other@example>\r\n\r\nx")

    parsed = parse(render(make(html_body=HTML_WITH_LOGO, attachments=[raw])))

    assert tree(parsed) == (
        "multipart/mixed",
        [("multipart/alternative", ["text/plain", "text/html"]), "image/png"],
    )
