"""Properties of the renderer and of dot-stuffing, for generated input (hypothesis).

For any message the library accepts (any Unicode text in subject, body and
display names, custom headers, attachments with random bytes and names):

* ``amsdal_mail.mime.render`` gives bytes that ``email.message_from_bytes``
  (``email.policy.default``) parses back to an equal message;
* those bytes use CRLF only, hold no NUL and no line over 998 octets, and
  a text part ends where its text ends (no line break added);
* the chunks of ``render_chunks`` join to the message without splitting a CRLF.

For any chunks of CRLF-only data, ``amsdal_mail.smtp.transaction.dot_stuff`` gives a
DATA payload that ends the data exactly once, at its end, and that a server
un-stuffs back to the original.
"""

from __future__ import annotations

import email
import email.header
import email.message
import email.policy
import email.utils
import re
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from amsdal_mail import Attachment, EmailMessage, InvalidMessageError
from amsdal_mail.message import normalize_line_endings
from amsdal_mail.mime import render, render_chunks
from amsdal_mail.smtp.transaction import dot_stuff
from tests.faulty_smtpd import unstuff

BARE_LINE_BREAK = re.compile(rb"\r(?!\n)|(?<!\r)\n")
LINE_BREAKS = re.compile(r"\r\n|\r|\n")
PROPERTY_SETTINGS = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

# Any character a str can encode; header-bound text cannot hold CR, LF or NUL
# (the library refuses them), bodies cannot hold NUL.
_ANY = st.characters(blacklist_categories=("Cs",))
_HEADER_CHAR = st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\0")
_header_text = st.text(_HEADER_CHAR, max_size=120)
_body_text = st.text(_ANY.filter(lambda c: c != "\0"), max_size=1500)
_local = st.from_regex(r"[a-z0-9][a-z0-9._+-]{0,20}[a-z0-9]", fullmatch=True).filter(
    lambda s: ".." not in s
)
_domain = st.sampled_from(["example.com", "mail.example.org", "bücher.example", "xn--p1ai.test"])
_address = st.builds(lambda local, domain: f"{local}@{domain}", _local, _domain)
_display = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters='\r\n\0<>"\\'), max_size=60
)
_named = st.one_of(_address, st.builds(lambda name, addr: f'"{name}" <{addr}>', _display, _address))
_header_name = st.from_regex(r"X-[A-Za-z0-9][A-Za-z0-9-]{0,30}", fullmatch=True)
_filename = st.text(_HEADER_CHAR, min_size=1, max_size=80)
_attachment = st.builds(
    Attachment,
    filename=_filename,
    content=st.binary(max_size=2000),
    mimetype=st.sampled_from(
        [None, "application/octet-stream", "image/png", "application/pdf", "text/csv"]
    ),
)


@st.composite
def messages(draw: st.DrawFn) -> EmailMessage:
    """Draw a message the library accepts."""
    fields: dict[str, Any] = {
        "subject": draw(_header_text),
        "body": draw(_body_text),
        "from_email": draw(_named),
        "to": draw(st.lists(_named, min_size=1, max_size=4)),
        "cc": draw(st.lists(_named, max_size=3)),
        "bcc": draw(st.lists(_address, max_size=2)),
        "headers": draw(st.dictionaries(_header_name, _header_text, max_size=4)),
        "attachments": draw(st.lists(_attachment, max_size=3)),
        "html_body": draw(st.none() | _body_text),
    }
    try:
        return EmailMessage(**fields)
    except InvalidMessageError:
        assume(False)
        raise


def parse(data: bytes) -> email.message.EmailMessage:
    """Parse wire bytes with the modern policy."""
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(parsed, email.message.EmailMessage)
    return parsed


def addresses(data: bytes, name: str) -> list[tuple[str, str]]:
    """Return (display name, address) pairs of header ``name``, decoded per RFC 2047.

    The legacy API is used because ``email.policy.default`` keeps the folding
    space between two adjacent encoded-words of a display name (CPython's
    own output round-trips the same way); RFC 2047 section 6.2 drops it.
    """
    legacy = email.message_from_bytes(data, policy=email.policy.compat32)
    return [
        (str(email.header.make_header(email.header.decode_header(display))), address)
        for display, address in email.utils.getaddresses(legacy.get_all(name, []))
    ]


def same_header_value(received: str | None, sent: str) -> bool:
    """Return True when a header value came back as sent.

    Leading spaces and tabs right after the colon are not significant to
    readers (``email`` strips them) unless encoded, so they may go; all
    other whitespace must stay.
    """
    return received in (sent, sent.lstrip(" \t"))


def phrase(name: str) -> str:
    """Return a display name as RFC 5322 means it: runs of spaces and tabs as one space.

    A display name is a phrase, words separated by folding white space, so
    runs of it and leading or trailing white space carry no meaning.
    """
    return re.sub(r"[ \t]+", " ", name).strip(" ")


def text_of(part: email.message.EmailMessage) -> str:
    """Return a text part's content with line endings normalised to LF."""
    content = part.get_content()
    assert isinstance(content, str)
    return LINE_BREAKS.sub("\n", content)


