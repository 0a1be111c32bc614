"""Messages are validated data: bad addresses and header injection are refused on construction."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from amsdal_mail import (
    Attachment,
    EmailMessage,
    InvalidAddressError,
    InvalidMessageError,
    MailError,
    RecipientStatus,
    SendStatus,
    send_mail,
)
from amsdal_mail.message import parse_address

FROM = "sender@example.com"


def make(**kwargs: Any) -> EmailMessage:
    """Return a message with valid defaults for everything not given."""
    kwargs.setdefault("subject", "Subject")
    kwargs.setdefault("body", "Body")
    kwargs.setdefault("from_email", FROM)
    kwargs.setdefault("to", ["rcpt@example.com"])
    return EmailMessage(**kwargs)


# -- addresses ----------------------------------------------------------------------------

INVALID_ADDRESSES = [
    "to@",
    "@example.com",
    "a b@c.com",
    "a@@b.com",
    "a@b@c.com",
    "user@",
    "user@.example.com",
    "user@example..com",
    "user@-bad.example",
    "a.@example.com",
    "..a@example.com",
    "root",
    "",
    "<>",
    "Name <missing-domain@>",
    "Two <a@example.com> <b@example.com>",
]


@pytest.mark.parametrize("address", INVALID_ADDRESSES)
@pytest.mark.parametrize("field", ["to", "cc", "bcc", "reply_to", "from_email"])
def test_invalid_address_is_refused_naming_the_field(field: str, address: str) -> None:
    """A malformed address raises InvalidAddressError naming the field and the address."""
    kwargs: dict[str, Any] = {field: address if field == "from_email" else [address]}
    if field == "from_email" and not address:
        expected: type[InvalidMessageError] = InvalidMessageError  # missing, not malformed
    else:
        expected = InvalidAddressError

    with pytest.raises(expected) as excinfo:
        make(**kwargs)

    error = excinfo.value
    assert isinstance(error, ValueError) and isinstance(error, MailError)
    assert error.field == field
    assert field in str(error)
    if isinstance(error, InvalidAddressError):
        assert error.address == address
        assert repr(address) in str(error)
        # Django's words, which code written for Django matches on.
        assert str(error).startswith(f"Invalid address in {field}: ")


def test_invalid_address_text_has_djangos_words_and_the_reason() -> None:
    """The text says "Invalid address" as Django's ValueError does, then the field and why."""
    with pytest.raises(InvalidAddressError) as excinfo:
        make(to=["x@"])

    assert str(excinfo.value) == "Invalid address in to: 'x@' (the domain after '@' is missing)"


def test_an_address_that_is_not_a_str_is_an_invalid_address() -> None:
    """A non-str address is refused with the same words."""
    with pytest.raises(InvalidAddressError, match="^Invalid address in cc: 42 "):
        make(cc=[42])


QUOTED_LOCAL_PARTS = [
    '"john..doe"@example.com',
    '"john doe"@example.com',
    '".leading.and.trailing."@example.com',
    '"with \\"escaped\\" quote"@example.com',
    '"back\\\\slash"@example.com',
    '"<angle>,;:@specials"@example.com',
    '""@example.com',
    '"' + "x" * 62 + '"@example.com',  # 64 octets as written: the limit
]


@pytest.mark.parametrize("written", QUOTED_LOCAL_PARTS)
def test_a_quoted_local_part_is_kept_exactly_as_written(written: str) -> None:
    """A valid RFC 5321 quoted string is accepted and used as written, quotes and escapes too."""
    address = parse_address(written)

    assert address.addr_spec == written
    assert address.envelope == written
    assert not address.needs_smtputf8
    assert make(to=[written]).recipients() == [written]


def test_a_quoted_local_part_keeps_its_form_inside_angle_brackets() -> None:
    """'Name <"a<b"@example.com>': the quoted '<' is part of the address, not its start."""
    address = parse_address('"Doe, John" <"john <doe>"@example.com>')

    assert (address.display_name, address.local_part) == ("Doe, John", '"john <doe>"')
    assert address.envelope == '"john <doe>"@example.com'


def test_a_non_ascii_quoted_local_part_needs_smtputf8() -> None:
    """Non-ASCII in a quoted local part needs SMTPUTF8, like any non-ASCII local part."""
    address = parse_address('"jöhn doe"@bücher.example')

    assert address.needs_smtputf8
    assert address.envelope == '"jöhn doe"@xn--bcher-kva.example'


