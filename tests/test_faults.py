"""Faults survived: servers that drop, stall, trickle, refuse for now or for good.

Every test runs twice through the ``sender`` fixture, once through the sync
twin (smtplib) and once through the async twin (aiosmtplib), against a
:class:`~tests.faulty_smtpd.FaultyServer` that misbehaves on purpose. The
server's record (every DATA phase, every session) and the statuses the library
returns must agree message by message: nothing sent twice, nothing lost
without a word.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from amsdal_mail import (
    ConnectError,
    EmailMessage,
    MailTimeoutError,
    TransportError,
    get_connection,
)
from amsdal_mail.backends.smtp import SMTPBackend
from amsdal_mail.smtp.flow import RetryPolicy
from tests.conftest import Sender
from tests.faulty_smtpd import FaultyServer
from tests.smtpd import free_port

StartServer = Callable[..., FaultyServer]
SENDER = "sender@example.com"
TIMEOUT = 5.0
MARGIN = 2.0  # seconds a timeout may overrun before the test calls it unbounded
RETRY_LOGGER = "amsdal_mail.smtp"


def backend_for(server: FaultyServer, **options: Any) -> SMTPBackend:
    """Return an SMTP backend for ``server`` with a short timeout and tiny backoff."""
    options.setdefault("timeout", TIMEOUT)
    options.setdefault("retry_backoff", 0.01)
    connection = get_connection("smtp", host=server.host, port=server.port, **options)
    assert isinstance(connection, SMTPBackend)
    return connection


def numbered(count: int, to: str | list[str] = "rcpt@example.com") -> list[EmailMessage]:
    """Return ``count`` small messages, each carrying its index in an X-Seq header."""
    return [
        EmailMessage(
            subject=f"Message {index}",
            body=f"Body of message {index}.\n",
            from_email=SENDER,
            to=to,
            headers={"X-Seq": str(index)},
        )
        for index in range(count)
    ]


def words(message: EmailMessage) -> set[str]:
    """Return the status words of one sent message."""
    assert message.status is not None, "every message of a batch gets a status"
    return message.status.status


def assert_agreement(server: FaultyServer, messages: list[EmailMessage]) -> Counter[str]:
    """Check that the server's record and the statuses agree, message by message.

    ``sent``: stored exactly once. ``unknown``: stored at most once.
    Anything else: never stored. No message is stored twice. Return the
    per-status counts.
    """
    stored = Counter(attempt.header("X-Seq") for attempt in server.messages)
    assert all(n == 1 for n in stored.values()), f"stored more than once: {stored}"
    known = {message.headers["X-Seq"] for message in messages}
    assert set(stored) <= known, f"unexpected messages stored: {set(stored) - known}"
    tally: Counter[str] = Counter()
    for message in messages:
        seq = message.headers["X-Seq"]
        status = words(message)
        if status == {"sent"}:
            assert stored[seq] == 1, f"message {seq} reported sent but stored {stored[seq]}x"
            tally["sent"] += 1
        elif "unknown" in status:
            tally["unknown"] += 1
        else:
            assert stored[seq] == 0, f"message {seq} reported {status} but was stored"
            tally["failed"] += 1
    return tally


def data_attempts(server: FaultyServer, seq: str) -> int:
    """Return how many times message ``seq`` was handed to the server (its data begun)."""
    return sum(1 for attempt in server.attempts if attempt.header("X-Seq") == seq)


def retry_delays(caplog: pytest.LogCaptureFixture) -> list[float]:
    """Return the backoff delays of the retries the library logged, in order."""
    delays = []
    for record in caplog.records:
        if record.name == RETRY_LOGGER and "retry" in record.msg and record.args:
            assert isinstance(record.args, tuple)
            delays.append(float(record.args[-1]))
    return delays


# -- connections dropped inside a batch -------------------------------------------------


async def test_batch_survives_connections_dropped_between_messages(
    sender: Sender, faulty_server: StartServer
) -> None:
    """A connection dropped between messages is replaced; every message arrives once."""
    server = faulty_server(drop_after_messages=3)
    messages = numbered(10)

    total = await sender.send(backend_for(server), messages)

    assert total.is_success
    assert assert_agreement(server, messages) == {"sent": 10}
    assert [a.header("X-Seq") for a in server.messages] == [str(i) for i in range(10)]
    assert server.connections == 4


async def test_batch_in_with_block_survives_a_connection_closed_after_each_message(
    sender: Sender, faulty_server: StartServer
) -> None:
    """Inside ``with``, a server closing after every message costs a reconnect, not a message."""
    server = faulty_server(close_after_each_message=True)
    messages = numbered(5)
    connection = backend_for(server)

    async with sender.connected(connection):
        for message in messages:
            await sender.send(connection, [message])

    assert assert_agreement(server, messages) == {"sent": 5}
    assert server.connections == 5


async def test_drop_after_the_data_before_the_reply_is_unknown_and_not_resent(
    sender: Sender, faulty_server: StartServer
) -> None:
    """Data sent, reply lost: that message is ``unknown``, never resent; the batch goes on."""
    server = faulty_server(drop_before_reply={2})
    messages = numbered(4)

    total = await sender.send(backend_for(server, max_retries=3), messages)

    assert [words(m) for m in messages] == [{"sent"}, {"unknown"}, {"sent"}, {"sent"}]
    assert assert_agreement(server, messages) == {"sent": 3, "unknown": 1}
    assert data_attempts(server, "1") == 1
    unknown = messages[1].status
    assert unknown is not None
    assert "not resent" in (unknown.recipients["rcpt@example.com"].response or "")
    assert total.status == {"unknown"}  # one address, worst outcome kept


async def test_drop_in_the_middle_of_the_data_is_never_a_silent_loss(
    sender: Sender, faulty_server: StartServer
) -> None:
    """A drop mid-DATA leaves the message undelivered: it is retried or reported ``unknown``."""
    server = faulty_server(drop_mid_data={1})
    messages = numbered(3)

    await sender.send(backend_for(server, max_retries=2), messages)

    tally = assert_agreement(server, messages)
    assert tally["sent"] + tally["unknown"] == 3
    assert words(messages[0]) <= {"sent", "unknown"}
    assert server.attempts[0].outcome == "lost_mid_data"
    assert data_attempts(server, "0") in (1, 2)


async def test_421_after_the_data_is_retried_on_a_new_connection(
    sender: Sender, faulty_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A 421 answering the data means not accepted: the message goes again, once."""
    caplog.set_level(logging.INFO, RETRY_LOGGER)
    server = faulty_server(reply_421_after_data={1})
    messages = numbered(2)

    await sender.send(backend_for(server, max_retries=1), messages)

    assert assert_agreement(server, messages) == {"sent": 2}
    assert [a.outcome for a in server.attempts] == ["closed_421", "accepted", "accepted"]
    assert server.connections == 2
    assert len(retry_delays(caplog)) == 1


