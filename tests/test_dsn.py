"""DSN requests (RFC 3461): the DSN value, xtext, and the MAIL / RCPT command text (pure)."""

from __future__ import annotations

import pytest

from amsdal_mail import DSN, EmailMessage, InvalidMessageError
from amsdal_mail.message.dsn import merge_dsn, parse_notify, parse_ret, utf8_addr_xtext, xtext
from amsdal_mail.smtp.transaction import mail_command, prepare_envelope, rcpt_command

DSN_FEATURES = {"dsn": "", "size": "", "8bitmime": "", "smtputf8": ""}
NO_DSN = {"size": "", "8bitmime": "", "smtputf8": ""}
MID = "<1.abc@example.com>"


def _envelope(dsn: DSN | None = None, default: DSN | None = None, to: str = "b@example.com"):
    message = EmailMessage(
        "Hi", "Body", "a@example.com", [to], headers={"Message-ID": MID}, dsn=dsn
    )
    return prepare_envelope(message.validate(), dsn=default)


@pytest.mark.parametrize(
    ("text", "encoded"),
    [
        ("plain@example.com", "plain@example.com"),
        ("a+b@example.com", "a+2Bb@example.com"),
        ("a=b@example.com", "a+3Db@example.com"),
        ("with space", "with+20space"),
        ("tab\there", "tab+09here"),
        ("del\x7f", "del+7F"),
        ("<id@host>", "<id@host>"),
        ("!~", "!~"),
        ("", ""),
    ],
)
def test_xtext(text: str, encoded: str) -> None:
    """'+', '=' and characters outside 33..126 become +XX (RFC 3461 section 4)."""
    assert xtext(text) == encoded


def test_xtext_refuses_non_ascii() -> None:
    """xtext holds US-ASCII only."""
    with pytest.raises(ValueError, match="US-ASCII"):
        xtext("é")


@pytest.mark.parametrize(
    ("address", "encoded"),
    [
        ("josé@example.com", "jos\\x{E9}@example.com"),
        ("用户@example.com", "\\x{7528}\\x{6237}@example.com"),
        ("a+b=c\\d@example.com", "a\\x{2B}b\\x{3D}c\\x{5C}d@example.com"),
        ("emoji😀@example.com", "emoji\\x{1F600}@example.com"),
    ],
)
def test_utf8_addr_xtext(address: str, encoded: str) -> None:
    """RFC 6533's utf-8-addr-xtext: \\x{HEX} for non-ASCII and for '\\', '+', '='."""
    assert utf8_addr_xtext(address) == encoded
    assert encoded.isascii()


@pytest.mark.parametrize(
    ("given", "words"),
    [
        ("failure", ("failure",)),
        ("failure,delay", ("failure", "delay")),
        ("DELAY, Failure", ("failure", "delay")),
        ("success,failure,delay", ("success", "failure", "delay")),
        (["delay", "success"], ("success", "delay")),
        ("never", ("never",)),
        ("failure,failure", ("failure",)),
    ],
)
def test_parse_notify(given: str | list[str], words: tuple[str, ...]) -> None:
    """NOTIFY words are read case-insensitively, each once, in RFC order."""
    assert parse_notify(given) == words


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("failure,sometimes", "unknown NOTIFY word(s) 'sometimes'"),
        ("never,failure", "NOTIFY=never cannot be combined"),
        ("", "needs at least one word"),
        (" , ", "needs at least one word"),
        (42, "must be a comma-separated string"),
    ],
)
def test_parse_notify_refuses(given: object, message: str) -> None:
    """Bad NOTIFY input is refused with a message naming the problem."""
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_notify(given)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("given", "word"), [("headers", "headers"), ("FULL", "full"), ("hdrs", "headers")]
)
def test_parse_ret(given: str, word: str) -> None:
    """RET is headers (HDRS) or full."""
    assert parse_ret(given) == word


def test_parse_ret_refuses() -> None:
    """Any other RET is refused, naming the accepted values."""
    with pytest.raises(ValueError, match="must be 'headers' or 'full', got 'body'"):
        parse_ret("body")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"notify": "failure,bogus"}, "DSN notify unknown NOTIFY word(s) 'bogus'"),
        ({"notify": "never,delay"}, "DSN notify NOTIFY=never cannot be combined"),
        ({"ret": "body"}, "DSN ret must be 'headers' or 'full'"),
        ({"envid": "é"}, "DSN envid must be printable US-ASCII"),
        ({"envid": "x" * 101}, "more than the 100 RFC 3461 allows"),
        ({"envid": "+" * 40}, "120 characters xtext-encoded"),
    ],
)
def test_dsn_refuses_bad_values(kwargs: dict[str, str], message: str) -> None:
    """A bad DSN value is an InvalidMessageError with field 'dsn', naming the value."""
    with pytest.raises(InvalidMessageError) as info:
        DSN(**kwargs)  # type: ignore[arg-type]
    assert message in str(info.value)
    assert info.value.field == "dsn"


def test_message_refuses_a_dsn_that_is_not_one() -> None:
    """EmailMessage(dsn=...) takes a DSN object."""
    with pytest.raises(InvalidMessageError, match="dsn must be an amsdal_mail.DSN, not dict"):
        EmailMessage("s", "b", "a@example.com", ["b@example.com"], dsn={"notify": "never"})  # type: ignore[arg-type]


