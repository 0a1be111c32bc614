"""pool=True: logged-in connections reused across calls and backends, per process and loop.

Against :class:`tests.faulty_smtpd.FaultyServer` (real TCP on 127.0.0.1,
counting sessions and how each ended): one connection serves the calls of
several backends; the pool keeps at most ``pool_size`` and drops those idle
past ``pool_idle_timeout`` with QUIT; a connection the server closed while it
rested is replaced without the caller noticing (found by the NOOP check, or
on first use); threads never share one at a time; a child process after
``fork()`` opens its own and the parent's keeps working; async connections
belong to their event loop; the statuses are those without a pool.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from amsdal_mail import EmailMessage, get_connection
from amsdal_mail.smtp import pool as pool_module
from tests.faulty_smtpd import FaultyServer


def _message(n: int = 0, to: str = "ann@example.com") -> EmailMessage:
    return EmailMessage(f"Pooled {n}", "Body", "app@example.com", [to], headers={"X-N": str(n)})


def _send(server: FaultyServer, n: int = 0, **options: Any) -> str:
    backend = get_connection("smtp", host=server.host, port=server.port, pool=True, **options)
    status = backend.send_messages([_message(n)])
    (recipient,) = status.recipients.values()
    return recipient.status


def _ended(server: FaultyServer) -> list[str]:
    return [session.ended for session in server.sessions]


def test_one_connection_serves_the_calls_of_several_backends(
    faulty_server: Callable[..., FaultyServer],
) -> None:
    """Three send_messages() of three backends: one TCP connection, three messages, no QUIT."""
    server = faulty_server()
    assert [_send(server, n) for n in range(3)] == ["sent"] * 3
    assert server.connections == 1
    assert [m.header("X-N") for m in server.messages] == ["0", "1", "2"]
    without = get_connection("smtp", host=server.host, port=server.port)
    without.send_messages([_message(9)])
    assert server.connections == 2  # pool=False: a connection of its own, closed with QUIT


def test_pool_size_bounds_the_idle_connections_the_rest_say_quit(
    faulty_server: Callable[..., FaultyServer],
) -> None:
    """Three connections held at once, pool_size=2: the third says QUIT when put back."""
    server = faulty_server()
    backends = [
        get_connection("smtp", host=server.host, port=server.port, pool=True, pool_size=2)
        for _ in range(3)
    ]
    for backend in backends:
        backend.open()
    for backend in backends:
        backend.close()
    server.wait_until(lambda s: _ended(s).count("quit") == 1)
    assert server.connections == 3
    assert [_send(server, n, pool_size=2) for n in range(4)] == ["sent"] * 4
    assert server.connections == 3  # the two kept ones served every later call


def test_a_connection_idle_past_pool_idle_timeout_is_closed_not_reused(
    faulty_server: Callable[..., FaultyServer],
) -> None:
    """pool_idle_timeout: the rested connection is QUIT and a new one made."""
    server = faulty_server()
    assert _send(server, 0, pool_idle_timeout=0.05) == "sent"
    until = time.monotonic() + 0.1  # the connection must rest past its idle timeout
    while time.monotonic() < until:
        time.sleep(0.01)
    assert _send(server, 1, pool_idle_timeout=0.05) == "sent"
    server.wait_until(lambda s: "quit" in _ended(s))
    assert server.connections == 2


@pytest.mark.parametrize("checked", [True, False], ids=["noop-check", "first-use"])
def test_a_connection_the_server_closed_while_resting_is_replaced(
    faulty_server: Callable[..., FaultyServer], monkeypatch: pytest.MonkeyPatch, checked: bool
) -> None:
    """The server hangs up an idle session; the next call still sends, on a new connection,
    whether the NOOP check finds it dead or the transaction does (each message once)."""
    server = faulty_server(idle_close=0.3, idle_close_silently=True)
    monkeypatch.setattr(pool_module, "CHECK_AFTER", 0.0 if checked else 3600.0)
    assert _send(server, 0) == "sent"
    server.wait_until(lambda s: _ended(s) == ["idle timeout"], timeout=5)
    assert _send(server, 1) == "sent"
    assert server.connections == 2
    assert Counter(m.header("X-N") for m in server.messages) == {"0": 1, "1": 1}


def test_threads_never_share_a_connection_at_the_same_time(
    faulty_server: Callable[..., FaultyServer],
) -> None:
    """Eight threads, five calls each: every message once, never more connections than threads."""
    server = faulty_server(stall_after_data=0.005)
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for n in range(5):
                assert _send(server, t * 10 + n, pool_size=8) == "sent"
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    sent = Counter(m.header("X-N") for m in server.messages)
    assert sent == Counter({str(t * 10 + n): 1 for t in range(8) for n in range(5)})
    assert server.connections <= 8
    for session in server.sessions:  # one transaction at a time on each connection
        verbs = session.verbs()
        assert verbs.count("MAIL") == verbs.count("DATA") or "BDAT" in verbs


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork() is POSIX only")
def test_a_forked_child_never_uses_its_parents_connection(
    faulty_server: Callable[..., FaultyServer],
) -> None:
    """The child opens its own connection; the parent's pooled one goes on serving it."""
    server = faulty_server()
    assert _send(server, 0) == "sent"
    pid = os.fork()
    if pid == 0:  # the child: exit status 0 only when its message was sent
        try:
            os._exit(0 if _send(server, 1) == "sent" else 3)
        except BaseException:  # noqa: BLE001 - any failure is the child's exit status
            os._exit(4)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert _send(server, 2) == "sent"
    assert server.connections == 2
    by_session = [
        [m.header("X-N") for m in server.messages if m.session_id == s.id] for s in server.sessions
    ]
    assert sorted(by_session) == [["0", "2"], ["1"]]


