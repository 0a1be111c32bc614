"""Load with faults through the outbox: 2,000 messages, 2 ``db_worker`` processes, PostgreSQL.

The SMTP server (seeded) hangs up at random -- on a command, in the middle of
the data, after the data but before the reply (keeping the message), right
after the reply --, refuses one address for good (550) and keeps another
mailbox full (452) until the attempts run out. Midway through, the worker sending a
message whose reply the server holds back is killed with SIGKILL, after its
data went out, and another worker is started in its place.

Afterwards every recipient row ends as it truly happened, judged against what
the server stored for that message and recipient:

* ``sent``: stored exactly once;
* ``rejected``: the 550 address, never stored;
* ``failed``: never stored (the full mailbox after ``MAX_ATTEMPTS``);
* ``unknown``: the data went out and the reply never came (a hang-up before
  the reply, the killed worker's message): stored at most once.

No recipient of any message is stored twice. The figures are printed
(``pytest -s`` shows them).
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from django.core.mail import EmailMessage

from django_amsdal_mail.outbox import enqueue
from django_amsdal_mail.outbox.models import OutboxMessage, OutboxRecipient
from django_amsdal_mail.outbox.policy import DIED
from tests.faulty_smtpd import FaultyServer

from .tasks_harness import Live, wait_for

TOTAL = 2_000
WORKERS = 2
DROP_CHANCE = 0.01  # at each of four points of every transaction
SEED = 20_261_203
GONE = "gone@example.com"  # 550, final after one attempt
FULL = "full@example.com"  # 452 every time: failed after MAX_ATTEMPTS
MAX_ATTEMPTS = 3
HELD = TOTAL // 3  #: the data attempt during which a worker is killed
#: The whole run is bounded: well above what it takes (about a minute on 2 cores).
DEADLINE = 600.0

pytestmark = [
    pytest.mark.default_env_only,  # one run of the load is enough; the matrix runs the rest
    pytest.mark.parametrize("live_database", ["postgresql"], indirect=True),
]


def _messages() -> list[EmailMessage]:
    """Message n goes to user(n % 97); every 25th also to GONE, every 40th also to FULL."""
    messages = []
    for n in range(TOTAL):
        to = [f"user{n % 97}@example.com"]
        if n % 25 == 0:
            to.append(GONE)
        if n % 40 == 0:
            to.append(FULL)
        messages.append(EmailMessage(f"Load {n}", f"Message number {n}.\n", "load@example.com", to))
    return messages


def _finished() -> int:
    return OutboxMessage.objects.filter(state="done").count()


def test_two_thousand_messages_two_workers_one_killed_each_recipient_as_it_happened(
    live: Live, smtp: Callable[..., FaultyServer]
) -> None:
    """Random hang-ups, a refused and a full mailbox, a worker killed and replaced midway:
    nobody gets a message twice and every recipient's status matches what the server kept."""
    server = smtp(
        random_drop=DROP_CHANCE,
        seed=SEED,
        rcpt_replies={GONE: "550 5.1.1 No such user", FULL: "452 4.2.2 Mailbox full"},
        hold_after_data={HELD},
    )
    live.configure(server.port, LEASE=2, RETRY_BACKOFF=0.05, MAX_ATTEMPTS=MAX_ATTEMPTS)
    messages = _messages()
    started = time.monotonic()
    for start in range(0, TOTAL, 200):
        enqueue(messages[start : start + 200])
    enqueued = time.monotonic()
    first, second = live.start_workers(WORKERS)
    wait_for("a third of the messages are done", lambda: _finished() >= TOTAL // 3, DEADLINE)
    # The server holds its reply to data attempt HELD until the sender is gone: the worker
    # sending it is killed right then, with the data out and the reply not in.
    server.wait_until(lambda s: any(a.number == HELD for a in s.attempts), DEADLINE)
    (held_attempt,) = [a for a in server.attempts if a.number == HELD]
    held = OutboxMessage.objects.get(message_id=held_attempt.header("Message-ID"))
    holder = int(held.claimed_by.split(":")[1])  # claimed_by is host:pid:token
    (victim,) = [w for w in (first, second) if w.pid == holder]
    killed_at = _finished()
    victim.kill()
    live.start_workers(1)
    wait_for("every message is done", lambda: _finished() == TOTAL, DEADLINE)
    finished = time.monotonic()

    stored: Counter[tuple[str, str]] = Counter()
    for attempt in server.messages:
        for address in attempt.rcpt_tos:
            stored[(attempt.header("Message-ID") or "", address)] += 1
    twice = {key: n for key, n in stored.items() if n > 1}
    assert not twice, f"delivered more than once: {twice}"

    outcome: Counter[str] = Counter()
    wrong: list[tuple[str, str, str, int]] = []
    attempts: Counter[int] = Counter()
    rows = OutboxRecipient.objects.select_related("message")
    for row in rows:
        times = stored[(row.message.message_id, row.address)]
        outcome[row.status] += 1
        attempts[row.attempts] += 1
        truthful = {
            "sent": times == 1,
            "rejected": row.address == GONE and times == 0 and row.code == 550,
            "failed": times == 0,
            "unknown": times <= 1,
        }.get(row.status, False)
        if not truthful:
            wrong.append((row.message.message_id, row.address, row.status, times))
    assert not wrong, f"statuses that are not what happened: {wrong[:20]}"
    recipients = TOTAL + len(range(0, TOTAL, 25)) + len(range(0, TOTAL, 40))
    assert sum(outcome.values()) == recipients
    gone = [
        (r.status, r.code, r.attempts, r.response)
        for r in OutboxRecipient.objects.filter(address=GONE).exclude(status="rejected")
    ]
    assert outcome["rejected"] == len(range(0, TOTAL, 25)), gone
    full = OutboxRecipient.objects.filter(address=FULL).exclude(status="failed")
    assert not full.exists(), [(r.status, r.attempts, r.response) for r in full]
    assert outcome["sent"] >= TOTAL * 0.9  # the faults are rare; most mail goes through
    hang_ups = Counter(
        re.sub(r"message \d+'s", "a message's", s.ended)
        for s in server.sessions
        if s.ended.startswith("dropped")
    )
    died = OutboxRecipient.objects.filter(response=DIED).count()
    accepted = set(held_attempt.rcpt_tos)
    assert accepted and {
        r.address: r.status for r in held.recipients.filter(address__in=accepted)
    } == dict.fromkeys(accepted, "unknown")
    assert set(held.recipients.filter(address__in=accepted).values_list("response", flat=True)) == {
        DIED
    }

    def rate(count: int, seconds: float) -> str:
        return f"{count / seconds:.0f}/s" if seconds > 0 else "n/a"

    figures: dict[str, Any] = {
        "messages": TOTAL,
        "recipients": recipients,
        "enqueue": f"{enqueued - started:.1f} s ({rate(TOTAL, enqueued - started)})",
        "delivery": f"{finished - enqueued:.1f} s ({rate(TOTAL, finished - enqueued)})",
        "worker killed after": f"{killed_at} messages done",
        "outcome": dict(sorted(outcome.items())),
        "attempts per recipient": dict(sorted(attempts.items())),
        "connections": server.connections,
        "hang-ups": dict(sorted(hang_ups.items())),
        "the killed worker's message": {r.address: r.status for r in held.recipients.all()},
        "unknown because a worker died holding them": died,
    }
    print("\noutbox load:", *(f"  {k}: {v}" for k, v in figures.items()), sep="\n")
