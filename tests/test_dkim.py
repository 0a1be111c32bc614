"""DKIM signing: verified with dkimpy against a DNS record the test supplies.

The keys are made per test session with ``cryptography``; the public key is
served to ``dkim.verify`` by a ``dnsfunc`` that answers the selector's TXT
record, so nothing leaves the machine. Messages are signed by the SMTP
backend and checked as a real server (aiosmtpd) received them: the DATA
bytes after dot-unstuffing.
"""

from __future__ import annotations

import base64
import email
import email.policy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from amsdal_mail import Attachment, ConfigurationError, EmailMessage, get_connection
from amsdal_mail.backends.smtp import SMTPBackend
from amsdal_mail.mime import render_chunks
from amsdal_mail.mime.dkim import DKIMSigner
from amsdal_mail.smtp.transaction import dot_stuff
from tests.conftest import Sender
from tests.smtpd import ServerFactory

SELECTOR = "mail2026"
DOMAIN = "example.com"


@dataclass(frozen=True)
class Key:
    """A private key as PEM text and the DKIM TXT record of its public half."""

    name: str
    pem: str
    record: bytes

    def dnsfunc(self) -> Callable[..., bytes]:
        """Return a dkimpy ``dnsfunc`` that knows only this key's record."""
        wanted = f"{SELECTOR}._domainkey.{DOMAIN}.".encode()

        def lookup(name: bytes, timeout: int = 5) -> bytes:
            return self.record if name == wanted else b""

        return lookup


def _rsa(name: str, private_format: serialization.PrivateFormat) -> Key:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, private_format, serialization.NoEncryption()
    ).decode()
    return Key(name, pem, b"v=DKIM1; k=rsa; p=" + base64.b64encode(public))


def _ed25519() -> Key:
    key = ed25519.Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return Key("ed25519", pem, b"v=DKIM1; k=ed25519; p=" + base64.b64encode(public))


@pytest.fixture(scope="session")
def keys() -> dict[str, Key]:
    """RSA keys in PKCS#1 and PKCS#8 PEM, and an Ed25519 key (PKCS#8 PEM)."""
    made = [
        _rsa("rsa-pkcs1", serialization.PrivateFormat.TraditionalOpenSSL),
        _rsa("rsa-pkcs8", serialization.PrivateFormat.PKCS8),
        _ed25519(),
    ]
    return {key.name: key for key in made}


KEY_NAMES = ["rsa-pkcs1", "rsa-pkcs8", "ed25519"]


def _messages() -> dict[str, EmailMessage]:
    frm, to = "Sender <sender@example.com>", ["Rcpt <rcpt@example.net>"]
    return {
        "plain": EmailMessage("Plain", "Hello.\nSecond line.\n", frm, to),
        "html": EmailMessage(
            "HTML", "Text part", frm, to, cc=["cc@example.net"], html_body="<p>Hi</p>"
        ),
        "attachment": EmailMessage(
            "Attachment",
            "See attached.",
            frm,
            to,
            reply_to=["reply@example.com"],
            attachments=[
                Attachment("data.bin", bytes(range(256)) * 40, "application/octet-stream")
            ],
        ),
        "non-ascii": EmailMessage(
            "Grüße – ünïcödé", "Größe: 5 €\nZweite Zeile", "Jörg <joerg@example.com>", to
        ),
        "dot-stuffed": EmailMessage("Dots", ".starts with a dot\n..two dots\n.\nend\n.", frm, to),
        "unsubscribe": EmailMessage(
            "List",
            "News",
            frm,
            to,
            unsubscribe=["https://example.com/u?id=7", "mailto:u@example.com"],
        ),
    }


def _signer(key: Key) -> DKIMSigner:
    return DKIMSigner(selector=SELECTOR, domain=DOMAIN, private_key=key.pem)


@pytest.mark.parametrize("key_name", KEY_NAMES)
@pytest.mark.parametrize("kind", list(_messages()))
def test_signature_verifies(keys: dict[str, Key], key_name: str, kind: str) -> None:
    """Each kind of message, signed with each kind of key, verifies against the record."""
    key = keys[key_name]
    data = b"".join(_signer(key).sign(render_chunks(_messages()[kind])))
    assert dkim.verify(data, dnsfunc=key.dnsfunc())
    signature = email.message_from_bytes(data)["DKIM-Signature"]
    assert f"a={'ed25519' if key_name == 'ed25519' else 'rsa'}-sha256" in signature
    assert "c=relaxed/relaxed" in signature
    assert f"d={DOMAIN}" in signature and f"s={SELECTOR}" in signature


def _signed_headers(data: bytes) -> list[str]:
    signature = email.message_from_bytes(data)["DKIM-Signature"]
    tags = dict(t.strip().split("=", 1) for t in "".join(signature.split()).split(";") if t)
    return tags["h"].split(":")


