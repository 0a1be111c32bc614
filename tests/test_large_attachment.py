"""A large attachment is sent byte for byte on every path while never encoded whole.

Its base64 is made one slice (about 1.2 MB) at a time as it is written
(:class:`amsdal_mail.mime.Base64Slice`): sync and async, plain and STARTTLS
(aiosmtpd, tests.smtpd), DATA with dot-stuffing and BDAT (tests.chunking_smtpd).
Each arrives with its attachment equal to the original bytes (a DKIM-signed
message is rendered whole, for its signature). The memory
saved is a benchmark's figure (docs/benchmarks.md, peak RSS), not a test's.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from typing import Any

import pytest

from amsdal_mail import Attachment, EmailMessage, get_connection
from amsdal_mail.mime import Base64Slice, render, render_chunks
from amsdal_mail.mime.bodies import _base64_slice
from amsdal_mail.smtp.transaction import bdat_payload, dot_stuff, prepare_envelope
from tests.chunking_smtpd import ChunkingServer
from tests.smtpd import ServerFactory

DATA = os.urandom(3 * 1024 * 1024 + 12345)  # a few slices and a partial one


def _message() -> EmailMessage:
    big = Attachment("big.bin", DATA, "application/octet-stream")
    return EmailMessage(
        "Big", "See attached.\n", "a@example.com", ["b@example.com"], attachments=[big]
    )


def _attachment(raw: bytes) -> bytes:
    import email
    import email.policy

    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    (part,) = [p for p in parsed.walk() if p.get_filename() == "big.bin"]
    payload = part.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload


def test_the_envelope_holds_slices_and_they_make_the_rendered_bytes() -> None:
    """The envelope's chunks are lazy slices whose lengths and bytes match render()'s."""
    valid = _message().validate()
    envelope = prepare_envelope(valid)
    slices = [c for c in envelope.chunks if isinstance(c, Base64Slice)]
    assert len(slices) >= 3
    assert all(len(c) == len(bytes(c)) for c in slices)
    whole = b"".join(bytes(c) for c in envelope.chunks)
    assert envelope.size == len(whole)
    assert _attachment(whole) == DATA
    assert b"".join(bytes(c) for c in bdat_payload(envelope.chunks)[1:]) == whole
    assert b"".join(bytes(c) for c in dot_stuff(envelope.chunks)).endswith(b"\r\n.\r\n")
    assert len(_base64_slice(memoryview(b"x" * 57))) == len(Base64Slice(memoryview(b"x" * 57)))


@pytest.mark.parametrize("tls", ["plain", "starttls"])
@pytest.mark.parametrize("side", ["sync", "async"])
def test_data_path_sends_it_byte_for_byte(
    smtp_server: ServerFactory, client_ssl_context: ssl.SSLContext, tls: str, side: str
) -> None:
    """DATA (dot-stuffed), plain and over TLS, sync and async: the attachment arrives whole."""
    server = smtp_server(tls=tls)
    options: dict[str, Any] = {"host": server.host, "port": server.port}
    if tls == "starttls":
        options.update(use_tls=True, ssl_context=client_ssl_context)
    backend = get_connection("smtp", **options)
    message = _message()
    if side == "sync":
        status = backend.send_messages([message])
    else:
        status = asyncio.run(backend.asend_messages([message]))
    assert status.status == {"sent"}
    (received,) = server.messages
    assert _attachment(received.data) == DATA


@pytest.mark.parametrize("side", ["sync", "async"])
def test_bdat_path_sends_it_byte_for_byte(side: str) -> None:
    """BDAT LAST with the declared size exactly the octets sent."""
    with ChunkingServer() as server:
        backend = get_connection("smtp", host=server.host, port=server.port)
        message = _message()
        if side == "sync":
            backend.send_messages([message])
        else:
            asyncio.run(backend.asend_messages([message]))
    (received,) = server.messages
    assert received.sizes == [len(received.data)]
    assert _attachment(received.data) == DATA


@pytest.mark.parametrize("via", ["BDAT", "DATA"])
def test_async_replies_that_come_while_a_large_message_is_still_going_out_are_kept(
    via: str,
) -> None:
    """The server answers MAIL and RCPT as soon as it has read them, long before the
    data is all in, and reads slowly, so the client waits for room to write while
    those replies arrive: they are owed to the message (not unsolicited) and its
    status is ``sent``, not a timeout."""
    big = Attachment("big.bin", os.urandom(6 * 1024 * 1024), "application/octet-stream")
    message = EmailMessage("Big", "x\n", "a@example.com", ["b@example.com"], attachments=[big])
    with ChunkingServer(read_pause=0.002, max_size=64 * 1024 * 1024) as server:
        backend = get_connection(
            "smtp", host=server.host, port=server.port, timeout=10, chunking=via == "BDAT"
        )
        status = asyncio.run(backend.asend_messages([message]))
    assert status.status == {"sent"}, status
    (received,) = server.messages
    assert received.via == via
    assert _attachment(received.data) == big.content


def test_render_is_unchanged_by_the_slices() -> None:
    """render() and render_chunks() give bytes, as before (the slices are made there)."""
    chunks = render_chunks(_message())
    assert all(isinstance(c, bytes) for c in chunks)
    assert _attachment(b"".join(chunks)) == DATA
    assert _attachment(render(_message())) == DATA
