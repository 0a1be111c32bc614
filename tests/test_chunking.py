"""CHUNKING (RFC 3030): the data as one ``BDAT <size> LAST``, sync and async.

Against :class:`tests.chunking_smtpd.ChunkingServer`, which reads exactly the
declared octets and records them: the data arrives byte for byte, not
dot-stuffed, the size right; refused recipients, a refused BDAT and a BDAT
with no accepted recipient get their statuses and leave the connection
usable; ``chunking=False`` and a server without PIPELINING. Then a real
Postfix (Debian's, which offers CHUNKING) takes the BDAT and passes the
message on, byte for byte under its Received: header, to a ChunkingServer as
its next hop; it skips, printing why, only when Postfix cannot run (under
CI=true it fails).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import amsdal_mail
from amsdal_mail import EmailMessage
from amsdal_mail.smtp import aio, sync
from amsdal_mail.status import FAILED, REJECTED, SENT
from tests.chunking_smtpd import ChunkingServer
from tests.postfix import PostfixRelay, postfix_unavailable

SENDER = "from@example.test"
# Lines a DATA transfer would have to dot-stuff, and 8bit text.
BODY = ".starts with a dot\n.\n..two dots\nplain line\ncaf\u00e9 \u00fcber\nlast line, no newline"


@pytest.fixture
def server() -> Iterator[ChunkingServer]:
    with ChunkingServer() as srv:
        yield srv


def _message(to: list[str], sender: str = SENDER) -> EmailMessage:
    return EmailMessage(subject="chunks", body=BODY, from_email=sender, to=to)


def _backend(server: ChunkingServer, **options: object) -> amsdal_mail.BaseBackend:
    return amsdal_mail.get_connection("smtp", host=server.host, port=server.port, **options)


def _check_bytes(server: ChunkingServer) -> None:
    (received,) = server.messages
    assert received.via == "BDAT"
    assert received.sizes == [len(received.data)]
    body = received.data.split(b"\r\n\r\n", 1)[1]
    # Not dot-stuffed: the lines are as written, CRLF-terminated.
    assert body.startswith(b".starts with a dot\r\n.\r\n..two dots\r\nplain line\r\n")
    assert "café über".encode() in body
    assert received.data.endswith(b"last line, no newline\r\n")
    assert not received.data.endswith(b"\r\n.\r\n")
    assert b"\r\n" + b"\n".join(received.data.split(b"\r\n")) not in received.data  # CRLF only
    bdat = [c for c in server.commands if c.startswith(b"BDAT")]
    assert bdat == [f"BDAT {len(received.data)} LAST".encode()]
    assert not any(c.startswith(b"DATA") for c in server.commands)


def test_bdat_sends_the_data_byte_for_byte(server: ChunkingServer) -> None:
    status = amsdal_mail.send_mail(
        "chunks", BODY, SENDER, ["a@example.test"], connection=_backend(server)
    )
    assert status.recipients["a@example.test"].status == SENT
    _check_bytes(server)
    # MAIL, RCPT and BDAT with its data came in one write (one round trip).
    first = next(r for r in server.reads if r.startswith(b"MAIL"))
    assert b"RCPT TO:<a@example.test>" in first and b"BDAT " in first
    assert first.endswith(b"last line, no newline\r\n")


async def test_async_bdat_sends_the_data_byte_for_byte(server: ChunkingServer) -> None:
    status = await amsdal_mail.asend_mail(
        "chunks", BODY, SENDER, ["a@example.test"], connection=_backend(server)
    )
    assert status.recipients["a@example.test"].status == SENT
    _check_bytes(server)


def _statuses(status: amsdal_mail.SendStatus) -> dict[str, tuple[str, int | None]]:
    return {k: (v.status, v.code) for k, v in status.recipients.items()}


def test_refused_recipients_keep_their_replies(server: ChunkingServer) -> None:
    to = ["ok@example.test", "refuse@example.test", "later@example.test"]
    with _backend(server) as backend:
        status = backend.send_messages([_message(to)])
    assert _statuses(status) == {
        "ok@example.test": (SENT, 250),
        "refuse@example.test": (REJECTED, 550),
        "later@example.test": (FAILED, 450),
    }
    (received,) = server.messages
    assert received.recipients == ["ok@example.test"]


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "lock-step"])
def test_all_refused_then_the_connection_serves_the_next_message(pipelining: bool) -> None:
    with ChunkingServer(pipelining=pipelining) as server, _backend(server) as backend:
        status = backend.send_messages([_message(["refuse1@example.test", "refuse2@example.test"])])
        assert _statuses(status) == {
            "refuse1@example.test": (REJECTED, 550),
            "refuse2@example.test": (REJECTED, 550),
        }
        status = backend.send_messages([_message(["a@example.test"])])
        assert _statuses(status) == {"a@example.test": (SENT, 250)}
    assert [m.recipients for m in server.messages] == [["a@example.test"]]
    if pipelining:
        # The BDAT went with the RCPTs and was answered 503 (no valid recipient); then RSET.
        assert "503 5.5.1 no valid recipients" in server.replies
        assert server.commands.count(b"RSET") == 1
    else:
        # Lock step: no BDAT when nobody was accepted.
        assert sum(c.startswith(b"BDAT") for c in server.commands) == 1
    assert sum(c.upper().startswith(b"EHLO") for c in server.commands) == 1  # one connection


async def test_async_all_refused_then_the_next_message(server: ChunkingServer) -> None:
    async with _backend(server) as backend:
        status = await backend.asend_messages([_message(["refuse@example.test"])])
        assert _statuses(status) == {"refuse@example.test": (REJECTED, 550)}
        status = await backend.asend_messages([_message(["a@example.test"])])
        assert _statuses(status) == {"a@example.test": (SENT, 250)}
    assert [m.recipients for m in server.messages] == [["a@example.test"]]


def test_a_refused_bdat_is_the_status_of_every_accepted_recipient(server: ChunkingServer) -> None:
    to = ["a@example.test", "b@example.test", "refuse@example.test"]
    with _backend(server) as backend:
        status = backend.send_messages([_message(to, sender="bdatfail@example.test")])
        assert _statuses(status) == {
            "a@example.test": (REJECTED, 554),
            "b@example.test": (REJECTED, 554),
            "refuse@example.test": (REJECTED, 550),
        }
        status = backend.send_messages([_message(["c@example.test"])])
        assert _statuses(status) == {"c@example.test": (SENT, 250)}
    assert [m.recipients for m in server.messages] == [["c@example.test"]]
    assert server.commands.count(b"RSET") == 1


def test_lock_step_without_pipelining() -> None:
    with ChunkingServer(pipelining=False) as server:
        status = amsdal_mail.send_mail(
            "chunks", BODY, SENDER, ["a@example.test"], connection=_backend(server)
        )
        assert status.recipients["a@example.test"].status == SENT
        _check_bytes(server)


@pytest.mark.parametrize("value", [False, "false"])
def test_chunking_false_sends_data(
    server: ChunkingServer, value: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    if isinstance(value, str):
        monkeypatch.setenv("AMSDAL_EMAIL_CHUNKING", value)
        backend = _backend(server)
    else:
        backend = _backend(server, chunking=value)
    status = amsdal_mail.send_mail("chunks", BODY, SENDER, ["a@example.test"], connection=backend)
    assert status.recipients["a@example.test"].status == SENT
    (received,) = server.messages
    assert received.via == "DATA"
    assert not any(c.startswith(b"BDAT") for c in server.commands)
    assert received.data.split(b"\r\n\r\n", 1)[1].startswith(b".starts with a dot\r\n.\r\n")


@pytest.fixture
def postfix_to_recorder() -> Iterator[tuple[PostfixRelay, ChunkingServer]]:
    """A real Postfix (offering CHUNKING) relaying to a ChunkingServer as next hop."""
    reason = postfix_unavailable()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Postfix is required under CI=true: {reason}")
        print(f"skipping: {reason}")
        pytest.skip(reason)
    # Not under pytest's tmp_path, whose parent is private to root.
    directory = Path(tempfile.mkdtemp(prefix="amsdal-chunking-"))
    try:
        with ChunkingServer() as next_hop, PostfixRelay(directory, next_hop.port) as relay:
            yield relay, next_hop
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _record_sync_writes(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Return the list each write of the sync driver is appended to, joined."""
    sent: list[bytes] = []
    original = sync._Connection.send_chunks

    def send_chunks(self: sync._Connection, chunks: list[bytes]) -> None:
        sent.append(b"".join(chunks))
        original(self, chunks)

    monkeypatch.setattr(sync._Connection, "send_chunks", send_chunks)
    return sent


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_real_postfix_takes_bdat_and_passes_the_message_on_byte_for_byte(
    postfix_to_recorder: tuple[PostfixRelay, ChunkingServer],
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
) -> None:
    relay, next_hop = postfix_to_recorder
    sent = _record_sync_writes(monkeypatch)
    reader_send = aio._ReplyReader.send

    def send(self: aio._ReplyReader, data: bytes) -> None:  # every write of the async driver
        sent.append(data)
        reader_send(self, data)

    monkeypatch.setattr(aio._ReplyReader, "send", send)
    backend = amsdal_mail.get_connection("smtp", host=relay.host, port=relay.port)
    args = ("chunks", BODY, SENDER, ["rcpt@example.test"])
    if mode == "sync":
        status = amsdal_mail.send_mail(*args, connection=backend)
    else:
        status = await amsdal_mail.asend_mail(*args, connection=backend)
    assert status.recipients["rcpt@example.test"].status == SENT, relay.log()
    (group,) = [p for p in sent if b"BDAT " in p]
    head, data = group.split(b" LAST\r\n", 1)
    assert head.startswith(b"MAIL FROM:") and b"\r\nRCPT TO:<rcpt@example.test>" in head
    assert int(head.rsplit(b"BDAT ", 1)[1]) == len(data)
    deadline = time.monotonic() + 30
    while not next_hop.messages and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert next_hop.messages, f"Postfix passed nothing on\n{relay.log()}"
    (received,) = next_hop.messages
    # Postfix puts its Received: header on top; the rest is the message as sent.
    assert received.data.endswith(data), (received.data, data)
    added = received.data[: -len(data)].split(b"\r\n")
    assert added[-1] == b"" and added[0].startswith(b"Received: ")
    assert all(line[:1] in (b" ", b"\t") for line in added[1:-1])  # its folded lines
    assert b"\r\n.\r\n..two dots\r\n" in data  # as written, not dot-stuffed