@pytest.mark.parametrize(
    ("written", "why"),
    [
        ("john..doe@example.com", "misplaced '.'"),
        ('"unterminated@example.com', "malformed quoted local part"),
        ('"a"b@example.com', "characters after the quoted local part"),
        ('"a"@b@example.com', "more than one '@'"),
        ('"tab\there"@example.com', "malformed quoted local part"),
        ('"bad \\\x01 escape"@example.com', "malformed quoted local part"),
        ('"quoted"', "no '@'"),
        ('"quoted"@', "the domain after '@' is missing"),
        ('"quoted"@exa mple.com', "special characters in the domain"),
        ('"' + "x" * 63 + '"@example.com', "longer than 64 octets"),
    ],
)
def test_malformed_quoted_local_parts_are_refused(written: str, why: str) -> None:
    """Unbalanced quotes, controls, text after the quote, and 65+ octets are refused."""
    with pytest.raises(InvalidAddressError, match="Invalid address") as excinfo:
        parse_address(written, field="to")

    assert why in str(excinfo.value)


@pytest.mark.parametrize("brk", ["\r\n", "\n", "\r", "\0"], ids=["crlf", "lf", "cr", "nul"])
def test_line_breaks_in_a_quoted_local_part_are_refused(brk: str) -> None:
    """CR, LF and NUL stay refused inside quotes, where they would end an SMTP command."""
    with pytest.raises(InvalidAddressError, match="line break or NUL"):
        make(to=[f'"john{brk}RCPT TO:<x@evil.example>"@example.com'])


def test_bare_local_name_needs_allow_local_addresses() -> None:
    """A bare name such as 'root' is refused by default and accepted when allowed."""
    with pytest.raises(InvalidAddressError, match="root"):
        make(to=["root"])

    message = make(to=["root", "Admin <postmaster>"], allow_local_addresses=True)

    assert message.recipients() == ["root", "postmaster"]


@pytest.mark.parametrize(
    ("written", "addr_spec", "display_name"),
    [
        ("plain@example.com", "plain@example.com", ""),
        ("Ann Example <ann@example.com>", "ann@example.com", "Ann Example"),
        ('"Doe, John" <john@example.com>', "john@example.com", "Doe, John"),
        ("Zoë Példa <zoe@example.com>", "zoe@example.com", "Zoë Példa"),
        ("first.last+tag@mail.example.co.uk", "first.last+tag@mail.example.co.uk", ""),
        ("user@[192.0.2.1]", "user@[192.0.2.1]", ""),
        ("user@bücher.example", "user@bücher.example", ""),
    ],
)
def test_valid_address_forms(written: str, addr_spec: str, display_name: str) -> None:
    """Bare addresses, 'Name <addr>' forms and non-ASCII display names are accepted."""
    address = parse_address(written)

    assert (address.addr_spec, address.display_name) == (addr_spec, display_name)
    assert make(to=[written]).recipients() == [addr_spec]


def test_idn_domain_envelope_is_punycode() -> None:
    """An IDN domain is kept as written for status keys and punycode for the envelope."""
    address = parse_address("User <user@bücher.example>")

    assert address.addr_spec == "user@bücher.example"
    assert address.envelope == "user@xn--bcher-kva.example"


def test_one_string_is_one_recipient() -> None:
    """to, cc, bcc and reply_to accept one string as a one-element list."""
    message = make(to="a@example.com", cc="b@example.com", bcc="c@example.com")

    assert message.to == ["a@example.com"]
    assert message.recipients() == ["a@example.com", "b@example.com", "c@example.com"]


def test_each_recipient_is_counted_once() -> None:
    """An address in to, cc and bcc (in any case) is one recipient, first as written."""
    message = make(
        to=["A@example.com", "b@example.com"], cc=["a@example.com"], bcc=["B@EXAMPLE.COM"]
    )

    assert message.recipients() == ["A@example.com", "b@example.com"]


@pytest.mark.parametrize("kwargs", [{"to": []}, {"to": None}, {"to": [], "reply_to": ["r@x.com"]}])
def test_message_without_recipients_is_refused(kwargs: dict[str, Any]) -> None:
    """A message with no to, cc or bcc is refused."""
    with pytest.raises(InvalidMessageError, match="no recipients") as excinfo:
        make(**kwargs)

    assert excinfo.value.field == "to"


def test_send_mail_with_empty_recipient_list_is_refused() -> None:
    """send_mail with an empty recipient list raises before any backend is used."""
    with pytest.raises(InvalidMessageError, match="no recipients"):
        send_mail("Subject", "Body", FROM, [])


def test_missing_sender_is_refused() -> None:
    """from_email is required."""
    with pytest.raises(InvalidMessageError) as excinfo:
        make(from_email=None)

    assert excinfo.value.field == "from_email"


# -- header injection --------------------------------------------------------------------------

BREAKS = ["\r\n", "\n", "\r", "\0"]


