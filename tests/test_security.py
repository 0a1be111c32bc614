"""Bad input refused, nothing smuggled, TLS never given up, secrets kept out of sight.

Tests that send run twice through the ``sender`` fixture (sync smtplib twin,
async aiosmtplib twin) against a :class:`~tests.faulty_smtpd.FaultyServer`,
whose record of the raw DATA bytes and of every command line (with whether it
came over TLS) is what the assertions read.
"""

from __future__ import annotations

import base64
import email
import email.header
import email.message
import email.policy
import email.utils
import logging
import re
import ssl
import traceback
from collections.abc import Callable
from typing import Any

import pytest

from amsdal_mail import (
    Attachment,
    ConfigurationError,
    EmailMessage,
    InvalidAddressError,
    InvalidMessageError,
    MailError,
    NotSupportedError,
    TLSError,
    TransportError,
    get_connection,
)
from amsdal_mail.backends.smtp import SMTPBackend
from amsdal_mail.message import RawPart
from tests.conftest import Sender
from tests.faulty_smtpd import Attempt, FaultyServer

StartServer = Callable[..., FaultyServer]
SENDER = "sender@example.com"
RCPT = "rcpt@example.com"
PASSWORD = "S3cret-Pa55w0rd!"
BARE_LINE_BREAK = re.compile(rb"\r(?!\n)|(?<!\r)\n")


def backend_for(server: FaultyServer, **options: Any) -> SMTPBackend:
    """Return an SMTP backend for ``server`` with a short timeout."""
    options.setdefault("timeout", 5)
    connection = get_connection("smtp", host=server.host, port=server.port, **options)
    assert isinstance(connection, SMTPBackend)
    return connection


def message(**kwargs: Any) -> EmailMessage:
    """Return a valid message, with ``kwargs`` overriding its fields."""
    kwargs.setdefault("subject", "Hello")
    kwargs.setdefault("body", "Hello.\n")
    kwargs.setdefault("from_email", SENDER)
    kwargs.setdefault("to", RCPT)
    return EmailMessage(**kwargs)


def parsed(attempt: Attempt) -> email.message.EmailMessage:
    """Return the stored message parsed with the modern email policy."""
    result = email.message_from_bytes(attempt.data, policy=email.policy.default)
    assert isinstance(result, email.message.EmailMessage)
    return result


def header_lines(attempt: Attempt) -> list[bytes]:
    """Return the raw header lines of the stored message (folded lines kept apart)."""
    return attempt.data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")


def header_names(attempt: Attempt) -> list[str]:
    """Return the names of the header fields of the stored message, in order."""
    return [
        line.split(b":", 1)[0].decode().lower()
        for line in header_lines(attempt)
        if line[:1] not in (b" ", b"\t")
    ]


def display_names(attempt: Attempt, name: str) -> list[tuple[str, str]]:
    """Return (display name, address) pairs of header ``name``, decoded per RFC 2047.

    ``email.policy.default`` keeps the folding space between two adjacent
    encoded-words of a display name (RFC 2047 section 6.2 says to drop it;
    CPython round-trips its own output the same way), so names are decoded
    with the legacy API, which follows the RFC.
    """
    legacy = email.message_from_bytes(attempt.data, policy=email.policy.compat32)
    return [
        (str(email.header.make_header(email.header.decode_header(display))), address)
        for display, address in email.utils.getaddresses(legacy.get_all(name, []))
    ]


def secrets_of(password: str, username: str = "alice") -> list[str]:
    """Return the password and the forms AUTH PLAIN / LOGIN put it on the wire in."""
    return [
        password,
        base64.b64encode(password.encode()).decode(),
        base64.b64encode(f"\0{username}\0{password}".encode()).decode(),
    ]


# -- injection refused when the message is built --------------------------------------------

INJECTIONS = ["\r", "\n", "\0", "\r\nBcc: evil@attacker.example"]


def _attachment_name(bad: str) -> EmailMessage:
    return message(attachments=[Attachment(f"report{bad}.pdf", b"%PDF")])


def _content_id(bad: str) -> EmailMessage:
    return message(attachments=[Attachment("logo.png", b"\x89PNG", content_id=f"logo{bad}")])