def test_real_postfix_takes_a_data_batch_with_each_dot_followed_by_the_next_mail(
    postfix_to_recorder: tuple[PostfixRelay, ChunkingServer],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Debian's Postfix takes the next MAIL, RCPT and DATA in the write of the previous
    message's data (it does not call that unauthorised pipelining), answers each in
    turn, and passes every message on once."""
    relay, next_hop = postfix_to_recorder
    sent = _record_sync_writes(monkeypatch)
    backend = amsdal_mail.get_connection("smtp", host=relay.host, port=relay.port, chunking=False)
    messages = _numbered(6)
    status = backend.send_messages(messages)
    assert status.status == {SENT}, relay.log()
    assert [m.status.status for m in messages] == [{SENT}] * 6, relay.log()  # type: ignore[union-attr]
    assert len([p for p in sent if b"\r\n.\r\nMAIL FROM:" in p]) == 5
    deadline = time.monotonic() + 30
    while len(next_hop.messages) < 6 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _stored(next_hop) == Counter(f"n{n}@example.test" for n in range(6)), relay.log()


def test_a_bad_chunking_value_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMSDAL_EMAIL_CHUNKING", "sometimes")
    with pytest.raises(amsdal_mail.ConfigurationError, match="CHUNKING") as caught:
        amsdal_mail.get_connection("smtp", host="127.0.0.1", port=25)
    assert "sometimes" in str(caught.value)


def _wait_closed(backend: Any, timeout: float = 5.0) -> None:
    """Wait until the client side sees the server's end of its held connection."""
    deadline = time.monotonic() + timeout
    while backend._driver.link_alive():
        assert time.monotonic() < deadline, "the hang-up never reached the client"
        time.sleep(0.01)  # the polling interval of a bounded wait


@pytest.mark.parametrize("pooled", [False, True], ids=["held", "pooled"])
def test_a_connection_closed_while_idle_is_replaced_before_the_data_goes_out(
    server: ChunkingServer, pooled: bool
) -> None:
    """BDAT is pipelined with MAIL and RCPT, so data written into a connection the server
    had closed would be 'unknown': a closed one is seen before writing and replaced."""
    backend = _backend(server, pool=pooled)
    with backend:
        assert backend.send_messages([_message(["a@example.test"])]).status == {SENT}
        server.hang_up()
        _wait_closed(backend)
        status = backend.send_messages([_message(["b@example.test"])])
    assert {k: r.status for k, r in status.recipients.items()} == {"b@example.test": SENT}
    assert [m.recipients for m in server.messages] == [["a@example.test"], ["b@example.test"]]
    assert server.connections == 2


async def test_async_a_connection_closed_while_idle_is_replaced(server: ChunkingServer) -> None:
    """The async twin: EOF seen by the protocol, the next message on a new connection."""
    backend = _backend(server)
    async with backend:
        await backend.asend_messages([_message(["a@example.test"])])
        server.hang_up()
        deadline = time.monotonic() + 5
        while backend._adriver is not None and backend._adriver.link_alive():
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)  # the polling interval of a bounded wait
        status = await backend.asend_messages([_message(["b@example.test"])])
    assert status.status == {SENT}
    assert server.connections == 2


