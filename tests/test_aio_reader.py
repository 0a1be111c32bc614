"""The async driver's reply reader on a real loopback socket: what it writes, and when.

A batch's small writes wait for the end of the event loop's turn (so the
writes of several connections go out back to back); these tests check that
such a write is never lost or reordered: a later write, a close, or the end
of the turn puts it on the wire first.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from amsdal_mail.smtp.aio import _ReplyReader


class _Recorder(asyncio.Protocol):
    """The server end: keeps every byte, answers each line with ``250 ok``."""

    def __init__(self) -> None:
        self.data = b""
        self.closed = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.data += data
        assert self.transport is not None
        self.transport.write(b"250 ok\r\n" * data.count(b"\n"))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


@pytest.fixture
async def pair() -> AsyncIterator[tuple[_ReplyReader, _Recorder]]:
    loop = asyncio.get_running_loop()
    servers: list[_Recorder] = []

    def factory() -> _Recorder:
        servers.append(_Recorder())
        return servers[-1]

    server = await loop.create_server(factory, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
    reader = _ReplyReader(transport)
    transport.set_protocol(reader)
    try:
        yield reader, servers[0]
    finally:
        reader.abort()
        server.close()
        await server.wait_closed()


async def _until(predicate: Callable[[], bool], what: str) -> None:
    for _ in range(500):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"not within 5 s: {what}")


async def test_a_small_write_goes_out_at_the_end_of_the_turn(
    pair: tuple[_ReplyReader, _Recorder],
) -> None:
    reader, server = pair
    assert reader.write_now([b"NOOP", b"\r\n"], owes=1)
    assert reader.take(0) == []  # nothing read yet, and the write is not out yet
    await _until(lambda: server.data == b"NOOP\r\n", "the deferred write on the wire")
    await _until(lambda: reader.complete(1), "the reply to it")
    assert [r.code for r in reader.take(1)] == [250]


async def test_a_later_write_never_overtakes_a_deferred_one(
    pair: tuple[_ReplyReader, _Recorder],
) -> None:
    reader, server = pair
    reader.write_now([b"MAIL FROM:<a@example.test>\r\n"], owes=0)
    replies = await reader.exchange([b"NOOP\r\n"], 2, 5.0)
    assert server.data == b"MAIL FROM:<a@example.test>\r\nNOOP\r\n"
    assert [r.code for r in replies] == [250, 250]


async def test_close_writes_what_was_deferred_first(pair: tuple[_ReplyReader, _Recorder]) -> None:
    reader, server = pair
    reader.write_now([b"QUIT\r\n"], owes=1)
    await reader.close(5.0)
    await asyncio.wait_for(server.closed, 5)
    assert server.data == b"QUIT\r\n"


async def test_a_write_deferred_on_a_connection_that_then_broke_is_dropped(
    pair: tuple[_ReplyReader, _Recorder],
) -> None:
    """Nothing is written after the connection broke, and reading says it broke."""
    reader, server = pair
    reader.write_now([b"NOOP\r\n"], owes=1)
    reader.abort()
    await asyncio.wait_for(server.closed, 5)
    assert server.data == b""
    with pytest.raises(Exception, match="Connection closed"):
        reader.take(1)
    with pytest.raises(Exception, match="Connection closed"):
        reader.write_now([b"NOOP\r\n"], owes=1)
