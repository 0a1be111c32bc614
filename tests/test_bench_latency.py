"""The latency benchmark's parts: the delaying proxy really delays, the run and its report.

The proxy (benchmarks/_delay_proxy.py) is checked on the wire: through it a
server's greeting takes at least half the round trip, a command's reply at
least the whole one, and a pipelined group of commands one round trip, not
one per command. The benchmark itself runs with tiny counts against the real
Postfix it starts (skipped, with the reason, only where Postfix cannot run;
under CI=true that is a failure).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from benchmarks.latency import delay_proxy, targets, unavailable
from benchmarks.report import LATENCY_TITLE, latency_section, splice_section
from tests.faulty_smtpd import FaultyServer
from tests.outbox.live.postgres import unavailable as component_missing

ROOT = Path(__file__).resolve().parents[1]
RTT_MS = 80.0


def _read_reply(sock: socket.socket, count: int) -> bytes:
    data = b""
    while data.count(b"\r\n") < count or not data.endswith(b"\r\n"):
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    return data


def test_the_proxy_puts_the_round_trip_on_the_wire(
    faulty_server: Callable[..., FaultyServer],
) -> None:
    """Greeting after half the RTT; NOOP after one RTT; three pipelined NOOPs after one RTT."""
    server = faulty_server()
    with (
        delay_proxy(server.port, RTT_MS) as port,
        socket.create_connection(("127.0.0.1", port), timeout=10) as sock,
    ):
        started = time.monotonic()
        assert _read_reply(sock, 1).startswith(b"220")
        greeting = time.monotonic() - started
        started = time.monotonic()
        sock.sendall(b"NOOP\r\n")
        _read_reply(sock, 1)
        one = time.monotonic() - started
        started = time.monotonic()
        sock.sendall(b"NOOP\r\nNOOP\r\nNOOP\r\n")
        _read_reply(sock, 3)
        group = time.monotonic() - started
    half = RTT_MS / 2000
    assert greeting >= half * 0.9
    assert one >= 2 * half * 0.9
    assert group < 2 * (2 * half)  # one round trip for the group, not three


@pytest.mark.default_env_only  # one run is enough; the figures do not change by Django
def test_the_latency_benchmark_runs_and_reports(tmp_path: Path) -> None:
    """Tiny counts at 20 ms: every sender measured, targets computed, the section spliced."""
    why = unavailable()
    if why:
        component_missing(why)
    figures_path = tmp_path / "latency.json"
    argv = [sys.executable, "-m", "benchmarks.latency", "--json", str(figures_path)]
    argv += ["--rtt", "20", "--calls", "2", "--messages", "3"]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    figures = json.loads(figures_path.read_text())
    run = figures["runs"]["20"]
    assert set(run["per_call"]) == {"django", "ours", "ours-pool"}
    assert set(run["bulk"]) == {
        "django",
        "smtplib",
        "aiosmtplib",
        "ours-data",
        "ours",
        "ours-async-8",
    }
    # Django's backend opens a connection per call: greeting, EHLO, STARTTLS, the handshake,
    # EHLO, AUTH, MAIL, RCPT, DATA, the data, QUIT -- ten round trips at least.
    assert min(run["per_call"]["django"]) >= 10 * 20
    assert all(ratio is not None for _, ratio, _ in targets(figures))
    section = latency_section(figures, None)
    report = splice_section("# Benchmarks\n\n## Machine\n", section)
    assert report.index(LATENCY_TITLE) < report.index("## Machine")
    assert "amsdal_mail `send_mail()`, `pool=True`" in report
