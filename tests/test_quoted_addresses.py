"""Quoted local parts go over the wire exactly as written (RFC 5321 4.1.2).

``"john..doe"@example.com`` and ``"john doe"@example.com`` are valid
addresses; they must reach MAIL FROM, RCPT TO and the headers unchanged,
quotes and escapes included, sync and async. A 421-free, plain server
(:class:`~tests.faulty_smtpd.FaultyServer`) records the command lines.
"""

from __future__ import annotations

from typing import Any

import pytest

from amsdal_mail import EmailMessage, get_connection
from tests.conftest import Sender

SENDER = '"no reply"@example.com'
RECIPIENTS = ['"john..doe"@example.com', '"john \\"jd\\" doe"@example.com', "plain@example.com"]


@pytest.mark.parametrize("display", [False, True], ids=["bare", "with-display-name"])
async def test_quoted_local_parts_are_sent_as_written(
    sender: Sender, faulty_server: Any, display: bool
) -> None:
    """MAIL FROM, RCPT TO, the status keys and the To header keep the quoted form."""
    server = faulty_server()
    to = [f"Reader {i} <{a}>" if display else a for i, a in enumerate(RECIPIENTS)]
    message = EmailMessage("Hi", "Hello.", SENDER, to)
    connection = get_connection("smtp", host=server.host, port=server.port, timeout=5)

    status = await sender.send(connection, [message])

    assert status.get_successful_recipients() == RECIPIENTS
    [session] = server.sessions
    lines = [command.line for command in session.commands]
    assert f"MAIL FROM:<{SENDER}>" in lines
    assert [line for line in lines if line.startswith("RCPT")] == [
        f"RCPT TO:<{address}>" for address in RECIPIENTS
    ]
    [attempt] = server.messages
    head = attempt.data.split(b"\r\n\r\n", 1)[0].replace(b"\r\n ", b" ").decode("ascii")
    [to_header] = [line for line in head.split("\r\n") if line.startswith("To: ")]
    for address in RECIPIENTS:
        assert address in to_header