@pytest.mark.parametrize("brk", BREAKS, ids=["crlf", "lf", "cr", "nul"])
@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"subject": "Hello{brk}Bcc: victim@example.com"}, "subject"),
        ({"headers": {"X-Note": "fine{brk}Bcc: victim@example.com"}}, "header 'X-Note'"),
        ({"headers": {"X-Note{brk}Bcc": "value"}}, "headers"),
        ({"to": ["Evil{brk}Bcc: victim@example.com <a@example.com>"]}, "to"),
        ({"cc": ["Evil{brk}Name <a@example.com>"]}, "cc"),
        ({"reply_to": ["Evil{brk}Name <a@example.com>"]}, "reply_to"),
        ({"from_email": "Evil{brk}Name <a@example.com>"}, "from_email"),
    ],
    ids=["subject", "header-value", "header-name", "to-name", "cc-name", "reply-to", "from"],
)
def test_line_breaks_in_header_values_are_refused(
    brk: str, kwargs: dict[str, Any], field: str
) -> None:
    """CR, LF or NUL in anything that becomes a header raises InvalidMessageError naming it."""
    filled = _fill(kwargs, brk)

    with pytest.raises(InvalidMessageError) as excinfo:
        make(**filled)

    error = excinfo.value
    assert isinstance(error, ValueError) and isinstance(error, MailError)
    assert error.field == field
    # The message names the field ("header name ..." for a bad header name).
    assert {"headers": "header name"}.get(field, field) in str(error)


@pytest.mark.parametrize("brk", BREAKS, ids=["crlf", "lf", "cr", "nul"])
@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"filename": "a{brk}Content-Type: text/html.txt"}, "attachment filename"),
        ({"content_id": "logo{brk}X-Evil: 1"}, "attachment content_id"),
    ],
    ids=["filename", "content_id"],
)
def test_line_breaks_in_attachment_headers_are_refused(
    brk: str, kwargs: dict[str, Any], field: str
) -> None:
    """CR, LF or NUL in an attachment's filename or Content-ID is refused, naming the field."""
    options = {"filename": "logo.png", "content": b"data", **_fill(kwargs, brk)}

    with pytest.raises(InvalidMessageError) as excinfo:
        Attachment(**options)

    assert excinfo.value.field == field
    assert field in str(excinfo.value)


def test_validate_reads_the_fields_each_time() -> None:
    """validate() checks afresh: a list changed in place gives a new result or an error."""
    message = make()
    message.to.append("second@example.com")

    assert [a.addr_spec for a in message.validate().recipients] == [
        "rcpt@example.com",
        "second@example.com",
    ]
    message.to[0] = "broken@"
    with pytest.raises(InvalidAddressError, match="broken@"):
        message.validate()
    message.to[0] = "fixed@example.com"
    assert message.recipients() == ["fixed@example.com", "second@example.com"]


def test_an_unknown_layout_is_refused() -> None:
    """layout is 'standard' or 'django'; anything else names the field."""
    with pytest.raises(InvalidMessageError, match="layout") as excinfo:
        make(layout="fancy")

    assert excinfo.value.field == "layout"


def test_changes_after_construction_are_validated_again() -> None:
    """The lists stay editable; validate() checks them again before sending."""
    message = make()
    message.subject = "New\r\nBcc: victim@example.com"

    with pytest.raises(InvalidMessageError) as excinfo:
        message.validate()

    assert excinfo.value.field == "subject"


@pytest.mark.parametrize("name", ["Content-Type", "content-transfer-encoding", "MIME-Version"])
def test_headers_set_by_the_renderer_cannot_be_given(name: str) -> None:
    """MIME structure headers belong to the renderer and are refused in headers."""
    with pytest.raises(InvalidMessageError, match=name) as excinfo:
        make(headers={name: "text/html"})

    assert excinfo.value.field == "headers"


@pytest.mark.parametrize("name", ["", "X Bad", "X:Bad", "Ünicode"])
def test_malformed_header_names_are_refused(name: str) -> None:
    """Header names must be printable ASCII without spaces or colons."""
    with pytest.raises(InvalidMessageError) as excinfo:
        make(headers={name: "value"})

    assert excinfo.value.field == "headers"


def test_body_may_contain_line_breaks() -> None:
    """Line breaks are what a body is made of; only header-bound values refuse them."""
    message = make(body="one\r\ntwo\nthree\rfour", html_body="<p>a</p>\n<p>b</p>")

    assert message.validate().body == "one\r\ntwo\nthree\rfour"


# -- attachments -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "mimetype"),
    [
        ("report.pdf", "application/pdf"),
        ("photo.PNG", "image/png"),
        ("notes.txt", "text/plain"),
        ("data.unknown-extension", "application/octet-stream"),
        (None, "application/octet-stream"),
    ],
)
def test_attachment_mimetype_is_guessed_from_the_filename(
    filename: str | None, mimetype: str
) -> None:
    """Without a mimetype, the attachment's type is guessed from its filename."""
    assert Attachment(filename, b"x").mimetype == mimetype