def test_async_connections_are_pooled_per_event_loop(
    faulty_server: Callable[..., FaultyServer],
) -> None:
    """In one loop the calls share a connection; another loop makes its own."""
    server = faulty_server()

    async def twice(start: int) -> list[str]:
        results = []
        for n in (start, start + 1):
            backend = get_connection("smtp", host=server.host, port=server.port, pool=True)
            status = await backend.asend_messages([_message(n)])
            results += [r.status for r in status.recipients.values()]
        return results

    assert asyncio.run(twice(0)) == ["sent", "sent"]
    assert server.connections == 1
    assert asyncio.run(twice(2)) == ["sent", "sent"]
    assert server.connections == 2


def test_async_lanes_take_and_give_back_pooled_connections(
    faulty_server: Callable[..., FaultyServer],
) -> None:
    """A batch over 3 connections, then another: the second batch makes no new connection."""
    server = faulty_server()

    async def batches() -> None:
        backend = get_connection("smtp", host=server.host, port=server.port, pool=True)
        for start in (0, 10):
            status = await backend.asend_messages(
                [_message(start + n) for n in range(6)], concurrency=3
            )
            assert status.status == {"sent"}

    asyncio.run(batches())
    assert server.connections == 3
    assert len(server.messages) == 12


def test_statuses_are_those_without_a_pool(faulty_server: Callable[..., FaultyServer]) -> None:
    """A refused recipient on a pooled connection: rejected, and the connection still serves."""
    server = faulty_server(rcpt_replies={"gone@example.com": "550 5.1.1 No such user"})
    backend = get_connection("smtp", host=server.host, port=server.port, pool=True)
    status = backend.send_messages(
        [EmailMessage("S", "B", "app@example.com", ["ann@example.com", "gone@example.com"])]
    )
    assert {k: (r.status, r.code) for k, r in status.recipients.items()} == {
        "ann@example.com": ("sent", 250),
        "gone@example.com": ("rejected", 550),
    }
    assert _send(server, 1) == "sent"
    assert server.connections == 1


def test_bad_pool_settings_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """pool_size and pool_idle_timeout are checked; AMSDAL_EMAIL_POOL turns the pool on."""
    from amsdal_mail import ConfigurationError

    with pytest.raises(ConfigurationError, match="pool_size must be a whole number"):
        get_connection("smtp", pool_size=0)
    with pytest.raises(ConfigurationError, match="pool_idle_timeout must be a positive"):
        get_connection("smtp", pool_idle_timeout=-1)
    monkeypatch.setenv("AMSDAL_EMAIL_POOL", "true")
    assert get_connection("smtp").settings.pool is True


def test_the_pool_says_quit_at_exit(faulty_server: Callable[..., FaultyServer]) -> None:
    """A process that ends with a connection resting in the pool closes it with QUIT."""
    import subprocess
    import sys
    from pathlib import Path

    server = faulty_server()
    script = (
        "import sys\n"
        "from amsdal_mail import EmailMessage, get_connection\n"
        "b = get_connection('smtp', host=sys.argv[1], port=int(sys.argv[2]), pool=True)\n"
        "m = EmailMessage('S', 'B', 'app@example.com', ['ann@example.com'])\n"
        "print(b.send_messages([m]).status)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, server.host, str(server.port)],
        cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "sent" in done.stdout
    server.wait_until(lambda s: _ended(s) == ["quit"])
    assert server.connections == 1