# -- several messages in flight on one connection (BDAT pipelined) ---------------------------


def _numbered(count: int, to: str = "n{n}@example.test") -> list[EmailMessage]:
    return [
        EmailMessage(subject=f"m{n}", body=f"body {n}", from_email=SENDER, to=[to.format(n=n)])
        for n in range(count)
    ]


def _send_batch(
    server: ChunkingServer, messages: list[EmailMessage], side: str, **options: object
) -> amsdal_mail.SendStatus:
    """Send ``messages`` as one batch, sync or async (on one connection unless
    ``concurrency`` is given)."""
    concurrency = options.pop("concurrency", 1)
    backend = _backend(server, **options)
    if side == "sync":
        return backend.send_messages(messages)
    assert isinstance(concurrency, int)
    return asyncio.run(backend.asend_messages(messages, concurrency=concurrency))


def _stored(server: ChunkingServer) -> Counter[str]:
    return Counter(r for m in server.messages for r in m.recipients)


@pytest.mark.parametrize("side", ["sync", "async"])
def test_a_batch_keeps_several_messages_in_flight(side: str) -> None:
    """Twenty messages on one connection to a server whose replies come 0.2 s late: the
    next messages go out before the replies to the earlier ones are read (the server gets
    several in one read), and every message is stored once and reported sent."""
    with ChunkingServer(reply_delay=0.2) as server:
        messages = _numbered(20)
        status = _send_batch(server, messages, side)
    assert status.status == {SENT}
    assert [m.status.status for m in messages] == [{SENT}] * 20  # type: ignore[union-attr]
    assert _stored(server) == Counter(f"n{n}@example.test" for n in range(20))
    assert max(read.count(b"MAIL FROM") for read in server.reads) > 1  # several in one read
    assert len([r for r in server.reads if b"MAIL FROM" in r]) <= 20 // 2
    assert server.connections == 1