def test_the_usual_headers_are_signed_when_present(keys: dict[str, Key]) -> None:
    """From, To, Cc, Reply-To, Subject, Date, Message-ID, MIME-Version, Content-Type, List-*."""
    message = EmailMessage(
        "S",
        "B",
        "a@example.com",
        ["b@example.net"],
        cc=["c@example.net"],
        reply_to=["r@example.com"],
        unsubscribe="https://example.com/u",
    )
    data = b"".join(_signer(keys["rsa-pkcs8"]).sign(render_chunks(message)))
    assert _signed_headers(data) == [
        "from",
        "to",
        "cc",
        "reply-to",
        "subject",
        "date",
        "message-id",
        "mime-version",
        "content-type",
        "list-unsubscribe",
        "list-unsubscribe-post",
    ]
    plain = b"".join(_signer(keys["rsa-pkcs8"]).sign(render_chunks(_messages()["plain"])))
    assert "cc" not in _signed_headers(plain) and "reply-to" not in _signed_headers(plain)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b"\r\nSubject: List\r\n", b"\r\nSubject: Lost\r\n"),
        (b"\r\nFrom: Sender <sender@example.com>\r\n", b"\r\nFrom: Evil <evil@example.com>\r\n"),
        (b"<https://example.com/u?id=7>", b"<https://evil.example/u?id=7>"),
        (b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n", b""),
        (b"\r\n\r\nNews", b"\r\n\r\nFake news"),
    ],
)
@pytest.mark.parametrize("key_name", KEY_NAMES)
def test_an_altered_message_fails(
    keys: dict[str, Key], key_name: str, old: bytes, new: bytes
) -> None:
    """Changing a signed header (or removing one) or the body breaks the signature."""
    key = keys[key_name]
    data = b"".join(_signer(key).sign(render_chunks(_messages()["unsubscribe"])))
    assert dkim.verify(data, dnsfunc=key.dnsfunc())
    assert old in data
    assert not dkim.verify(data.replace(old, new, 1), dnsfunc=key.dnsfunc())


def test_a_body_without_final_line_break_is_signed_as_sent(keys: dict[str, Key]) -> None:
    """The CRLF the DATA command adds is part of the signed bytes (a chunk of its own)."""
    chunks = render_chunks(EmailMessage("S", "no line break", "a@example.com", ["b@example.net"]))
    assert not chunks[-1].endswith(b"\r\n")
    signed = _signer(keys["ed25519"]).sign(chunks)
    assert signed[-1] == b"\r\n"
    assert signed[1:-1] == chunks
    # What DATA sends, dot-unstuffed again, is exactly the signed message.
    sent = b"".join(dot_stuff(signed))
    assert sent.endswith(b"no line break\r\n.\r\n")
    assert dkim.verify(sent[: -len(b".\r\n")], dnsfunc=keys["ed25519"].dnsfunc())


@pytest.mark.parametrize("key_name", KEY_NAMES)
async def test_what_the_server_received_verifies(
    sender: Sender, smtp_server: ServerFactory, keys: dict[str, Key], key_name: str
) -> None:
    """Every kind of message, signed by the backend, verifies as the server received it."""
    key = keys[key_name]
    server = smtp_server()
    connection = get_connection(
        "smtp",
        host=server.host,
        port=server.port,
        dkim_selector=SELECTOR,
        dkim_domain=DOMAIN,
        dkim_private_key=key.pem,
    )
    messages = list(_messages().values())
    status = await sender.send(connection, messages)
    assert {rs.status for rs in status.recipients.values()} == {"sent"}
    received = server.wait_for_messages(len(messages))
    for message in received:
        assert message.data.startswith(b"DKIM-Signature: v=1; a=")
        assert dkim.verify(message.data, dnsfunc=key.dnsfunc()), message.data[:400]
    # The dot-stuffed message arrived with its dots (unstuffed by the server).
    dots = next(m for m in received if m.message["Subject"] == "Dots")
    assert b"\r\n\r\n.starts with a dot\r\n..two dots\r\n.\r\nend\r\n." in dots.data


def test_the_key_file_option(keys: dict[str, Key], tmp_path: Path) -> None:
    """dkim_private_key_file is read at construction."""
    path = tmp_path / "dkim.pem"
    path.write_text(keys["rsa-pkcs1"].pem)
    backend = SMTPBackend(
        host="127.0.0.1",
        dkim_selector=SELECTOR,
        dkim_domain=DOMAIN,
        dkim_private_key_file=str(path),
    )
    assert backend.signer is not None and backend.signer.algorithm == "rsa-sha256"
    assert keys["rsa-pkcs1"].pem not in repr(backend)


def test_the_key_from_the_environment(
    keys: dict[str, Key], monkeypatch: pytest.MonkeyPatch
) -> None:
    """AMSDAL_EMAIL_DKIM_*; a one-line PEM with literal \\n works too."""
    monkeypatch.setenv("AMSDAL_EMAIL_DKIM_SELECTOR", SELECTOR)
    monkeypatch.setenv("AMSDAL_EMAIL_DKIM_DOMAIN", DOMAIN)
    monkeypatch.setenv("AMSDAL_EMAIL_DKIM_PRIVATE_KEY", keys["ed25519"].pem.replace("\n", "\\n"))
    backend = SMTPBackend(host="127.0.0.1")
    assert backend.signer is not None and backend.signer.algorithm == "ed25519-sha256"
    data = b"".join(backend.signer.sign(render_chunks(_messages()["plain"])))
    assert dkim.verify(data, dnsfunc=keys["ed25519"].dnsfunc())