# (message DSN, backend DSN, MAIL FROM parameters, RCPT TO parameters), server offering DSN.
COMMANDS = [
    (None, None, "", ""),
    (
        DSN(notify="failure,delay"),
        None,
        f" ENVID={MID}",
        " NOTIFY=FAILURE,DELAY ORCPT=rfc822;b@example.com",
    ),
    (
        DSN(notify="success,failure", ret="full", envid="batch+7=a b"),
        None,
        " RET=FULL ENVID=batch+2B7+3Da+20b",
        " NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b@example.com",
    ),
    (None, DSN(notify="never"), f" ENVID={MID}", " NOTIFY=NEVER ORCPT=rfc822;b@example.com"),
    (None, DSN(ret="headers"), f" RET=HDRS ENVID={MID}", " ORCPT=rfc822;b@example.com"),
    (
        DSN(ret="full"),
        DSN(notify="failure", ret="headers"),
        f" RET=FULL ENVID={MID}",
        " NOTIFY=FAILURE ORCPT=rfc822;b@example.com",
    ),
    (
        DSN(notify="success"),
        DSN(notify="failure", ret="headers"),
        f" RET=HDRS ENVID={MID}",
        " NOTIFY=SUCCESS ORCPT=rfc822;b@example.com",
    ),
    (DSN(envid="only-envid"), None, "", ""),
]


@pytest.mark.parametrize(("own", "default", "mail", "rcpt"), COMMANDS)
def test_commands_with_dsn_offered(
    own: DSN | None, default: DSN | None, mail: str, rcpt: str
) -> None:
    """RET and ENVID go on MAIL, NOTIFY and ORCPT on RCPT; the message's fields win."""
    envelope = _envelope(own, default)
    size = envelope.size
    assert (
        mail_command(envelope, DSN_FEATURES)
        == f"MAIL FROM:<a@example.com> SIZE={size}{mail}\r\n".encode()
    )
    assert (
        rcpt_command(envelope, "b@example.com", DSN_FEATURES)
        == f"RCPT TO:<b@example.com>{rcpt}\r\n".encode()
    )


@pytest.mark.parametrize(("own", "default", "mail", "rcpt"), COMMANDS)
def test_commands_without_dsn_offered(
    own: DSN | None, default: DSN | None, mail: str, rcpt: str
) -> None:
    """Without DSN in the server's EHLO nothing is added."""
    envelope = _envelope(own, default)
    assert (
        mail_command(envelope, NO_DSN)
        == f"MAIL FROM:<a@example.com> SIZE={envelope.size}\r\n".encode()
    )
    assert rcpt_command(envelope, "b@example.com", NO_DSN) == b"RCPT TO:<b@example.com>\r\n"


def test_orcpt_is_xtext_encoded() -> None:
    """ORCPT carries the address xtext-encoded: '+' and '=' as +2B, +3D."""
    envelope = _envelope(DSN(notify="failure"), to="a+tag=x@example.com")
    command = rcpt_command(envelope, "a+tag=x@example.com", DSN_FEATURES)
    assert (
        command
        == b"RCPT TO:<a+tag=x@example.com> NOTIFY=FAILURE ORCPT=rfc822;a+2Btag+3Dx@example.com\r\n"
    )


def test_orcpt_of_a_non_ascii_local_part_uses_the_utf8_type() -> None:
    """A non-ASCII local part (SMTPUTF8) gets ORCPT=utf-8;utf-8-addr-xtext (RFC 6533)."""
    envelope = _envelope(DSN(notify="failure"), to="josé@example.com")
    assert envelope.smtputf8
    assert mail_command(envelope, DSN_FEATURES).endswith(
        f" SMTPUTF8 BODY=8BITMIME ENVID={MID}\r\n".encode()
    )
    command = rcpt_command(envelope, "josé@example.com", DSN_FEATURES)
    expected = "RCPT TO:<josé@example.com> NOTIFY=FAILURE ORCPT=utf-8;jos\\x{E9}@example.com\r\n"
    assert command == expected.encode()


def test_envid_defaults_to_the_rendered_message_id() -> None:
    """Without a Message-ID header, ENVID is the Message-ID the renderer writes."""
    message = EmailMessage(
        "Hi", "Body", "a@example.com", ["b@example.com"], dsn=DSN(notify="delay")
    )
    envelope = prepare_envelope(message.validate())
    data = b"".join(envelope.chunks).decode()
    assert envelope.dsn is not None and envelope.dsn.envid is not None
    assert f"\r\nMessage-ID: {envelope.dsn.envid}\r\n" in data
    assert envelope.dsn.envid.endswith("@example.com>")


def test_a_message_id_too_long_for_envid_leaves_envid_out() -> None:
    """A Message-ID longer than ENVID allows (100) is not sent as ENVID; the rest is."""
    long_id = "<" + "x" * 120 + "@example.com>"
    merged = merge_dsn(DSN(notify="failure"), None, long_id)
    assert merged == DSN(notify=("failure",), ret=None, envid=None)


def test_without_any_request_no_message_id_is_invented() -> None:
    """No DSN wanted: the envelope has none and the renderer picks the Message-ID itself."""
    message = EmailMessage("Hi", "Body", "a@example.com", ["b@example.com"])
    envelope = prepare_envelope(message.validate())
    assert envelope.dsn is None
    assert b"Message-ID: <" in envelope.chunks[0]