def test_a_retry_in_a_batch_waits_for_the_messages_written_after_it(
    server: ChunkingServer,
) -> None:
    """A 450 recipient in the middle: its retry is a transaction of its own after the
    others; everyone else is sent once."""
    messages = _numbered(6)
    messages[2].to = ["later@example.test"]
    backend = _backend(server, max_retries=1, retry_backoff=0.001)
    backend.send_messages(messages)
    words = [m.status.recipients for m in messages]  # type: ignore[union-attr]
    assert words[2]["later@example.test"].status == FAILED
    assert words[2]["later@example.test"].code == 450
    assert all(next(iter(w.values())).status == SENT for i, w in enumerate(words) if i != 2)
    assert _stored(server) == Counter(f"n{n}@example.test" for n in range(6) if n != 2)
    rcpts = [c for c in server.commands if c.startswith(b"RCPT TO:<later")]
    assert len(rcpts) == 2  # the first try and the retry


@pytest.mark.parametrize("side", ["sync", "async"])
def test_a_hang_up_in_the_middle_of_a_batch_leaves_only_those_in_flight_unknown(
    side: str,
) -> None:
    """The server goes away as message 4 ends: 1-3 sent; 4 and the ones written after it
    unknown (their data was out); the rest sent on a new connection; nobody twice."""
    with ChunkingServer(hang_up_at=4) as server:
        messages = _numbered(12)
        _send_batch(server, messages, side)
    outcome = [next(iter(m.status.recipients.values())).status for m in messages]  # type: ignore[union-attr]
    stored = _stored(server)
    assert outcome[:3] == [SENT] * 3
    assert outcome[3] == "unknown"
    for n, word in enumerate(outcome):
        times = stored[f"n{n}@example.test"]
        assert times == (1 if word == SENT else 0), (n, word, times)
        assert word in (SENT, "unknown")
    assert outcome[-1] == SENT and server.connections == 2