def expected_text(text: str) -> str:
    """Return body text as it must come back: LF line endings, nothing added or lost."""
    return LINE_BREAKS.sub("\n", text)


def assert_wire_format(data: bytes) -> None:
    """Check CRLF only, no NUL, no line over 998 octets (CRLF excluded).

    And the header section is printable ASCII, spaces and tabs only (RFC 5322:
    no control characters; non-ASCII as RFC 2047 / RFC 2231 encoding).
    """
    assert BARE_LINE_BREAK.search(data) is None
    assert b"\0" not in data
    assert max(len(line) for line in data.split(b"\r\n")) <= 998
    head = data.split(b"\r\n\r\n", 1)[0]
    assert re.fullmatch(rb"[\x20-\x7e\t\r\n]*", head), head


@PROPERTY_SETTINGS
@given(message=messages())
def test_rendered_messages_parse_back_equal(message: EmailMessage) -> None:
    """Any accepted message renders to valid wire format and parses back to the same message."""
    valid = message.validate()

    data = render(message)

    assert_wire_format(data)
    parsed = parse(data)
    assert not parsed.defects
    assert same_header_value(parsed["Subject"], message.subject)
    # Names that differ only in case are separate header lines, in order.
    sent_headers: dict[str, list[str]] = {}
    for name, value in message.headers.items():
        sent_headers.setdefault(name.lower(), []).append(value)
    for name, values in sent_headers.items():
        received = parsed.get_all(name) or []
        assert len(received) == len(values), name
        assert all(map(same_header_value, received, values)), (name, received, values)
    for name, expected in (("From", (valid.from_address,)), ("To", valid.to), ("Cc", valid.cc)):
        assert [(phrase(n), a) for n, a in addresses(data, name)] == [
            (phrase(a.display_name), f"{a.local_part}@{a.ascii_domain}") for a in expected
        ]
    assert "Bcc" not in parsed
    plain = parsed.get_body(("plain",))
    assert plain is not None
    assert text_of(plain) == expected_text(message.body)
    if message.html_body is not None:
        html = parsed.get_body(("html",))
        assert html is not None
        assert text_of(html) == expected_text(message.html_body)
    received = [part for part in parsed.walk() if part.get_content_disposition() == "attachment"]
    assert len(received) == len(message.attachments)
    for part, attachment in zip(received, message.attachments, strict=True):
        assert isinstance(attachment, Attachment)
        # get_filename() strips every kind of Unicode whitespace from the ends.
        assert part.get_filename() == (attachment.filename or "").strip()
        assert part.get_payload(decode=True) == attachment.data
        assert part.get_content_type() == attachment.mimetype


@PROPERTY_SETTINGS
@given(message=messages())
def test_rendered_chunks_never_split_a_crlf(message: EmailMessage) -> None:
    """The chunks join to the message and no CRLF is split between two of them."""
    chunks = render_chunks(message, message_id="<fixed@example.com>", date="Thu, 1 Jan 2026")

    assert not any(chunk.endswith(b"\r") for chunk in chunks)
    assert not any(chunk.startswith(b"\n") for chunk in chunks)
    data = b"".join(chunks)
    assert_wire_format(data)
    assert parse(data)["Message-ID"] == "<fixed@example.com>"


_line = st.binary(max_size=40).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
_dotty_line = st.one_of(_line, _line.map(lambda b: b"." + b), st.sampled_from([b".", b"..", b""]))
_chunks = st.lists(
    st.tuples(st.lists(_dotty_line, min_size=1, max_size=8), st.booleans()).map(
        # A chunk may end mid-line (a text part's last line has no CRLF of its own).
        lambda lines_end: b"\r\n".join(lines_end[0]) + (b"\r\n" if lines_end[1] else b"")
    ),
    max_size=6,
)


@settings(max_examples=300, deadline=None)
@given(chunks=_chunks)
def test_dot_stuffing_ends_the_data_exactly_once(chunks: list[bytes]) -> None:
    """Stuffed data holds CRLF.CRLF only at its end, and un-stuffs back to the chunks."""
    payload = b"".join(dot_stuff(chunks))

    assert payload.endswith(b".\r\n")
    assert (b"\r\n" + payload).find(b"\r\n.\r\n") == len(payload) - 3
    assert BARE_LINE_BREAK.search(payload) is None
    data = b"".join(chunks)
    # The CRLF before the final dot ends the last line; one is added if missing.
    assert unstuff(payload) == (data if not data or data.endswith(b"\r\n") else data + b"\r\n")


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300) | st.text(max_size=200).map(str.encode))
def test_normalised_line_endings_are_crlf_only(data: bytes) -> None:
    """Any mix of CR, LF and CRLF becomes CRLF only, keeping every line break."""
    normalised = normalize_line_endings(data)

    assert BARE_LINE_BREAK.search(normalised) is None
    assert normalised.count(b"\r\n") == len(re.findall(rb"\r\n|\r|\n", data))
    assert normalised.replace(b"\r\n", b"") == data.replace(b"\r", b"").replace(b"\n", b"")
