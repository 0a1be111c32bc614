"""Postfix's hard error limit through the Django backend, beside Django's own SMTP backend.

Postfix (``smtpd_hard_error_limit``, default 20) answers the command after the
twentieth error with ``421 ... Error: too many errors`` and hangs up. A
message to twenty unknown users then raises what Django's own backend raises,
``SMTPRecipientsRefused`` with every 550, and with ``fail_silently`` the next
message of the batch still goes out, on a new connection.
"""

from __future__ import annotations

import smtplib
from collections.abc import Callable

import django
import pytest
from django.core.mail import EmailMessage
from django.core.mail.backends.smtp import EmailBackend as DjangoSMTPBackend

from django_amsdal_mail.backend import EmailBackend
from tests.faulty_smtpd import FaultyServer

from .conftest import Twin

StartServer = Callable[..., FaultyServer]
UNKNOWN_USERS = [f"nobody{n}@example.com" for n in range(1, 21)]


def refusal(user: str) -> str:
    """Return the text Postfix gives an unknown local user."""
    return f"5.1.1 <{user}>: Recipient address rejected: User unknown"


def postfix_like(faulty_server: StartServer) -> FaultyServer:
    """Return a server that refuses UNKNOWN_USERS and hangs up after 20 errors."""
    replies = {user: f"550 {refusal(user)}" for user in UNKNOWN_USERS}
    return faulty_server(hard_error_limit=20, rcpt_replies=replies)


def batch() -> tuple[EmailMessage, EmailMessage]:
    """Return (bad, good): to twenty unknown users, and to one real one."""
    bad = EmailMessage("Bad", "To nobody.\n", "from@example.com", UNKNOWN_USERS)
    good = EmailMessage("Good", "To someone.\n", "from@example.com", ["real@example.com"])
    return bad, good


def test_djangos_own_backend_raises_recipients_refused_with_the_550s(
    faulty_server: StartServer,
) -> None:
    """The reference: Django's SMTP backend reports every 550 in SMTPRecipientsRefused."""
    server = postfix_like(faulty_server)
    # Built as MAILERS builds it on 6.1, where direct construction is deprecated.
    alias = {"alias": "reference"} if django.VERSION >= (6, 1) else {}
    reference = DjangoSMTPBackend(host=server.host, port=server.port, timeout=5, **alias)

    with pytest.raises(smtplib.SMTPRecipientsRefused) as info:
        reference.send_messages(list(batch()))

    assert info.value.recipients == {u: (550, refusal(u).encode()) for u in UNKNOWN_USERS}


async def test_ours_raises_the_same_recipients_refused(
    twin: Twin, faulty_server: StartServer
) -> None:
    """Our backend raises SMTPRecipientsRefused with the same 550s, not a disconnection."""
    server = postfix_like(faulty_server)
    bad, good = batch()

    with pytest.raises(smtplib.SMTPRecipientsRefused) as info:
        await twin.send(EmailBackend(host=server.host, port=server.port, timeout=5), [bad, good])

    assert info.value.recipients == {u: (550, refusal(u).encode()) for u in UNKNOWN_USERS}
    status = bad.amsdal_status  # type: ignore[attr-defined]
    assert {(r.status, r.code) for r in status.recipients.values()} == {("rejected", 550)}
    assert server.messages == []


@pytest.mark.parametrize("held", [False, True], ids=["own-connection", "with-block"])
async def test_with_fail_silently_the_next_message_goes_out(
    twin: Twin, faulty_server: StartServer, held: bool
) -> None:
    """fail_silently: the refused message counts 0, the next one is sent on a new connection."""
    server = postfix_like(faulty_server)
    bad, good = batch()
    backend = EmailBackend(host=server.host, port=server.port, timeout=5, fail_silently=True)

    if held:
        async with twin.connected(backend):
            sent = await twin.send(backend, [bad, good])
    else:
        sent = await twin.send(backend, [bad, good])

    assert sent == 1
    assert bad.amsdal_status.status == {"rejected"}  # type: ignore[attr-defined]
    assert good.amsdal_status.status == {"sent"}  # type: ignore[attr-defined]
    assert [a.rcpt_tos for a in server.messages] == [["real@example.com"]]
    assert server.connections == 2
