"""Load under faults: 10,000 messages through a server that hangs up at random points.

8,000 go through the sync twin in batches of 100 over one held connection,
2,000 through the async twin in batches of 500 spread over 4 connections.
The server (seeded) drops the connection at random: on a MAIL command, in the
middle of the data, after the data but before the reply (keeping or losing the
message), and right after the reply. Retries are on, with a tiny backoff.

Afterwards every message is either stored by the server exactly once and
reported ``sent``, or reported ``unknown`` (stored at most once) or
``failed`` (never stored). Nothing is stored twice, nothing is lost silently.
The figures are printed (``pytest -s`` shows them).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

from amsdal_mail import EmailMessage, TransportError, get_connection
from amsdal_mail.backends.smtp import SMTPBackend
from tests.faulty_smtpd import FaultyServer

TOTAL = 10_000
SYNC_BATCH = 100
SYNC_MESSAGES = 8_000
ASYNC_BATCH = 500
CONCURRENCY = 4
DROP_CHANCE = 0.004  # at each of four points of every transaction
SEED = 20_260_101


def batch(start: int, count: int) -> list[EmailMessage]:
    """Return ``count`` small messages numbered from ``start`` (X-Seq header)."""
    return [
        EmailMessage(
            subject=f"Load {n}",
            body=f"Message number {n}.\n",
            from_email="load@example.com",
            to=f"user{n % 97}@example.com",
            headers={"X-Seq": str(n)},
        )
        for n in range(start, start + count)
    ]


async def test_ten_thousand_messages_each_delivered_once_or_reported(
    faulty_server: Callable[..., FaultyServer],
) -> None:
    """Under random hang-ups every message arrives exactly once or is reported, never twice."""
    server = faulty_server(random_drop=DROP_CHANCE, seed=SEED)
    connection = get_connection(
        "smtp", host=server.host, port=server.port, timeout=5, max_retries=4, retry_backoff=0.001
    )
    assert isinstance(connection, SMTPBackend)
    messages: list[EmailMessage] = []
    raised = 0
    started = time.monotonic()

    for start in range(0, SYNC_MESSAGES, SYNC_BATCH):
        messages += batch(start, SYNC_BATCH)
        try:
            with connection:
                connection.send_messages(messages[-SYNC_BATCH:])
        except TransportError:
            raised += 1
    sync_done = time.monotonic()
    for start in range(SYNC_MESSAGES, TOTAL, ASYNC_BATCH):
        messages += batch(start, ASYNC_BATCH)
        try:
            await connection.asend_messages(messages[-ASYNC_BATCH:], concurrency=CONCURRENCY)
        except TransportError:
            raised += 1
    finished = time.monotonic()

    stored = Counter(attempt.header("X-Seq") for attempt in server.messages)
    duplicates = {seq: n for seq, n in stored.items() if n > 1}
    assert not duplicates, f"stored more than once: {duplicates}"
    outcome: Counter[str] = Counter()
    for message in messages:
        assert message.status is not None, "every message gets a status"
        [word] = message.status.status
        seq = message.headers["X-Seq"]
        outcome[word] += 1
        if word == "sent":
            assert stored[seq] == 1, f"message {seq} reported sent, stored {stored[seq]}x"
        elif word == "unknown":
            outcome["unknown, arrived"] += stored[seq]
        else:
            assert word == "failed", word
            assert stored[seq] == 0, f"message {seq} reported failed but stored"
    assert set(stored) <= {m.headers["X-Seq"] for m in messages}
    assert len(messages) == TOTAL
    drops = Counter(s.ended.split(":")[0] for s in server.sessions)
    batches = SYNC_MESSAGES // SYNC_BATCH + (TOTAL - SYNC_MESSAGES) // ASYNC_BATCH
    reconnects = server.connections - SYNC_MESSAGES // SYNC_BATCH
    reconnects -= (TOTAL - SYNC_MESSAGES) // ASYNC_BATCH * CONCURRENCY

    print(
        f"\nload: {TOTAL} messages in {finished - started:.1f}s "
        f"(sync {sync_done - started:.1f}s, async {finished - sync_done:.1f}s), "
        f"{batches} batches; sent {outcome['sent']}, unknown {outcome['unknown']} "
        f"(of which arrived {outcome['unknown, arrived']}), failed {outcome['failed']}; "
        f"connections {server.connections}, reconnects {reconnects}, "
        f"server hang-ups {drops['dropped']}, batches that raised {raised}"
    )
    # The faults really happened, and were survived.
    assert drops["dropped"] >= 50
    assert reconnects >= 50
    assert outcome["unknown"] >= 5
    assert outcome["sent"] >= TOTAL * 0.97