BAD_KEYS = [
    ("not a key", "is not a PEM private key"),
    (
        "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----",
        "holds a PEM 'PUBLIC KEY' block",
    ),
    (
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----",
        "is an encrypted private key",
    ),
    ("-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----", "not valid base64"),
    (
        "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----",
        "is neither an RSA",
    ),
]


@pytest.mark.parametrize(("pem", "message"), BAD_KEYS)
def test_a_bad_key_is_refused_at_construction(pem: str, message: str) -> None:
    """A key that cannot sign is a ConfigurationError when the backend is built."""
    with pytest.raises(ConfigurationError, match=message):
        SMTPBackend(
            host="127.0.0.1", dkim_selector=SELECTOR, dkim_domain=DOMAIN, dkim_private_key=pem
        )


#: A 512-bit RSA key (openssl genpkey); cryptography refuses to make one this small.
SMALL_RSA_KEY = """\
-----BEGIN PRIVATE KEY-----
MIIBVQIBADANBgkqhkiG9w0BAQEFAASCAT8wggE7AgEAAkEAwzdoUpG4oosj9OYl
2MsJa+8lbzVtmOP3grYu2Os4F8keXecNSr4FWEQIBLwSem27Y+iqyJauj2d8/Nxk
LnNUwwIDAQABAkEAnxHVBgMLqhcq03F9wWugX7zcigPFLGIF2xLMlaEFcgrZNlFF
u2XVMbFai7AFYHHH6qbLxS/y8n1hIAaODc0TAQIhAORVV7fA63izC0KHOg2otWTs
QWKavnKVLpv8hYImGafBAiEA2t7QG6x0hToRR1wSsQLjvUYU8//h/m6iSZYZoIS5
vYMCIGhG+Xp35pIG4ruNWlvmkoD2zJ2lohhePR0L5EUd9VWBAiA5qY4GXG7uUpgO
xtEd1XcOfJI0nmt5zsfuvx7NTWpp5QIhAJd6RaNNrGUokI10mUJg/Zlin9W68fCm
2KvE5HyAQ6b6
-----END PRIVATE KEY-----
"""


def test_a_short_rsa_key_is_refused() -> None:
    """Verifiers refuse RSA keys under 1024 bits; so does the signer."""
    with pytest.raises(ConfigurationError, match="is a 512-bit RSA key"):
        DKIMSigner(selector=SELECTOR, domain=DOMAIN, private_key=SMALL_RSA_KEY)


def test_an_unreadable_key_file_is_refused(tmp_path: Path) -> None:
    """A key file that cannot be read is named in the error."""
    missing = tmp_path / "missing.pem"
    with pytest.raises(ConfigurationError, match=f"cannot read dkim_private_key_file '{missing}'"):
        SMTPBackend(
            host="127.0.0.1",
            dkim_selector=SELECTOR,
            dkim_domain=DOMAIN,
            dkim_private_key_file=str(missing),
        )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"dkim_selector": SELECTOR},
            "dkim_domain, dkim_private_key (or dkim_private_key_file) missing",
        ),
        ({"dkim_domain": DOMAIN, "dkim_private_key": "x"}, "dkim_selector missing"),
        (
            {
                "dkim_selector": SELECTOR,
                "dkim_domain": DOMAIN,
                "dkim_private_key": "x",
                "dkim_private_key_file": "/k.pem",
            },
            "are both set",
        ),
        (
            {"dkim_selector": "bad selector", "dkim_domain": DOMAIN, "dkim_private_key": "x"},
            "dkim_selector must be a DNS name",
        ),
        (
            {"dkim_selector": SELECTOR, "dkim_domain": "exämple.com", "dkim_private_key": "x"},
            "dkim_domain must be a DNS name",
        ),
    ],
)
def test_incomplete_dkim_settings_are_refused(options: dict[str, str], message: str) -> None:
    """All of selector, domain and one key source, or none."""
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        SMTPBackend(host="127.0.0.1", **options)


def test_without_dkim_nothing_is_signed() -> None:
    """No DKIM settings: no signer, the message goes as rendered."""
    backend = SMTPBackend(host="127.0.0.1")
    assert backend.signer is None
    envelope = backend._envelope(_messages()["plain"].validate())
    assert not envelope.chunks[0].startswith(b"DKIM-Signature")


def test_the_parsed_message_is_unchanged_by_signing(keys: dict[str, Key]) -> None:
    """Signing only adds the header: the rest parses to the same message."""
    message = _messages()["non-ascii"]
    chunks = render_chunks(message)
    signed = b"".join(_signer(keys["rsa-pkcs8"]).sign(chunks))
    parsed = email.message_from_bytes(signed, policy=email.policy.default)
    assert parsed["Subject"] == "Grüße – ünïcödé"
    assert signed.endswith(b"".join(chunks) + b"\r\n")