def test_attachment_keeps_given_mimetype_and_content() -> None:
    """A given mimetype wins over the guess; bytes stay bytes, str becomes UTF-8 data."""
    binary = Attachment("file.txt", b"\x00\xff", "application/x-custom")
    text = Attachment("note.txt", "Grüße")

    assert (binary.mimetype, binary.data) == ("application/x-custom", b"\x00\xff")
    assert text.data == "Grüße".encode()


def test_attachment_from_path(tmp_path: Path) -> None:
    """Attachment.from_path reads the file and takes its name."""
    path = tmp_path / "invoice.pdf"
    path.write_bytes(b"%PDF-1.4 fake")

    attachment = Attachment.from_path(path)

    assert (attachment.filename, attachment.content, attachment.mimetype) == (
        "invoice.pdf",
        b"%PDF-1.4 fake",
        "application/pdf",
    )


@pytest.mark.parametrize("mimetype", ["pdf", "text/", "a/b/c", "text/plain; charset=utf-8"])
def test_attachment_with_a_malformed_mimetype_is_refused(mimetype: str) -> None:
    """A mimetype must look like type/subtype."""
    with pytest.raises(InvalidMessageError, match="type/subtype"):
        Attachment("file", b"x", mimetype)


@pytest.mark.parametrize("content_id", ["", "a b", "<a><b>", "lögo"])
def test_attachment_with_a_malformed_content_id_is_refused(content_id: str) -> None:
    """A Content-ID must be a non-empty ASCII token."""
    with pytest.raises(InvalidMessageError, match="content_id"):
        Attachment("logo.png", b"x", content_id=content_id)


def test_content_id_angle_brackets_are_optional() -> None:
    """'<logo>' and 'logo' name the same Content-ID."""
    assert Attachment("a.png", b"x", content_id="<logo>").content_id == "logo"


def test_attachment_content_must_be_bytes_or_str() -> None:
    """Attachment content of another type is refused."""
    with pytest.raises(InvalidMessageError, match="bytes or str"):
        Attachment("a.bin", 12345)  # type: ignore[arg-type]


def test_attachments_must_be_attachment_objects() -> None:
    """A tuple in attachments is refused (Django-style tuples go through the Django app)."""
    with pytest.raises(InvalidMessageError) as excinfo:
        make(attachments=[("a.txt", "x", "text/plain")])

    assert excinfo.value.field == "attachments"


# -- statuses ----------------------------------------------------------------------------------


def test_recipient_status_words_are_checked() -> None:
    """RecipientStatus accepts only the known status words."""
    with pytest.raises(ValueError, match="delivered"):
        RecipientStatus(status="delivered")


def test_send_status_helpers() -> None:
    """is_success, has_failures and the recipient lists follow the status words."""
    status = SendStatus(
        recipients={
            "a@example.com": RecipientStatus("sent", code=250),
            "b@example.com": RecipientStatus("queued"),
            "c@example.com": RecipientStatus("rejected", code=550),
            "d@example.com": RecipientStatus("failed", code=450),
        }
    )

    assert status.status == {"sent", "queued", "rejected", "failed"}
    assert not status.is_success and status.has_failures
    assert status.get_successful_recipients() == ["a@example.com", "b@example.com"]
    assert status.get_failed_recipients() == ["c@example.com", "d@example.com"]
    assert repr(status).startswith("SendStatus(status={'failed', 'queued', 'rejected', 'sent'}")
    assert not SendStatus().is_success


def test_merged_status_keeps_the_worst_outcome_per_address() -> None:
    """In a batch aggregate, an address refused in one message stays refused."""
    first = SendStatus.uniform(["a@example.com"], "rejected", code=550, response="No")
    second = SendStatus.uniform(["a@example.com", "b@example.com"], "sent", code=250)

    merged = SendStatus.merge([first, second])

    assert merged.recipients["a@example.com"].status == "rejected"
    assert merged.recipients["b@example.com"].status == "sent"
    assert merged.esp_response == "250"


def _fill(kwargs: dict[str, Any], brk: str) -> dict[str, Any]:
    """Return ``kwargs`` with ``{brk}`` replaced by ``brk`` in every string, key or value."""

    def fill(value: Any) -> Any:
        if isinstance(value, str):
            return value.replace("{brk}", brk)
        if isinstance(value, list):
            return [fill(v) for v in value]
        if isinstance(value, dict):
            return {fill(k): fill(v) for k, v in value.items()}
        return value

    return {key: fill(value) for key, value in kwargs.items()}