BUILDERS: dict[str, tuple[Callable[[str], EmailMessage], str]] = {
    "subject": (lambda bad: message(subject=f"Hi{bad}there"), "subject"),
    "from display name": (lambda bad: message(from_email=f"Ann{bad}Lee <{SENDER}>"), "from_email"),
    "to display name": (lambda bad: message(to=f"Bob{bad} <{RCPT}>"), "to"),
    "cc address": (lambda bad: message(cc=f"c{bad}c@example.com"), "cc"),
    "bcc address": (lambda bad: message(bcc=[f"b@example.com{bad}"]), "bcc"),
    "reply_to": (lambda bad: message(reply_to=f"r{bad}@example.com"), "reply_to"),
    "header name": (lambda bad: message(headers={f"X-A{bad}B": "v"}), "headers"),
    "header value": (lambda bad: message(headers={"X-Tag": f"v{bad}w"}), "header 'X-Tag'"),
    "attachment filename": (_attachment_name, "attachment filename"),
    "content id": (_content_id, "attachment content_id"),
}


@pytest.mark.parametrize("bad", INJECTIONS, ids=["CR", "LF", "NUL", "CRLF-header"])
@pytest.mark.parametrize("where", list(BUILDERS))
def test_line_breaks_and_nul_in_header_bound_values_are_refused(where: str, bad: str) -> None:
    """CR, LF or NUL anywhere a header or command is built from is refused, naming the field."""
    build, field = BUILDERS[where]

    with pytest.raises(InvalidMessageError) as excinfo:
        build(bad)

    assert excinfo.value.field == field
    assert (field if field != "headers" else "header name") in str(excinfo.value)


@pytest.mark.parametrize("field", ["body", "html_body"])
def test_nul_in_a_body_is_refused(field: str) -> None:
    """A NUL byte in the text or HTML body is refused, naming the field."""
    with pytest.raises(InvalidMessageError, match=field) as excinfo:
        message(**{field: "one\0two"})

    assert excinfo.value.field == field


async def test_a_message_made_unsafe_after_it_was_built_sends_nothing(
    sender: Sender, faulty_server: StartServer
) -> None:
    """Fields changed after construction are checked again: the whole batch is refused."""
    server = faulty_server()
    good, bad = message(), message()
    bad.subject = "Hi\r\nBcc: evil@attacker.example"

    with pytest.raises(InvalidMessageError, match="subject"):
        await sender.send(backend_for(server), [good, bad])

    assert server.connections == 0


@pytest.mark.parametrize(
    "text",
    [
        "=?utf-8?q?x=0D=0ABcc:_evil@attacker.example?=",
        "=?utf-8?b?eA0KQmNjOiBldmlsQGF0dGFja2VyLmV4YW1wbGU=?=",
        "=?utf-8?q?=00?= =?iso-8859-1?q?=0A=0D?=",
    ],
)
async def test_encoded_words_in_user_input_stay_literal_text(
    sender: Sender, faulty_server: StartServer, text: str
) -> None:
    """Encoded-words typed by a user arrive as that literal text; no header line appears."""
    server = faulty_server()
    sent = message(
        subject=text,
        to=f"{text} <{RCPT}>",
        headers={"X-Note": text},
    )

    await sender.send(backend_for(server), [sent])

    [attempt] = server.messages
    received = parsed(attempt)
    assert received["Subject"] == text
    assert received["X-Note"] == text
    assert display_names(attempt, "To") == [(text, RCPT)]
    assert "bcc" not in header_names(attempt)
    assert sorted(header_names(attempt)) == sorted(
        ["from", "to", "subject", "date", "message-id", "x-note", "mime-version"]
        + ["content-type", "content-transfer-encoding"]
    )


# -- addresses validated, never repaired -------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "a@",
        "@b.example",
        "a b@c.example",
        "a@b@c.example",
        "plainname",
        "",
        "<>",
        "Name <>",
        "a@.example",
        "a@b..example",
        "a..b@example.com",
        ".a@example.com",
        "a@-b.example",
        # A quoted local part is valid (RFC 5321) and sent as written; an unclosed one is not.
        '"unclosed@example.com',
        "a@example.com, b@example.com",
        "<a@example.com",
        "a@exa mple.com",
    ],
)
@pytest.mark.parametrize("field", ["to", "cc", "bcc", "from_email", "reply_to"])
def test_malformed_addresses_are_refused_not_repaired(field: str, address: str) -> None:
    """A malformed address is an error naming the field; it is never rewritten to pass."""
    fields = {"to": RCPT, field: address}

    with pytest.raises(InvalidMessageError) as excinfo:
        message(**fields)

    assert excinfo.value.field == field
    if address:
        assert isinstance(excinfo.value, InvalidAddressError)


