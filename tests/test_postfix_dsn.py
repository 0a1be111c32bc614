"""DSN requests through a real Postfix: what it takes, and what it relays to the next hop.

Postfix (Debian's ``postfix`` package, started by :class:`tests.postfix.PostfixRelay`
on 127.0.0.1) advertises DSN; it relays every message to a
:class:`tests.dsn_smtpd.DSNRecordingServer`, which advertises DSN too, so Postfix
passes the client's RET, ENVID, NOTIFY and ORCPT on and the test reads them
there. Skipped, with the reason printed, only where Postfix cannot be
started; under CI=true that is a failure.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from amsdal_mail import DSN, BaseBackend, EmailMessage, get_connection
from amsdal_mail.message.dsn import utf8_addr_xtext, xtext
from tests.conftest import Sender
from tests.dsn_smtpd import DSNRecord, DSNRecordingServer
from tests.postfix import PostfixRelay, postfix_unavailable
from tests.smtpd import ServerFactory

_RELAY_TIMEOUT = 30.0


def _unavailable(reason: str) -> None:
    """Skip with ``reason`` printed; under CI=true fail instead."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"Postfix is required under CI=true: {reason}")
    print(f"skipping the Postfix DSN tests: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def next_hop() -> Iterator[DSNRecordingServer]:
    """The server Postfix relays to (offers DSN, records the parameters)."""
    with DSNRecordingServer() as server:
        yield server


@pytest.fixture(scope="module")
def postfix(next_hop: DSNRecordingServer) -> Iterator[PostfixRelay]:
    """Postfix on 127.0.0.1, relaying to ``next_hop``; stopped at the end of the module.

    Its directory is made here rather than under pytest's ``tmp_path``, whose
    parent is private to root: Postfix's own user must reach the queue.
    """
    reason = postfix_unavailable()
    if reason is not None:
        _unavailable(reason)
    directory = Path(tempfile.mkdtemp(prefix="amsdal-postfix-"))
    relay = PostfixRelay(directory, next_hop.port)
    try:
        try:
            relay.start()
        except (OSError, RuntimeError) as exc:
            relay.stop()
            _unavailable(f"Postfix did not start: {exc}")
        yield relay
    finally:
        relay.stop()
        shutil.rmtree(directory, ignore_errors=True)


def _backend(host: str, port: int) -> BaseBackend:
    return get_connection("smtp", host=host, port=port, timeout=10)


def _relayed(postfix: PostfixRelay, next_hop: DSNRecordingServer, subject: str) -> DSNRecord:
    """Wait until Postfix relayed the message with ``subject``; return its DSN parameters."""
    deadline = time.monotonic() + _RELAY_TIMEOUT
    while time.monotonic() < deadline:
        for index, message in enumerate(list(next_hop.messages)):
            if message.message["Subject"] == subject:
                return next_hop.dsn[index]
        try:
            next_hop.wait_for_messages(len(next_hop.messages) + 1, timeout=0.5)
        except AssertionError:
            pass
    raise AssertionError(
        f"Postfix did not relay {subject!r} within {_RELAY_TIMEOUT}s; its log:\n{postfix.log()}"
    )


async def test_dsn_parameters_reach_the_next_hop(
    sender: Sender, postfix: PostfixRelay, next_hop: DSNRecordingServer
) -> None:
    """Postfix accepts RET, ENVID, NOTIFY, ORCPT from us and relays them unchanged."""
    subject = f"dsn {sender.mode}"
    message = EmailMessage(
        subject,
        "Body\n",
        "sender@example.com",
        ["one@example.net", "two+tag@example.net"],
        dsn=DSN(notify="success,failure,delay", ret="headers", envid=f"batch=7 {sender.mode}"),
    )
    async with sender.connected(_backend(postfix.host, postfix.port)) as connection:
        status = await sender.send_message(connection, message)
    assert [rs.status for rs in status.recipients.values()] == ["sent", "sent"]

    record = _relayed(postfix, next_hop, subject)
    assert record.mail == {"RET": "HDRS", "ENVID": xtext(f"batch=7 {sender.mode}")}
    assert record.for_recipient("one@example.net") == {
        "NOTIFY": "SUCCESS,FAILURE,DELAY",
        "ORCPT": "rfc822;one@example.net",
    }
    assert record.for_recipient("two+tag@example.net") == {
        "NOTIFY": "SUCCESS,FAILURE,DELAY",
        "ORCPT": "rfc822;two+2Btag@example.net",
    }


async def test_envid_defaults_to_the_message_id(
    sender: Sender, postfix: PostfixRelay, next_hop: DSNRecordingServer
) -> None:
    """Without an envid the Message-ID the message carries is the ENVID Postfix passes on."""
    subject = f"envid {sender.mode}"
    message = EmailMessage(
        subject, "Body", "sender@example.com", ["one@example.net"], dsn=DSN(notify="never")
    )
    async with sender.connected(_backend(postfix.host, postfix.port)) as connection:
        await sender.send_message(connection, message)
    record = _relayed(postfix, next_hop, subject)
    message_id = next(m for m in next_hop.messages if m.message["Subject"] == subject).message[
        "Message-ID"
    ]
    assert record.mail == {"ENVID": xtext(message_id)}
    assert record.for_recipient("one@example.net") == {
        "NOTIFY": "NEVER",
        "ORCPT": "rfc822;one@example.net",
    }


async def test_a_non_ascii_recipient_gets_a_utf8_orcpt(
    sender: Sender, postfix: PostfixRelay, next_hop: DSNRecordingServer
) -> None:
    """With SMTPUTF8, ORCPT=utf-8;... (RFC 6533) is accepted by Postfix and passed on."""
    subject = f"utf8 {sender.mode}"
    message = EmailMessage(
        subject, "Body", "sender@example.com", ["josé@example.net"], dsn=DSN(notify="failure")
    )
    async with sender.connected(_backend(postfix.host, postfix.port)) as connection:
        status = await sender.send_message(connection, message)
    assert status.recipients["josé@example.net"].status == "sent"
    record = _relayed(postfix, next_hop, subject)
    params = record.for_recipient("josé@example.net")
    assert params["NOTIFY"] == "FAILURE"
    assert params["ORCPT"] == "utf-8;" + utf8_addr_xtext("josé@example.net")


async def test_nothing_is_added_for_a_server_without_dsn(
    sender: Sender, smtp_server: ServerFactory
) -> None:
    """aiosmtpd offers no DSN (it would refuse the parameters with 555): none is sent."""
    server = smtp_server()
    message = EmailMessage(
        "plain",
        "Body",
        "sender@example.com",
        ["one@example.net"],
        dsn=DSN(notify="failure", ret="full"),
    )
    async with sender.connected(_backend(server.host, server.port)) as connection:
        status = await sender.send_message(connection, message)
    assert status.recipients["one@example.net"].status == "sent"
    (received,) = server.messages
    assert not any(o.startswith(("RET=", "ENVID=")) for o in received.mail_options)
    assert received.rcpt_options == []