@pytest.mark.parametrize("side", ["sync", "async"])
def test_a_refusal_waiting_for_its_rset_stands_when_the_connection_is_lost(side: str) -> None:
    """Message 0's data is refused (its RSET waits for those written after it); the server
    then hangs up: message 0 stays rejected, not unknown; nobody is stored twice."""
    with ChunkingServer(hang_up_at=2) as server:
        messages = _numbered(12)  # more than the 8 in flight: the last go on a new connection
        messages[0].from_email = "bdatfail@example.test"
        _send_batch(server, messages, side)
    first = messages[0].status.recipients["n0@example.test"]  # type: ignore[union-attr]
    assert (first.status, first.code) == (REJECTED, 554)
    stored = _stored(server)
    for n, message in enumerate(messages[1:], start=1):
        word = message.status.recipients[f"n{n}@example.test"].status  # type: ignore[union-attr]
        assert stored[f"n{n}@example.test"] == (1 if word == SENT else 0)
    assert messages[-1].status.status == {SENT}  # type: ignore[union-attr]


# -- DATA on a pipelining server: the next message follows the final dot ------------------


@pytest.mark.parametrize("side", ["sync", "async"])
def test_with_data_the_next_messages_commands_follow_the_final_dot_in_one_write(
    side: str,
) -> None:
    """``chunking=False``: each message's data and the next message's MAIL, RCPT and DATA
    go out in one write (RFC 2920: the content may open a group), so the server reads
    them together and answers them in one write: one round trip per message."""
    with ChunkingServer(reply_delay=0.05) as server:
        messages = _numbered(10)
        status = _send_batch(server, messages, side, chunking=False)
    assert status.status == {SENT}
    assert [m.status.status for m in messages] == [{SENT}] * 10  # type: ignore[union-attr]
    assert [m.via for m in server.messages] == ["DATA"] * 10
    assert _stored(server) == Counter(f"n{n}@example.test" for n in range(10))
    together = [r for r in server.reads if b"\r\n.\r\n" in r and b"MAIL FROM" in r]
    assert len(together) == 9  # every message but the last: its dot, then the next MAIL
    assert server.connections == 1


@pytest.mark.parametrize("side", ["sync", "async"])
def test_with_data_a_hang_up_leaves_only_the_message_whose_data_was_out_unknown(
    side: str,
) -> None:
    """The server goes away as message 4's data ends: message 5's commands were on the
    wire too, but not its data, so it is sent again on a new connection and reported
    sent; only message 4 is unknown; nobody is stored twice."""
    with ChunkingServer(hang_up_at=4) as server:
        messages = _numbered(8)
        _send_batch(server, messages, side, chunking=False)
    outcome = [next(iter(m.status.recipients.values())).status for m in messages]  # type: ignore[union-attr]
    assert outcome == [SENT] * 3 + ["unknown"] + [SENT] * 4
    stored = _stored(server)
    assert stored == Counter(f"n{n}@example.test" for n in range(8) if n != 3)
    assert server.connections == 2
    # Message 5's MAIL had gone out with message 4's data, in the read the server hung up on.
    assert any(b"body 3\r\n.\r\nMAIL FROM" in read for read in server.reads)


def test_with_data_and_no_pipelining_each_message_waits_for_its_reply() -> None:
    """Without PIPELINING nothing follows the final dot before its reply (RFC 2920 is
    not offered): every read holds one command or one message's data."""
    with ChunkingServer(pipelining=False) as server:
        messages = _numbered(4)
        status = _backend(server, chunking=False).send_messages(messages)
    assert status.status == {SENT}
    assert not [r for r in server.reads if b"\r\n.\r\n" in r and b"MAIL FROM" in r]
    assert _stored(server) == Counter(f"n{n}@example.test" for n in range(4))


def test_async_a_batch_over_several_connections_sends_each_message_once() -> None:
    """``concurrency=3``: three connections take messages from the one batch, each keeping
    several in flight; every message is stored once and reported sent."""
    with ChunkingServer(reply_delay=0.05) as server:
        messages = _numbered(30)
        status = _send_batch(server, messages, "async", concurrency=3)
    assert status.status == {SENT}
    assert [m.status.status for m in messages] == [{SENT}] * 30  # type: ignore[union-attr]
    assert _stored(server) == Counter(f"n{n}@example.test" for n in range(30))
    assert server.connections == 3
    assert max(read.count(b"MAIL FROM") for read in server.reads) > 1  # several in one read
