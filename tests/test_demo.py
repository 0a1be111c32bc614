"""``make demo`` (``python -m demo``) runs end to end, ends by itself and shows what it claims.

The demo is run as ``make demo`` runs it, in a subprocess of this environment's
Python, from the root of the checkout. Its outbox part starts a real
``db_worker`` process (django-tasks-db) against the example project's settings,
with a greylisting server; the demo itself fails (exit status not 0) when a
recipient is delivered twice or not at all, and this test reads its report.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: The whole demo takes a few seconds; this bounds a hang.
TIMEOUT = 240


@pytest.fixture(scope="module")
def demo_output() -> str:
    """Run ``python -m demo`` once; return its output (stdout and stderr)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMSDAL_EMAIL_")}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env["PYTHONUNBUFFERED"] = "1"
    result = subprocess.run(
        [sys.executable, "-m", "demo"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


def _outbox_part(output: str) -> str:
    return output.split("######## Django outbox", 1)[1]


def test_library_and_django_parts_still_run(demo_output: str) -> None:
    """The parts before the outbox: statuses printed, the Django app's sends recorded."""
    assert "######## amsdal_mail library ########" in demo_output
    assert "nobody@example.com           rejected  550 5.1.1 No such user here" in demo_output
    assert "all refused -> SMTPRecipientsRefused ['nobody@example.com']" in demo_output
    assert "The example project delivered 6 message(s)." in demo_output


def _final(part: str) -> dict[str, tuple[str, str, str]]:
    """Return recipient -> (status, code, attempts) from the outbox's final report."""
    report = part.split("Final statuses in the outbox", 1)[1]
    rows = re.findall(r"^ {4}(\S+@\S+) +(\w+) +(\d*) +x(\d+)", report, re.M)
    return {address: (status, code, attempts) for address, status, code, attempts in rows}


def test_outbox_part_queues_then_a_worker_sends(demo_output: str) -> None:
    """Queued (not sent) by the project; sent by a db_worker process started and stopped."""
    part = _outbox_part(demo_output)
    assert "send_mail() -> 1 (queued, not yet sent)" in part
    assert "enqueue() in a rolled-back transaction -> stored: False" in part
    assert "In the outbox: 3 queued." in part
    started = re.search(r"worker started, PID (\d+)", part)
    assert started, part
    assert f"worker (PID {started.group(1)}) stopped, exit code" in part


def test_outbox_retries_the_4xx_and_keeps_the_5xx_final(demo_output: str) -> None:
    """451 first, then sent on the second attempt; 550 final after one; the rest once."""
    final = _final(_outbox_part(demo_output))
    assert final == {
        "alice@example.com": ("sent", "250", "1"),
        "bob@example.com": ("sent", "250", "1"),
        "later@example.com": ("sent", "250", "2"),
        "nobody@example.com": ("rejected", "550", "1"),
        "carol@example.com": ("sent", "250", "1"),
    }
    assert "later@example.com: RCPT TO given 2 time(s)" in demo_output
    assert "nothing was delivered twice" in demo_output
    assert "'Monthly report' [done, 2 attempt(s)]" in demo_output


def test_outbox_attempts_as_the_worker_reported_them(demo_output: str) -> None:
    """post_send in the worker: the 451 on attempt 1, then 250 on attempt 2; priority first."""
    part = _outbox_part(demo_output)
    history = part.split("Each attempt, as post_send reported it in the worker", 1)[1]
    rows = re.findall(r"^  #(\d+) '([^']+)' +(\S+@\S+) +(\w+) +(\d+)", history, re.M)
    later = [
        (n, status, code) for n, _, address, status, code in rows if address.startswith("later")
    ]
    assert later == [("1", "failed", "451"), ("2", "sent", "250")]
    assert len(rows) == 6
    # Every task was queued before the worker started: priority 10 goes first.
    assert rows[0][1] == "Urgent"
    received = part.split("from the worker:", 1)[1]
    assert received.lstrip().startswith("'Urgent'")
