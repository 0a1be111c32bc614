"""The floor for a Python client: pre-rendered bytes, pipelined, replies only counted.

``run_raw(messages, host, port, connections)`` sends pre-rendered messages
over ``connections`` asyncio connections sharing one queue, with what
PIPELINING allows and nothing else: EHLO, then per message one write holding
the previous message's data and final dot followed by this message's MAIL,
every RCPT and DATA (RFC 2920), then the next write once the 354 comes: one
round trip per message. Replies are split into lines and counted, a code of
4xx or 5xx fails the run; no status, no retry, no validation. It is what the
async path over the same connections is measured against (its share of this
sender's rate).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence

from amsdal_mail.smtp.transaction import dot_stuff

__all__ = ["RawMessage", "prepare", "run_raw"]

#: (MAIL + RCPT... + DATA commands, the number of their replies, dot-stuffed data + ".")
RawMessage = tuple[bytes, int, bytes]


def prepare(sender: str, recipients: Sequence[str], data: bytes) -> RawMessage:
    """Return a message as the raw sender writes it (made before the timer starts)."""
    commands = [f"MAIL FROM:<{sender}>\r\n".encode()]
    commands += [f"RCPT TO:<{r}>\r\n".encode() for r in recipients]
    commands.append(b"DATA\r\n")
    return b"".join(commands), len(commands), b"".join(dot_stuff([data]))


class _Lane(asyncio.Protocol):
    """One connection: greeting, EHLO, then messages from the shared queue."""

    def __init__(self, queue: deque[RawMessage], done: asyncio.Future[int]) -> None:
        self.queue = queue
        self.done = done
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.owed = 1  # the greeting
        self.stage = "greeting"
        self.current: RawMessage | None = None
        self.sent = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data
        start = 0
        while (end := buffer.find(b"\r\n", start)) >= 0:
            line = buffer[start:end]
            start = end + 2
            if len(line) >= 4 and line[3] == 0x2D:  # "250-...": the reply goes on
                continue
            if line[:1] in (b"4", b"5"):
                self._finish(RuntimeError(f"raw sender: refused: {line!r}"))
                return
            self.owed -= 1
            if not self.owed:
                self._next()
        self.buffer = buffer[start:]

    def _next(self) -> None:
        transport = self.transport
        assert transport is not None
        if self.stage == "greeting":
            self.stage, self.owed = "ehlo", 1
            transport.write(b"EHLO raw.localhost\r\n")
            return
        parts: list[bytes] = []
        owed = 0
        if self.current is not None:  # its 354 came: its data, then the next commands
            parts.append(self.current[2])
            owed += 1
            self.sent += 1
            self.current = None
        if self.queue:
            self.current = self.queue.popleft()
            parts.append(self.current[0])
            owed += self.current[1]
            self.stage = "send"
        elif self.stage == "quit":  # the 221 came
            self._finish(None)
            return
        else:
            parts.append(b"QUIT\r\n")
            owed += 1
            self.stage = "quit"
        self.owed = owed
        transport.write(b"".join(parts))

    def _finish(self, error: BaseException | None) -> None:
        if not self.done.done():
            if error is None:
                self.done.set_result(self.sent)
            else:
                self.done.set_exception(error)
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(exc or ConnectionError("raw sender: connection closed early"))


async def run_raw(messages: Sequence[RawMessage], host: str, port: int, connections: int) -> int:
    """Send ``messages`` over ``connections`` connections; return how many were accepted."""
    loop = asyncio.get_running_loop()
    queue = deque(messages)
    lanes = []
    for _ in range(min(connections, len(messages)) or 1):
        done: asyncio.Future[int] = loop.create_future()
        await loop.create_connection(lambda d=done: _Lane(queue, d), host, port)
        lanes.append(done)
    return sum(await asyncio.gather(*lanes))