@pytest.mark.parametrize("empty", [[], (), None, ""])
def test_a_message_without_recipients_is_refused(empty: Any) -> None:
    """An empty recipient list is an error, never a transaction without RCPT."""
    with pytest.raises(InvalidMessageError) as excinfo:
        EmailMessage("Hi", "Hi.", SENDER, to=empty)

    assert excinfo.value.field == "to"


# -- no SMTP smuggling ---------------------------------------------------------------------------

SMUGGLING_BODIES = {
    "bare LF dot LF": "Hi\n.\nMAIL FROM:<evil@attacker.example>\nRCPT TO:<v@example.com>\nDATA\n",
    "bare CR dot CR": "Hi\r.\rMAIL FROM:<evil@attacker.example>\r\n",
    "CR dot CRLF": "Hi\r.\r\nMAIL FROM:<evil@attacker.example>\r\n",
    "CRLF dot LF": "Hi\r\n.\nMAIL FROM:<evil@attacker.example>\r\n",
    "LF dot CRLF": "Hi\n.\r\nMAIL FROM:<evil@attacker.example>\r\n",
    "CRLF dot CRLF": "Hi\r\n.\r\nMAIL FROM:<evil@attacker.example>\r\nRCPT TO:<v@example.com>\r\n",
    "dot lines": ".\n..\n.hidden\n. \n...\nend\n.",
    "starts with dot": ".\r\nMAIL FROM:<evil@attacker.example>",
    "bare CR and LF": "a\rb\nc\r\rd\n\ne\r\n\r\nf",
    "no final newline": "last line without newline.",
}


def assert_clean_data(attempt: Attempt) -> None:
    """Check the raw DATA: CRLF only, dot-stuffed, one end-of-data, at the end."""
    raw = attempt.raw
    assert BARE_LINE_BREAK.search(raw) is None, "bare CR or LF on the wire"
    assert raw.endswith(b"\r\n.\r\n")
    assert (b"\r\n" + raw).count(b"\r\n.\r\n") == 1, "end-of-data sequence before the end"
    for line in raw[:-3].split(b"\r\n"):
        # A single leading dot would be eaten by the server: every one is doubled.
        assert not line.startswith(b".") or line.startswith(b".."), line
    assert b"\0" not in raw


@pytest.mark.parametrize("body", list(SMUGGLING_BODIES.values()), ids=list(SMUGGLING_BODIES))
async def test_no_smtp_smuggling_through_the_body(
    sender: Sender, faulty_server: StartServer, body: str
) -> None:
    """Whatever the body holds, the wire carries CRLF-only, dot-stuffed data ended once."""
    server = faulty_server()
    sent = message(
        body=body,
        html_body=f"<p>{body}</p>",
        attachments=[
            Attachment("notes.txt", body, "text/plain"),
            Attachment("raw.bin", body.encode()),
            RawPart(b"Content-Type: text/plain\r\n\r\n" + body.encode()),
        ],
    )

    await sender.send(backend_for(server), [sent])

    [attempt] = server.messages
    assert_clean_data(attempt)
    # Nothing after the data was taken as a command: one transaction, then QUIT.
    [session] = server.sessions
    assert session.verbs() == ["EHLO", "MAIL", "RCPT", "DATA", "QUIT"]
    assert attempt.mail_from == SENDER and attempt.rcpt_tos == [RCPT]
    text, html, notes, raw_bin, raw_part = [
        part for part in parsed(attempt).walk() if not part.is_multipart()
    ]
    normalised = re.sub(r"\r\n|\r|\n", "\n", body)
    for part, written in ((text, normalised), (notes, normalised), (raw_part, normalised)):
        assert part.get_content().replace("\r\n", "\n").rstrip("\n") == written.rstrip("\n")
    assert html.get_content().replace("\r\n", "\n").rstrip("\n") == f"<p>{normalised}</p>"
    assert raw_bin.get_content() == body.encode()


async def test_dot_lines_survive_unstuffing_unchanged(
    sender: Sender, faulty_server: StartServer
) -> None:
    """Lines of dots arrive as written after the server removes the stuffing."""
    server = faulty_server()
    body = ".\n..\n...\n.x\nx.\n"

    await sender.send(backend_for(server), [message(body=body)])

    [attempt] = server.messages
    assert_clean_data(attempt)
    assert attempt.data.endswith(b"\r\n\r\n.\r\n..\r\n...\r\n.x\r\nx.\r\n")