# -- Postfix's smtpd_hard_error_limit: 421 after refused recipients ----------------------

UNKNOWN_USERS = [f"nobody{n}@example.com" for n in range(1, 21)]


def postfix_like(faulty_server: StartServer) -> FaultyServer:
    """Return a server that refuses UNKNOWN_USERS and hangs up after 20 errors, as Postfix."""
    refusals = {
        user: f"550 5.1.1 <{user}>: Recipient address rejected: User unknown"
        for user in UNKNOWN_USERS
    }
    return faulty_server(hard_error_limit=20, rcpt_replies=refusals)


@pytest.mark.parametrize("held", [False, True], ids=["own-connection", "with-block"])
async def test_421_after_twenty_refused_recipients_keeps_them_and_sends_the_next_message(
    sender: Sender, faulty_server: StartServer, held: bool
) -> None:
    """Twenty 550s then 421 to DATA: rejected 550 each, and the next message goes out anew."""
    server = postfix_like(faulty_server)
    bad = EmailMessage("Bad", "To nobody.\n", SENDER, UNKNOWN_USERS, headers={"X-Seq": "0"})
    good = EmailMessage(
        "Good", "To someone.\n", SENDER, ["real@example.com"], headers={"X-Seq": "1"}
    )
    connection = get_connection("smtp", host=server.host, port=server.port, timeout=TIMEOUT)

    if held:
        async with sender.connected(connection) as opened:
            await sender.send(opened, [bad, good])
    else:
        await sender.send(connection, [bad, good])

    assert bad.status is not None and good.status is not None
    for user in UNKNOWN_USERS:
        refusal = bad.status.recipients[user]
        assert (refusal.status, refusal.code, refusal.command) == ("rejected", 550, "RCPT")
        assert refusal.response == f"5.1.1 <{user}>: Recipient address rejected: User unknown"
    assert good.status.status == {"sent"}
    assert [a.rcpt_tos for a in server.messages] == [["real@example.com"]]
    first, second = server.sessions
    assert first.verbs() == ["EHLO", "MAIL", *["RCPT"] * 20, "DATA"]  # no RSET after the 421
    assert first.ended == "too many errors"
    assert second.verbs()[:4] == ["EHLO", "MAIL", "RCPT", "DATA"]


