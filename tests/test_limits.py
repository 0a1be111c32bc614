"""max_messages_per_connection and rate_limit: the pure rules, then against a real server.

The recording server counts connections, numbers each message's connection
(``session_id``) and notes when each MAIL FROM arrived (``started``), so the
tests see what a provider would see. Timing bounds are one-sided and
generous: a rate limit can only make sending slower, so the lower bound is
exact arithmetic and the upper one leaves seconds of slack.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import Counter
from typing import Any

import pytest

from amsdal_mail import ConfigurationError, EmailMessage
from amsdal_mail.backends.smtp import SMTPBackend
from amsdal_mail.config import resolve_smtp_settings
from amsdal_mail.smtp.limits import RateBudget, closes_after
from tests.conftest import Sender
from tests.smtpd import RecordingServer, ServerFactory


def _messages(n: int) -> list[EmailMessage]:
    return [
        EmailMessage(f"Message {i}", "Body.", "from@example.com", [f"r{i}@example.com"])
        for i in range(n)
    ]


def _backend(server: RecordingServer, **options: Any) -> SMTPBackend:
    return SMTPBackend(host=server.host, port=server.port, timeout=10, **options)


def _most_in_window(starts: list[float], window: float) -> int:
    """Return the largest number of ``starts`` inside any half-open window of ``window`` s."""
    starts = sorted(starts)
    most = 0
    for i, first in enumerate(starts):
        most = max(most, sum(1 for t in starts[i:] if t < first + window))
    return most


# -- the pure rate budget -------------------------------------------------------------


def test_budget_spaces_starts_by_the_interval() -> None:
    """At 20/s a start is granted, the next one 50 ms later, whatever the clock says."""
    budget = RateBudget(20)
    assert budget.try_start(100.0) == 0.0
    assert budget.try_start(100.0) == pytest.approx(0.05)
    assert budget.try_start(100.03) == pytest.approx(0.02)
    assert budget.try_start(100.05) == 0.0
    # A late start moves the next slot: the spacing is from the actual start.
    assert budget.try_start(101.0) == 0.0
    assert budget.try_start(101.049) == pytest.approx(0.001)


@pytest.mark.parametrize("rate", [1, 2.5, 7, 20, 333])
def test_no_one_second_window_holds_more_than_the_rate(rate: float) -> None:
    """Many callers polling a fake clock: granted starts never burst past the rate."""
    budget = RateBudget(rate)
    now, granted, waits = 0.0, [], []
    callers = [0.0] * 5  # when each of five callers asks next
    while len(granted) < 4 * math.ceil(rate) + 3:
        i = min(range(len(callers)), key=callers.__getitem__)
        now = callers[i]
        wait = budget.try_start(now)
        if wait == 0.0:
            granted.append(now)
            callers[i] = now + 0.0001  # sends, then asks again at once
        else:
            waits.append(wait)
            callers[i] = now + wait
    gaps = [b - a for a, b in zip(granted, granted[1:], strict=False)]
    assert min(gaps) >= 1 / rate - 1e-9
    # (1e-9 less than a second: k intervals added up may round just under 1.0)
    assert _most_in_window(granted, 1.0 - 1e-9) <= math.ceil(rate)
    assert all(w > 0 for w in waits)


def test_budget_refuses_a_bad_rate() -> None:
    """The class itself refuses what the settings refuse."""
    for rate in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="rate must be a finite number > 0"):
            RateBudget(rate)


def test_closes_after() -> None:
    """A connection closes once it has served the limit; no limit never closes."""
    assert not closes_after(1, 2)
    assert closes_after(2, 2)
    assert not closes_after(10**6, None)


# -- settings --------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, -1, -0.5, float("nan"), float("inf"), "fast", "", True])
def test_a_bad_rate_limit_is_refused(value: Any) -> None:
    """0 or below, NaN, infinity, a word: ConfigurationError naming rate_limit."""
    with pytest.raises(ConfigurationError, match=r"^rate_limit must be a number of messages"):
        resolve_smtp_settings({"rate_limit": value}, environ={})


def test_a_bad_rate_limit_variable_is_named() -> None:
    """From the environment, the variable is named."""
    with pytest.raises(ConfigurationError, match=r"^AMSDAL_EMAIL_RATE_LIMIT must be .* got '0'"):
        resolve_smtp_settings({}, environ={"AMSDAL_EMAIL_RATE_LIMIT": "0"})


@pytest.mark.parametrize("value", [0, -3, 2.5, "many", True])
def test_a_bad_max_messages_per_connection_is_refused(value: Any) -> None:
    """Not a whole number >= 1: ConfigurationError naming the option."""
    with pytest.raises(ConfigurationError, match="^max_messages_per_connection must be a whole"):
        resolve_smtp_settings({"max_messages_per_connection": value}, environ={})


def test_limits_from_the_environment() -> None:
    """Both variables parse; none means no limit, the default."""
    environ = {"AMSDAL_EMAIL_RATE_LIMIT": "2.5", "AMSDAL_EMAIL_MAX_MESSAGES_PER_CONNECTION": "30"}
    settings = resolve_smtp_settings({}, environ=environ)
    assert (settings.rate_limit, settings.max_messages_per_connection) == (2.5, 30)
    assert resolve_smtp_settings({"rate_limit": "none"}, environ=environ).rate_limit is None
    default = resolve_smtp_settings({}, environ={})
    assert (default.rate_limit, default.max_messages_per_connection) == (None, None)


# -- max_messages_per_connection against a real server ----------------------------------------


async def test_a_batch_opens_a_new_connection_after_n_messages(
    sender: Sender, smtp_server: ServerFactory
) -> None:
    """5 messages, 2 per connection: 3 connections, every message sent, none twice."""
    server = smtp_server()
    status = await sender.send(_backend(server, max_messages_per_connection=2), _messages(5))
    assert len(status.get_successful_recipients()) == 5
    assert [m.session_id for m in server.messages] == [1, 1, 2, 2, 3]
    assert server.connections == 3


async def test_a_held_connection_is_replaced_invisibly(
    sender: Sender, smtp_server: ServerFactory
) -> None:
    """Inside ``with`` / ``async with``, one message at a time: a new connection every 2."""
    server = smtp_server()
    backend = _backend(server, max_messages_per_connection=2)
    async with sender.connected(backend):
        for message in _messages(5):
            status = await sender.send_message(backend, message)
            assert status.get_successful_recipients()
    assert [m.session_id for m in server.messages] == [1, 1, 2, 2, 3]
    assert server.connections == 3


async def test_async_concurrency_keeps_the_limit_per_connection(
    smtp_server: ServerFactory,
) -> None:
    """Three lanes, 3 per connection: no connection serves more than 3 of the 12."""
    server = smtp_server()
    backend = _backend(server, max_messages_per_connection=3)
    status = await backend.asend_messages(_messages(12), concurrency=3)
    assert len(status.get_successful_recipients()) == 12
    per_connection = Counter(m.session_id for m in server.messages)
    assert max(per_connection.values()) <= 3
    assert server.connections == len(per_connection) >= 4


# -- rate_limit against a real server ---------------------------------------------------


async def test_rate_limit_spaces_a_batch(sender: Sender, smtp_server: ServerFactory) -> None:
    """10 messages at 20/s take at least 9 intervals: 0.45 s; the starts arrive spaced."""
    server = smtp_server()
    backend = _backend(server, rate_limit=20)
    began = time.monotonic()
    status = await sender.send(backend, _messages(10))
    elapsed = time.monotonic() - began
    assert len(status.get_successful_recipients()) == 10
    assert 0.45 <= elapsed < 10
    starts = [m.started for m in server.messages]
    assert starts[-1] - starts[0] >= 0.40  # measured at the server, allowing loopback jitter


async def test_async_lanes_share_one_budget(smtp_server: ServerFactory) -> None:
    """Four connections at once still start 10/s together: 12 messages take >= 1.1 s.

    No burst: counted at the server, no window of 0.9 s (a second less 0.1 s
    of scheduling slack) holds more than 10 starts.
    """
    server = smtp_server()
    backend = _backend(server, rate_limit=10)
    began = time.monotonic()
    status = await backend.asend_messages(_messages(12), concurrency=4)
    elapsed = time.monotonic() - began
    assert len(status.get_successful_recipients()) == 12
    assert server.connections == 4
    assert 1.1 <= elapsed < 15
    assert _most_in_window([m.started for m in server.messages], 0.9) <= 10


async def test_sync_and_async_share_one_budget(smtp_server: ServerFactory) -> None:
    """A thread sending sync and the event loop sending async draw from the same budget."""
    server = smtp_server()
    backend = _backend(server, rate_limit=20)
    began = time.monotonic()
    thread = threading.Thread(target=backend.send_messages, args=(_messages(5),))
    thread.start()
    status = await backend.asend_messages(_messages(5))
    await asyncio.to_thread(thread.join, 15)
    elapsed = time.monotonic() - began
    assert not thread.is_alive()
    assert len(status.get_successful_recipients()) == 5
    assert len(server.messages) == 10
    assert 0.45 <= elapsed < 15
    assert server.connections == 2


async def test_no_rate_limit_sends_without_waiting(smtp_server: ServerFactory) -> None:
    """Without rate_limit nothing waits (the same batch, far under the limited time)."""
    server = smtp_server()
    backend = _backend(server)
    assert backend.budget is None
    began = time.monotonic()
    await backend.asend_messages(_messages(10))
    assert time.monotonic() - began < 5
    assert len(server.messages) == 10