# -- TLS: verified, required, never given up for plain text ------------------------------------


def no_plain_text_mail(server: FaultyServer) -> None:
    """Check that no MAIL, RCPT, DATA or AUTH ever came in plain text, and nothing stored."""
    for session in server.sessions:
        assert not {"MAIL", "RCPT", "DATA", "AUTH"} & set(session.verbs(tls=False))
    assert server.attempts == []
    assert all(tls for _, tls in server.auth_attempts)


@pytest.mark.parametrize(
    ("faults", "error"),
    [
        pytest.param({"tls_context": "untrusted"}, TLSError, id="untrusted-certificate"),
        pytest.param({"tls_context": "wrong_host"}, TLSError, id="certificate-for-other-host"),
        pytest.param({"starttls_handshake_fails": True}, TransportError, id="handshake-fails"),
        pytest.param(
            {"starttls_reply": "454 4.7.0 TLS not available"}, TransportError, id="starttls-454"
        ),
        pytest.param({"starttls": "none"}, NotSupportedError, id="starttls-not-offered"),
    ],
)
async def test_tls_failures_never_fall_back_to_plain_text(
    sender: Sender,
    faulty_server: StartServer,
    client_ssl_context: ssl.SSLContext,
    request: pytest.FixtureRequest,
    faults: dict[str, Any],
    error: type[Exception],
) -> None:
    """With use_tls, every TLS failure is an error; no MAIL or password goes out unencrypted."""
    if isinstance(faults.get("tls_context"), str):
        faults = {
            **faults,
            "tls_context": request.getfixturevalue(f"{faults['tls_context']}_ssl_context"),
        }
    options = {"starttls": "offer", "auth": {"alice": PASSWORD}, **faults}
    server = faulty_server(**options)
    connection = backend_for(
        server,
        use_tls=True,
        ssl_context=client_ssl_context,
        username="alice",
        password=PASSWORD,
        max_retries=2,
        retry_backoff=0.01,
    )
    sent = message()

    with pytest.raises(error) as excinfo:
        await sender.send(connection, [sent])

    assert isinstance(excinfo.value, MailError)
    no_plain_text_mail(server)
    assert server.auth_attempts == []
    assert sent.status is not None and sent.status.status == {"failed"}


async def test_tls_is_verified_by_default_against_the_system_store(
    sender: Sender, faulty_server: StartServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without an ssl_context the system trust store decides, and it does not know the test CA."""
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    server = faulty_server(starttls="require")

    with pytest.raises(TLSError):
        await sender.send(backend_for(server, use_tls=True), [message()])

    no_plain_text_mail(server)


async def test_starttls_then_auth_then_mail_all_encrypted(
    sender: Sender, faulty_server: StartServer, client_ssl_context: ssl.SSLContext
) -> None:
    """The working case: STARTTLS first, then AUTH and the message, all over TLS."""
    server = faulty_server(starttls="require", auth={"alice": PASSWORD})
    connection = backend_for(
        server, use_tls=True, ssl_context=client_ssl_context, username="alice", password=PASSWORD
    )

    status = await sender.send(connection, [message()])

    assert status.is_success
    [attempt] = server.messages
    assert attempt.tls
    assert server.auth_attempts == [("alice", True)]
    [session] = server.sessions
    assert session.verbs(tls=False) == ["EHLO", "STARTTLS"]


async def test_wrong_password_is_an_authentication_error(
    sender: Sender, faulty_server: StartServer, client_ssl_context: ssl.SSLContext
) -> None:
    """A refused login raises AuthenticationError with the server's code; nothing is sent."""
    server = faulty_server(starttls="require", auth={"alice": "the-right-one"})
    connection = backend_for(
        server,
        use_tls=True,
        ssl_context=client_ssl_context,
        username="alice",
        password=PASSWORD,
        max_retries=3,
    )

    with pytest.raises(MailError) as excinfo:
        await sender.send(connection, [message()])

    assert getattr(excinfo.value, "smtp_code", None) == 535
    assert server.attempts == []
    assert server.connections == 1  # an authentication failure is not retried


# -- credentials only over encryption -------------------------------------------------------------


@pytest.mark.parametrize("host", ["mail.example.com", "192.0.2.10", "[2001:db8::1]"])
def test_no_password_in_plain_text_to_a_remote_host(host: str) -> None:
    """A username without TLS to a non-loopback host is refused, naming the option."""
    with pytest.raises(ConfigurationError) as excinfo:
        get_connection("smtp", host=host, username="alice", password=PASSWORD)

    text = str(excinfo.value)
    assert "allow_insecure_auth" in text and "use_tls" in text
    assert PASSWORD not in text


def test_insecure_auth_can_be_allowed_explicitly(monkeypatch: pytest.MonkeyPatch) -> None:
    """allow_insecure_auth (or its environment variable) lets the user take the risk."""
    get_connection(
        "smtp", host="mail.example.com", username="u", password="p", allow_insecure_auth=True
    )
    monkeypatch.setenv("AMSDAL_EMAIL_ALLOW_INSECURE_AUTH", "yes")
    get_connection("smtp", host="mail.example.com", username="u", password="p")


# -- the password never shows -------------------------------------------------------------------


def _everything_said(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)) + str(exc) + repr(exc)


