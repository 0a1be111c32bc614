"""Faults survived and bad input refused through the Django backend, sync and async.

The same misbehaving server as ``tests/test_faults.py`` (``faulty_server``)
is driven through ``django_amsdal_mail.backend.EmailBackend`` with Django's
own message classes, in both twins (the ``twin`` fixture). Django's contract
applies on top of the library's guarantees: ``send_messages()`` returns the
count, and a message no recipient accepted raises unless ``fail_silently``.
Retries are configured through the environment (``AMSDAL_EMAIL_MAX_RETRIES``,
``AMSDAL_EMAIL_RETRY_BACKOFF``), as Django's option names have none.
"""

from __future__ import annotations

import logging
import re
import smtplib
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from django.core.mail import BadHeaderError, EmailMessage, EmailMultiAlternatives

from django_amsdal_mail.backend import EmailBackend
from tests.faulty_smtpd import FaultyServer

from .conftest import Twin

StartServer = Callable[..., FaultyServer]
BARE_LINE_BREAK = re.compile(rb"\r(?!\n)|(?<!\r)\n")


def backend_for(server: FaultyServer, **options: Any) -> EmailBackend:
    """Return the Django backend for ``server`` with a short timeout."""
    options.setdefault("timeout", 5)
    return EmailBackend(host=server.host, port=server.port, **options)


def numbered(count: int, to: list[str] | None = None) -> list[EmailMessage]:
    """Return ``count`` Django messages, each carrying its index in an X-Seq header."""
    return [
        EmailMessage(
            f"Message {n}",
            f"Body {n}\n",
            "from@example.com",
            to or ["to@example.com"],
            headers={"X-Seq": str(n)},
        )
        for n in range(count)
    ]


def status_words(message: EmailMessage) -> set[str] | None:
    """Return the status words post_send reported for ``message`` (None if never tried)."""
    status = getattr(message, "amsdal_status", None)
    return None if status is None else status.status


def stored(server: FaultyServer) -> Counter[str | None]:
    """Return how many times the server stored each X-Seq."""
    return Counter(attempt.header("X-Seq") for attempt in server.messages)


@pytest.fixture
def retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Turn on three retries with a tiny backoff (set after the app's env clean-up)."""
    monkeypatch.setenv("AMSDAL_EMAIL_MAX_RETRIES", "3")
    monkeypatch.setenv("AMSDAL_EMAIL_RETRY_BACKOFF", "0.01")


# -- connections dropped ---------------------------------------------------------------------


async def test_connection_dropped_between_messages_reconnects_and_continues(
    twin: Twin, faulty_server: StartServer
) -> None:
    """A hang-up between messages costs a reconnect; all six arrive, once each."""
    server = faulty_server(drop_after_messages=2)
    messages = numbered(6)

    assert await twin.send(backend_for(server), messages) == 6

    assert stored(server) == {str(n): 1 for n in range(6)}
    assert [status_words(m) for m in messages] == [{"sent"}] * 6
    assert server.connections == 3


async def test_drop_before_the_reply_is_unknown_never_resent_fail_silently(
    twin: Twin, faulty_server: StartServer, retries: None
) -> None:
    """With fail_silently the unknown message is reported, not counted, not resent; the rest go."""
    server = faulty_server(drop_before_reply={2})
    messages = numbered(4)

    assert await twin.send(backend_for(server, fail_silently=True), messages) == 3

    assert [status_words(m) for m in messages] == [{"sent"}, {"unknown"}, {"sent"}, {"sent"}]
    assert stored(server) == {"0": 1, "1": 1, "2": 1, "3": 1}
    assert sum(a.header("X-Seq") == "1" for a in server.attempts) == 1


async def test_drop_before_the_reply_raises_what_django_users_catch(
    twin: Twin, faulty_server: StartServer, retries: None
) -> None:
    """Without fail_silently the unknown fate raises SMTPServerDisconnected; nothing twice."""
    server = faulty_server(drop_before_reply={2})
    messages = numbered(4)

    with pytest.raises(smtplib.SMTPServerDisconnected):
        await twin.send(backend_for(server), messages)

    assert [status_words(m) for m in messages[:2]] == [{"sent"}, {"unknown"}]
    assert all(status_words(m) is None for m in messages[2:])
    assert stored(server) == {"0": 1, "1": 1}


async def test_a_pooled_connection_closed_while_idle_is_replaced(
    twin: Twin, faulty_server: StartServer
) -> None:
    """An open backend whose connection the server closed while idle still delivers."""
    server = faulty_server(idle_close=0.5)
    messages = numbered(2)
    backend = backend_for(server)

    async with twin.connected(backend):
        assert await twin.send(backend, messages[:1]) == 1
        server.wait_until(lambda s: s.sessions[0].ended == "idle timeout")
        assert await twin.send(backend, messages[1:]) == 1

    assert stored(server) == {"0": 1, "1": 1}
    assert server.connections == 2


# -- recipients ------------------------------------------------------------------------------


async def test_recipients_over_the_server_limit_go_in_further_transactions(
    twin: Twin, faulty_server: StartServer
) -> None:
    """452 after two recipients: the others follow in further transactions, none dropped."""
    server = faulty_server(rcpt_limit=2)
    recipients = [f"r{n}@example.com" for n in range(5)]
    [message] = numbered(1, to=recipients)

    assert await twin.send(backend_for(server), [message]) == 1

    assert [a.rcpt_tos for a in server.messages] == [
        recipients[:2],
        recipients[2:4],
        recipients[4:],
    ]
    assert status_words(message) == {"sent"}


async def test_duplicate_recipients_are_sent_once(twin: Twin, faulty_server: StartServer) -> None:
    """An address in to, cc and bcc gets one RCPT and one copy."""
    server = faulty_server()
    message = EmailMessage(
        "Hi",
        "Hi",
        "from@example.com",
        ["a@example.com", "Ann <a@example.com>"],
        cc=["a@example.com"],
        bcc=["a@example.com", "b@example.com"],
    )

    assert await twin.send(backend_for(server), [message]) == 1

    assert [a.rcpt_tos for a in server.messages] == [["a@example.com", "b@example.com"]]


# -- retries ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "faults",
    [
        pytest.param({"refuse_connections": 2}, id="421-at-connect"),
        pytest.param({"greylist": 2, "greylist_at": "mail"}, id="451-on-mail"),
        pytest.param({"greylist": 2, "greylist_at": "rcpt"}, id="451-on-rcpt"),
        pytest.param({"greylist": 2, "greylist_at": "data"}, id="451-on-data"),
    ],
)
async def test_temporary_failures_are_retried_and_logged(
    twin: Twin,
    faulty_server: StartServer,
    retries: None,
    caplog: pytest.LogCaptureFixture,
    faults: dict[str, Any],
) -> None:
    """421 and 4xx are retried with backoff, each retry logged; the message arrives once."""
    caplog.set_level(logging.INFO, "amsdal_mail.smtp")
    server = faulty_server(**faults)
    messages = numbered(1)

    assert await twin.send(backend_for(server), messages) == 1

    assert stored(server) == {"0": 1}
    retried = [r for r in caplog.records if r.levelno == logging.WARNING and "retry" in r.msg]
    assert len(retried) == 2