async def test_421_to_the_rset_after_twenty_refusals_without_pipelining(
    sender: Sender, faulty_server: StartServer
) -> None:
    """Lock-step, Postfix answers the RSET after twenty 550s with 421: the batch goes on."""
    refusals = {user: "550 5.1.1 User unknown" for user in UNKNOWN_USERS}
    server = faulty_server(hard_error_limit=20, rcpt_replies=refusals, pipelining=False)
    bad = EmailMessage("Bad", "To nobody.\n", SENDER, UNKNOWN_USERS)
    good = EmailMessage("Good", "To someone.\n", SENDER, ["real@example.com"])

    await sender.send(backend_for(server), [bad, good])

    assert bad.status is not None and bad.status.status == {"rejected"}
    assert good.status is not None and good.status.status == {"sent"}
    first, _ = server.sessions
    assert first.verbs() == ["EHLO", "MAIL", *["RCPT"] * 20, "RSET"]
    assert first.ended == "too many errors"


async def test_421_after_an_accepted_recipient_is_failed_then_retried(
    sender: Sender, faulty_server: StartServer
) -> None:
    """421 to DATA after an accepted recipient: it was not delivered, so it is retried."""
    server = faulty_server(
        hard_error_limit=1, rcpt_replies={"gone@example.com": "550 5.1.1 User unknown"}
    )
    message = EmailMessage(
        "Mixed", "Body.\n", SENDER, ["real@example.com", "gone@example.com"], headers={"X-Seq": "0"}
    )

    status = await sender.send(backend_for(server, max_retries=1), [message])

    gone, real = status.recipients["gone@example.com"], status.recipients["real@example.com"]
    assert (gone.status, gone.code) == ("rejected", 550)
    assert (real.status, real.code, real.command) == ("sent", 250, "DATA")
    assert [a.rcpt_tos for a in server.messages] == [["real@example.com"]]
    first, second = server.sessions
    assert first.verbs() == ["EHLO", "MAIL", "RCPT", "RCPT", "DATA"]  # 421 to DATA
    assert second.verbs()[:4] == ["EHLO", "MAIL", "RCPT", "DATA"]  # only the accepted one


# -- too many recipients, duplicates -------------------------------------------------------


async def test_recipients_refused_with_452_go_in_a_further_transaction(
    sender: Sender, faulty_server: StartServer
) -> None:
    """452 after k recipients: the rest go out in further transactions, each recipient once."""
    server = faulty_server(rcpt_limit=2)
    recipients = [f"r{i}@example.com" for i in range(5)]
    message = numbered(1, to=recipients)[0]

    status = await sender.send(backend_for(server), [message])

    assert status.is_success
    assert set(status.recipients) == set(recipients)
    assert [a.rcpt_tos for a in server.messages] == [
        recipients[:2],
        recipients[2:4],
        recipients[4:],
    ]
    assert len(server.sessions) == 1


async def test_duplicate_recipients_get_one_rcpt(
    sender: Sender, faulty_server: StartServer
) -> None:
    """An address in to, cc and bcc (in any case) is one RCPT and one delivery."""
    server = faulty_server()
    message = EmailMessage(
        "Hi",
        "Hi.\n",
        SENDER,
        to=["a@example.com", "Alice <a@example.com>"],
        cc=["A@EXAMPLE.COM", "b@example.com"],
        bcc=["a@example.com", "b@example.com"],
    )

    status = await sender.send(backend_for(server), [message])

    assert status.is_success
    assert [a.rcpt_tos for a in server.messages] == [["a@example.com", "b@example.com"]]
    rcpts = [c.line for c in server.sessions[0].commands if c.line.upper().startswith("RCPT")]
    assert len(rcpts) == 2