async def test_password_never_appears_in_errors_logs_or_reprs(
    sender: Sender,
    faulty_server: StartServer,
    client_ssl_context: ssl.SSLContext,
    untrusted_ssl_context: ssl.SSLContext,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Across a send, a failed login, an untrusted certificate and a refused STARTTLS,
    the password shows in no repr, log record, exception or traceback."""
    caplog.set_level(logging.DEBUG)
    said: list[str] = []
    auth = {"alice": PASSWORD}
    servers = [
        faulty_server(starttls="require", auth=auth),
        faulty_server(starttls="require", auth={"alice": "something-else"}),
        faulty_server(starttls="require", auth=auth, tls_context=untrusted_ssl_context),
        faulty_server(starttls="require", auth=auth, starttls_reply="454 4.7.0 No TLS now"),
    ]
    errors = []
    for server in servers:
        connection = backend_for(
            server,
            use_tls=True,
            ssl_context=client_ssl_context,
            username="alice",
            password=PASSWORD,
        )
        said += [repr(connection), str(connection), repr(connection.settings)]
        sent = message()
        try:
            await sender.send(connection, [sent])
        except MailError as exc:
            errors.append(type(exc).__name__)
            said.append(_everything_said(exc))
        said.append(repr(sent.status) + str(sent.status and sent.status.recipients))
    assert [bool(server.messages) for server in servers] == [True, False, False, False]
    assert errors == ["AuthenticationError", "TLSError", "ProtocolError"]

    said.append(caplog.text)
    said += [str(r.__dict__) for r in caplog.records]
    for secret in secrets_of(PASSWORD):
        assert not any(secret in text for text in said), secret


def test_password_stays_out_of_configuration_errors() -> None:
    """A configuration error next to a password never quotes it."""
    for options in (
        {"port": "not-a-port"},
        {"use_tls": True, "use_ssl": True},
        {"timeout": "soon"},
        {"nonsense": 1},
    ):
        with pytest.raises(ConfigurationError) as excinfo:
            get_connection("smtp", username="alice", password=PASSWORD, **options)
        assert PASSWORD not in _everything_said(excinfo.value)
    with pytest.raises(ConfigurationError) as excinfo:
        get_connection("smtp", username="alice", password=PASSWORD + "\r\n")
    assert PASSWORD not in _everything_said(excinfo.value)


# -- non-ASCII ------------------------------------------------------------------------------------


async def test_non_ascii_subject_and_names_are_encoded_words(
    sender: Sender, faulty_server: StartServer
) -> None:
    """Without SMTPUTF8 the header section is ASCII; RFC 2047 carries the text intact."""
    server = faulty_server()
    subject = "Grüße — 你好 🙂 " * 3
    sent = message(
        subject=subject, from_email=f"Jürgen Groß <{SENDER}>", to=f"Zoë «Z» Ünal <{RCPT}>"
    )

    await sender.send(backend_for(server), [sent])

    [attempt] = server.messages
    head = attempt.data.split(b"\r\n\r\n", 1)[0]
    assert head.isascii()
    assert b"=?utf-8?" in head.lower()
    received = parsed(attempt)
    assert received["Subject"] == subject
    assert received["From"].addresses[0].display_name == "Jürgen Groß"
    assert received["To"].addresses[0].display_name == "Zoë «Z» Ünal"
    assert "SMTPUTF8" not in attempt.mail_options


async def test_idn_domains_are_sent_as_punycode(sender: Sender, faulty_server: StartServer) -> None:
    """An IDN domain goes out as punycode in RCPT TO and in the headers."""
    server = faulty_server()
    status = await sender.send(
        backend_for(server), [message(to="Ann <ann@bücher.example>", cc="x@münchen.de")]
    )

    [attempt] = server.messages
    assert attempt.rcpt_tos == ["ann@xn--bcher-kva.example", "x@xn--mnchen-3ya.de"]
    assert b"ann@xn--bcher-kva.example" in attempt.data
    assert set(status.recipients) == {"ann@bücher.example", "x@münchen.de"}
    assert status.is_success


async def test_non_ascii_local_part_goes_with_smtputf8(
    sender: Sender, faulty_server: StartServer
) -> None:
    """A non-ASCII local part is sent as is, with SMTPUTF8, when the server offers it."""
    server = faulty_server(smtputf8=True)
    status = await sender.send(backend_for(server), [message(to="josé@example.com")])

    [attempt] = server.messages
    assert attempt.rcpt_tos == ["josé@example.com"]
    assert "SMTPUTF8" in attempt.mail_options
    assert "josé@example.com" in attempt.data.decode("utf-8")
    assert b"=?" not in attempt.data.split(b"\r\n\r\n")[0].split(b"\r\nTo:")[1].split(b"\r\n")[0]
    assert status.recipients["josé@example.com"].status == "sent"


async def test_non_ascii_local_part_without_smtputf8_is_invalid_not_rewritten(
    sender: Sender, faulty_server: StartServer
) -> None:
    """Without SMTPUTF8 such a message is reported ``invalid`` and not sent in any form."""
    server = faulty_server(smtputf8=False)
    sent = message(to=["josé@example.com", "ok@example.com"])

    status = await sender.send(backend_for(server), [sent])

    assert status.status == {"invalid"}
    assert "SMTPUTF8" in (status.recipients["josé@example.com"].response or "")
    assert "MAIL" not in server.sessions[0].verbs()
    assert server.attempts == []


async def test_no_header_line_over_998_octets_and_no_body_line_cut(
    sender: Sender, faulty_server: StartServer
) -> None:
    """Long subjects, headers, address lists and body lines fold or encode; nothing is lost."""
    server = faulty_server()
    long_word = "x" * 3000
    subject = " ".join(["word"] * 400) + " " + long_word + " ünïcödé" * 200
    recipients = [f"Person Number {i} <p{i}@example.com>" for i in range(150)]
    body = "A" * 5000 + "\n" + "é" * 3000 + "\n" + " ".join(["b"] * 2000) + "\n"
    sent = message(subject=subject, to=recipients, headers={"X-Long": long_word}, body=body)

    await sender.send(backend_for(server), [sent])

    [attempt] = server.messages
    assert max(len(line) for line in attempt.raw.split(b"\r\n")) <= 998
    received = parsed(attempt)
    assert received["Subject"] == subject
    assert received["X-Long"] == long_word
    assert [a.addr_spec for a in received["To"].addresses] == [
        f"p{i}@example.com" for i in range(150)
    ]
    assert received.get_content().replace("\r\n", "\n") == body
    assert len(attempt.rcpt_tos) == 150


# -- SIZE ------------------------------------------------------------------------------------------


async def test_message_over_the_announced_size_is_refused_before_the_data(
    sender: Sender, faulty_server: StartServer
) -> None:
    """Over the server's SIZE, a message is ``rejected`` with both sizes, before any MAIL."""
    server = faulty_server(size=3000)
    big = message(attachments=[Attachment("big.bin", b"\xff" * 5000)])
    small = message(to="small@example.com")

    await sender.send(backend_for(server), [big, small])

    assert big.status is not None
    refusal = big.status.recipients[RCPT]
    assert (refusal.status, refusal.code) == ("rejected", 552)
    numbers = [int(n) for n in re.findall(r"\d+", refusal.response or "")]
    assert 3000 in numbers
    assert any(n > 5000 for n in numbers)
    [attempt] = server.messages
    assert attempt.rcpt_tos == ["small@example.com"]
    assert any(o.startswith("SIZE=") for o in attempt.mail_options)
    assert sum(v == "MAIL" for v in server.sessions[0].verbs()) == 1