async def test_permanent_refusal_is_not_retried(
    twin: Twin, faulty_server: StartServer, retries: None, caplog: pytest.LogCaptureFixture
) -> None:
    """A 550 is final: Django's SMTPRecipientsRefused at once, the RCPT asked once."""
    caplog.set_level(logging.INFO, "amsdal_mail.smtp")
    server = faulty_server(rcpt_replies={"to@example.com": "550 5.1.1 No such user"})

    with pytest.raises(smtplib.SMTPRecipientsRefused) as excinfo:
        await twin.send(backend_for(server), numbered(1))

    assert excinfo.value.recipients["to@example.com"][0] == 550
    assert sum(v == "RCPT" for s in server.sessions for v in s.verbs()) == 1
    assert not [r for r in caplog.records if "retry" in r.msg]


# -- timeouts --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "faults",
    [
        pytest.param({"greeting_stall": 30}, id="stalled-greeting"),
        pytest.param({"greeting_trickle": 0.05, "greeting": "220 " + "x" * 200}, id="trickle"),
        pytest.param({"stall_before": {"MAIL FROM": 30}}, id="stalled-reply"),
    ],
)
async def test_timeout_bounds_each_wait(
    twin: Twin, faulty_server: StartServer, faults: dict[str, Any]
) -> None:
    """A stalled or trickled server raises a TimeoutError (an OSError) within timeout + margin."""
    server = faulty_server(**faults)

    started = time.monotonic()
    with pytest.raises(TimeoutError) as excinfo:
        await twin.send(backend_for(server, timeout=1), numbered(1))
    elapsed = time.monotonic() - started

    assert isinstance(excinfo.value, OSError)
    assert 0.9 <= elapsed < 1 + 2.0


# -- bad input and smuggling -----------------------------------------------------------------


async def test_header_injection_is_refused_before_any_command(
    twin: Twin, faulty_server: StartServer
) -> None:
    """A line break in a Django header raises before anything is sent."""
    server = faulty_server()
    message = EmailMessage("Hi", "Hi", "from@example.com", ["to@example.com"])
    message.extra_headers["X-Tag"] = "a\r\nBcc: evil@attacker.example"

    with pytest.raises((BadHeaderError, ValueError)):
        await twin.send(backend_for(server), [message])

    assert not {"MAIL", "RCPT"} & {v for s in server.sessions for v in s.verbs()}


async def test_no_smtp_smuggling_through_django_messages(
    twin: Twin, faulty_server: StartServer
) -> None:
    """Bodies with bare CR/LF and lone dots reach the wire as CRLF-only, stuffed, ended once."""
    server = faulty_server()
    body = "Hi\n.\nMAIL FROM:<evil@attacker.example>\r.\r\n..\r\n.\nDATA\n"
    message = EmailMultiAlternatives("Hi", body, "from@example.com", ["to@example.com"])
    message.attach_alternative(f"<p>{body}</p>", "text/html")
    message.attach("notes.txt", body, "text/plain")

    assert await twin.send(backend_for(server), [message]) == 1

    [attempt] = server.messages
    raw = attempt.raw
    assert BARE_LINE_BREAK.search(raw) is None
    assert (b"\r\n" + raw).count(b"\r\n.\r\n") == 1 and raw.endswith(b"\r\n.\r\n")
    assert all(
        not line.startswith(b".") or line.startswith(b"..") for line in raw.split(b"\r\n")[:-2]
    )
    assert server.sessions[0].verbs() == ["EHLO", "MAIL", "RCPT", "DATA", "QUIT"]