# -- temporary failures retried, permanent ones not ------------------------------------------


async def test_421_greeting_is_retried_with_exponential_backoff(
    sender: Sender, faulty_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    """421 at connect is retried, backing off 1x, 2x, 4x, each retry logged; then it arrives."""
    caplog.set_level(logging.INFO, RETRY_LOGGER)
    server = faulty_server(refuse_connections=3)
    messages = numbered(1)

    started = time.monotonic()
    status = await sender.send(backend_for(server, max_retries=3, retry_backoff=0.05), messages)
    elapsed = time.monotonic() - started

    assert status.is_success
    assert assert_agreement(server, messages) == {"sent": 1}
    assert server.connections == 4
    assert retry_delays(caplog) == [0.05, 0.1, 0.2]
    assert all(r.levelno == logging.WARNING for r in caplog.records if "retry" in r.msg)
    assert 0.35 <= elapsed < 0.35 + MARGIN


async def test_opening_a_held_connection_retries_temporary_failures(
    sender: Sender, faulty_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    """``with`` / ``async with`` retry a 421 greeting too, before the first message."""
    caplog.set_level(logging.INFO, RETRY_LOGGER)
    server = faulty_server(refuse_connections=2)
    messages = numbered(3)
    connection = backend_for(server, max_retries=2)

    async with sender.connected(connection):
        await sender.send(connection, messages)

    assert assert_agreement(server, messages) == {"sent": 3}
    assert server.connections == 3
    assert retry_delays(caplog) == [0.01, 0.02]


async def test_421_greeting_without_retries_raises(
    sender: Sender, faulty_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    """With max_retries=0 (the default) a 421 greeting raises at once, with the reply."""
    caplog.set_level(logging.INFO, RETRY_LOGGER)
    server = faulty_server(refuse_connections=1)
    message = numbered(1)[0]

    with pytest.raises(TransportError) as excinfo:
        await sender.send(backend_for(server), [message])

    assert "421" in str(excinfo.value)
    assert server.connections == 1
    assert server.attempts == []
    assert retry_delays(caplog) == []
    assert words(message) == {"failed"}


async def test_connection_refused_is_retried_then_raised(
    sender: Sender, caplog: pytest.LogCaptureFixture
) -> None:
    """A refused connection is retried max_retries times with backoff, then ConnectError."""
    caplog.set_level(logging.INFO, RETRY_LOGGER)
    connection = get_connection(
        "smtp",
        host="127.0.0.1",
        port=free_port(),
        timeout=TIMEOUT,
        max_retries=2,
        retry_backoff=0.01,
    )

    with pytest.raises(ConnectError):
        await sender.send(connection, numbered(1))

    assert retry_delays(caplog) == [0.01, 0.02]


@pytest.mark.parametrize("stage", ["mail", "rcpt", "data"])
async def test_greylisting_is_retried_until_accepted(
    sender: Sender, faulty_server: StartServer, caplog: pytest.LogCaptureFixture, stage: str
) -> None:
    """451 on MAIL, RCPT or DATA is retried (logged) and the message then arrives once."""
    caplog.set_level(logging.INFO, RETRY_LOGGER)
    server = faulty_server(greylist=2, greylist_at=stage)
    messages = numbered(1, to=["a@example.com", "b@example.com"])

    status = await sender.send(backend_for(server, max_retries=3), messages)

    assert status.is_success
    assert assert_agreement(server, messages) == {"sent": 1}
    assert server.messages[0].rcpt_tos == ["a@example.com", "b@example.com"]
    assert retry_delays(caplog) == [0.01, 0.02]


async def test_greylisting_beyond_max_retries_is_reported_failed(
    sender: Sender, faulty_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A 450 that outlasts the retries is reported ``failed`` with the server's reply."""
    caplog.set_level(logging.INFO, RETRY_LOGGER)
    server = faulty_server(greylist=5, greylist_reply="450 4.2.0 Mailbox busy")
    message = numbered(1)[0]

    status = await sender.send(backend_for(server, max_retries=2), [message])

    recipient = status.recipients["rcpt@example.com"]
    assert (recipient.status, recipient.code) == ("failed", 450)
    assert server.attempts == []
    assert retry_delays(caplog) == [0.01, 0.02]


async def test_per_recipient_450_is_retried_and_550_is_not(
    sender: Sender, faulty_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Only the temporarily refused recipient is retried; the 550 one is asked once."""
    caplog.set_level(logging.INFO, RETRY_LOGGER)
    server = faulty_server(
        rcpt_replies={
            "busy@example.com": "450 4.2.1 Mailbox busy",
            "gone@example.com": "550 5.1.1 No such user",
        }
    )
    message = numbered(1, to=["ok@example.com", "busy@example.com", "gone@example.com"])[0]

    status = await sender.send(backend_for(server, max_retries=2), [message])

    assert {a: (r.status, r.code) for a, r in status.recipients.items()} == {
        "ok@example.com": ("sent", 250),
        "busy@example.com": ("failed", 450),
        "gone@example.com": ("rejected", 550),
    }
    rcpts = Counter(
        c.line.split(":", 1)[1].strip("<> ")
        for s in server.sessions
        for c in s.commands
        if c.line.upper().startswith("RCPT")
    )
    assert rcpts == {"ok@example.com": 1, "busy@example.com": 3, "gone@example.com": 1}
    assert [a.rcpt_tos for a in server.messages] == [["ok@example.com"]]
    assert retry_delays(caplog) == [0.01, 0.02]


@pytest.mark.parametrize(
    ("faults", "code"),
    [
        ({"mail_reply": "553 5.1.8 Sender address rejected"}, 553),
        ({"data_reply": "554 5.7.1 Message refused"}, 554),
        ({"data_reply": "552 5.3.4 Message too big"}, 552),
        ({"rcpt_replies": {"rcpt@example.com": "550 5.1.1 No such user"}}, 550),
    ],
)
async def test_permanent_refusals_are_never_retried(
    sender: Sender,
    faulty_server: StartServer,
    caplog: pytest.LogCaptureFixture,
    faults: dict[str, Any],
    code: int,
) -> None:
    """5xx on MAIL, RCPT or DATA is final: ``rejected`` at once, no retry, nothing stored."""
    caplog.set_level(logging.INFO, RETRY_LOGGER)
    server = faulty_server(**faults)
    messages = numbered(1)

    status = await sender.send(backend_for(server, max_retries=3), messages)

    recipient = status.recipients["rcpt@example.com"]
    assert (recipient.status, recipient.code) == ("rejected", code)
    assert assert_agreement(server, messages) == {"failed": 1}
    assert retry_delays(caplog) == []
    assert len(server.sessions) == 1
    assert sum(v == "MAIL" for v in server.sessions[0].verbs()) == 1


def test_backoff_is_exponential_and_bounded() -> None:
    """The n-th retry waits backoff * 2**(n-1) seconds, never more than max_delay."""
    policy = RetryPolicy(max_retries=10, backoff=0.5, max_delay=3.0)

    assert [policy.delay(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]


# -- timeouts ------------------------------------------------------------------------------


@pytest.fixture
def unanswered_connect() -> Iterator[tuple[str, int]]:
    """``(host, port)`` where a TCP connect hangs: the listener's accept queue is full.

    With a backlog of 0 and queued connections never accepted, the kernel drops
    new SYNs, so a further connect waits until the client gives up.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        address = listener.getsockname()
        fillers = []
        try:
            for _ in range(8):
                filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                filler.setblocking(False)
                fillers.append(filler)
                filler.connect_ex(address)
            yield address
        finally:
            for filler in fillers:
                filler.close()


def timed_out_within(started: float, timeout: float) -> float:
    """Return the elapsed time, checking it is between ``timeout`` and ``timeout + MARGIN``."""
    elapsed = time.monotonic() - started
    assert timeout * 0.9 <= elapsed < timeout + MARGIN, elapsed
    return elapsed


async def test_timeout_bounds_a_connect_that_hangs(
    sender: Sender, unanswered_connect: tuple[str, int]
) -> None:
    """A connect the peer never completes raises MailTimeoutError after ``timeout``."""
    host, port = unanswered_connect
    connection = get_connection("smtp", host=host, port=port, timeout=1)

    started = time.monotonic()
    with pytest.raises(MailTimeoutError):
        await sender.send(connection, numbered(1))
    timed_out_within(started, 1)


@pytest.mark.parametrize(
    "faults",
    [
        pytest.param({"greeting_stall": 30}, id="stalled-greeting"),
        pytest.param(
            {"greeting_trickle": 0.05, "greeting": "220 " + "x" * 200}, id="trickled-greeting"
        ),
        pytest.param({"stall_before": {"MAIL FROM": 30}}, id="stalled-mail-reply"),
        pytest.param({"stall_before": {"EHLO": 30}}, id="stalled-ehlo-reply"),
    ],
)
async def test_timeout_bounds_every_reply_before_the_data(
    sender: Sender, faulty_server: StartServer, faults: dict[str, Any]
) -> None:
    """A stalled or trickled reply raises MailTimeoutError within timeout plus a margin."""
    server = faulty_server(**faults)
    message = numbered(1)[0]

    started = time.monotonic()
    with pytest.raises(MailTimeoutError) as excinfo:
        await sender.send(backend_for(server, timeout=1), [message])
    timed_out_within(started, 1)

    assert isinstance(excinfo.value, TimeoutError)
    assert "timed out" in str(excinfo.value)
    assert words(message) == {"failed"}
    assert server.attempts == []


async def test_timeout_in_the_middle_of_a_batch_is_unknown_and_the_rest_go_on(
    sender: Sender, faulty_server: StartServer
) -> None:
    """A reply that never comes mid-batch (the next message's commands already out behind
    that message's data) ends as ``unknown`` within the timeout; the next message, written
    but unanswered, is sent again on a new connection, once."""
    server = faulty_server(hold_after_data={2})
    messages = numbered(4)

    started = time.monotonic()
    await sender.send(backend_for(server, timeout=1, max_retries=2), messages)
    timed_out_within(started, 1)

    assert [words(m) for m in messages] == [{"sent"}, {"unknown"}, {"sent"}, {"sent"}]
    assert assert_agreement(server, messages) == {"sent": 3, "unknown": 1}
    unknown = messages[1].status
    assert unknown is not None
    assert "timed out" in (unknown.recipients["rcpt@example.com"].response or "")
    assert data_attempts(server, "1") == 1


async def test_cancelled_async_batch_waiting_for_a_reply_aborts_its_connection(
    faulty_server: StartServer,
) -> None:
    """Cancelling a batch that waits for a reply ends its connection at once: what is owed
    on it is unknown, so it is never used again (the server sees the client go away)."""
    server = faulty_server(hold_after_data={1})
    backend = backend_for(server, timeout=30)
    task = asyncio.create_task(backend.asend_messages(numbered(3)))
    deadline = time.monotonic() + 10
    while not server.attempts and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert server.attempts, "the first message's data never reached the server"

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    while "went away" not in server.sessions[0].ended and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert "went away" in server.sessions[0].ended, server.sessions[0]
    assert len(server.messages) == 1  # the held one; nothing after it was sent


async def test_timeout_after_the_data_reports_unknown_in_time(
    sender: Sender, faulty_server: StartServer
) -> None:
    """A stall after the data ends within the timeout as ``unknown``, naming the timeout."""
    server = faulty_server(stall_after_data=30)
    messages = numbered(1)

    started = time.monotonic()
    status = await sender.send(backend_for(server, timeout=1, max_retries=3), messages)
    timed_out_within(started, 1)

    recipient = status.recipients["rcpt@example.com"]
    assert recipient.status == "unknown"
    assert "timed out" in (recipient.response or "")
    assert sum(verb == "DATA" for s in server.sessions for verb in s.verbs()) == 1


# -- pooled connections closed while idle -----------------------------------------------------


@pytest.mark.parametrize("silently", [False, True], ids=["421-then-close", "silent-close"])
async def test_pooled_connection_closed_while_idle_is_replaced(
    sender: Sender, faulty_server: StartServer, silently: bool
) -> None:
    """A held connection the server closed while idle is replaced; no message is lost."""
    server = faulty_server(idle_close=0.5, idle_close_silently=silently)
    messages = numbered(2)
    connection = backend_for(server)

    async with sender.connected(connection):
        await sender.send(connection, messages[:1])
        server.wait_until(lambda s: s.sessions[0].ended == "idle timeout")
        await sender.send(connection, messages[1:])

    assert assert_agreement(server, messages) == {"sent": 2}
    assert server.connections == 2
