"""The benchmark's raw sender (the floor the async path is scored against) really sends.

Against the tests' own server (PIPELINING offered, DATA taken): every message
arrives once, byte for byte; a refusal fails the run instead of passing for
speed.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from benchmarks.raw_sender import prepare, run_raw
from tests.chunking_smtpd import ChunkingServer


def _data(n: int) -> bytes:
    return f"Subject: raw {n}\r\n\r\n.a line with a dot\r\nbody {n}\r\n".encode()


def test_every_message_arrives_once_byte_for_byte() -> None:
    messages = [prepare("s@example.test", [f"r{n}@example.test"], _data(n)) for n in range(20)]
    with ChunkingServer() as server:
        sent = asyncio.run(run_raw(messages, server.host, server.port, 3))
    assert sent == 20
    assert server.connections == 3
    assert Counter(r for m in server.messages for r in m.recipients) == Counter(
        f"r{n}@example.test" for n in range(20)
    )
    by_rcpt = {m.recipients[0]: m.data for m in server.messages}
    assert all(by_rcpt[f"r{n}@example.test"] == _data(n) for n in range(20))
    # One round trip per message: each data and the next commands in one read (but the
    # last message of each connection, whose data goes with QUIT).
    assert sum(b"\r\n.\r\nMAIL FROM" in read for read in server.reads) >= 20 - 3


def test_a_refused_recipient_fails_the_run() -> None:
    messages = [prepare("s@example.test", ["refuse@example.test"], _data(0))]
    with ChunkingServer() as server, pytest.raises(RuntimeError, match="refused"):
        asyncio.run(run_raw(messages, server.host, server.port, 1))
