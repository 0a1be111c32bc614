"""``manage.py amsdal_bounces --imap URL``: reports from a real mailbox onto the outbox.

The mailbox is Dovecot's (tests/tracking/dovecot.py, on 127.0.0.1 over IMAPS,
its certificate from a CA of the test that ``SSL_CERT_FILE`` makes the
command trust). A message goes through the outbox to a recording server; its
bounce is put into the mailbox; the command records it, prints the event and
never counts it again. Skipped, with the reason printed, only where Dovecot
cannot run; under CI=true that is a failure.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from django.core.mail import EmailMessage
from django.core.management import CommandError, call_command

from django_amsdal_mail.outbox import enqueue
from django_amsdal_mail.outbox.models import OutboxRecipient
from django_amsdal_mail.signals import delivery
from tests.smtpd import ServerFactory
from tests.tracking.dovecot import DovecotIMAP
from tests.tracking.reports import PLAIN_MESSAGE, report

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def trusted(dovecot: DovecotIMAP, monkeypatch: pytest.MonkeyPatch) -> DovecotIMAP:
    """The command's default TLS context trusts the test's CA (and only it)."""
    monkeypatch.setenv("SSL_CERT_FILE", str(dovecot.ca_file))
    return dovecot


def _bounced(smtp_server: ServerFactory, outbox: Any, *to: str) -> Any:
    server = smtp_server()
    outbox(server.host, server.port)
    (row,) = enqueue(EmailMessage("Order", "Shipped.", "shop@example.com", list(to)))
    return row


def _failed(address: str) -> dict[str, str]:
    return {"Final-Recipient": f"rfc822; {address}", "Action": "failed", "Status": "5.1.1"}


def _command(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("amsdal_bounces", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_a_bounce_in_the_mailbox_is_recorded_once(
    trusted: DovecotIMAP, smtp_server: ServerFactory, outbox: Any
) -> None:
    """The bounce lands on its recipient, printed as JSON; a non-report is counted; the next
    poll finds nothing new."""
    row = _bounced(smtp_server, outbox, "ann@example.com", "bob@example.com")
    trusted.append(report([_failed("bob@example.com")], envid=row.message_id), "Django")
    trusted.append(PLAIN_MESSAGE, "Django")

    out, err = _command("--imap", trusted.url("Django"))

    (line,) = out.splitlines()
    assert json.loads(line)["event"] == "bounced"
    assert "2 new message(s), 1 event(s), 1 not a report" in err
    deliveries = {r.address: r.delivery for r in OutboxRecipient.objects.filter(message=row)}
    assert deliveries == {"ann@example.com": "", "bob@example.com": "bounced"}
    out, err = _command("--imap", trusted.url("Django"))
    assert out == "" and "0 new message(s)" in err


def test_a_recording_that_fails_is_tried_again_by_the_next_poll(
    trusted: DovecotIMAP, smtp_server: ServerFactory, outbox: Any
) -> None:
    """A delivery receiver raises once: that poll leaves the report, the next records it."""
    row = _bounced(smtp_server, outbox, "carl@example.com")
    trusted.append(report([_failed("carl@example.com")], envid=row.message_id), "Retry")
    calls: list[str] = []

    def flaky(sender: Any, event: Any, outbox_recipient: Any, **kwargs: Any) -> None:
        calls.append(event.recipient)
        if len(calls) == 1:
            raise RuntimeError("a receiver of the delivery signal failed")

    delivery.connect(flaky, weak=False)
    try:
        _, err = _command("--imap", trusted.url("Retry"))
        assert "1 left for the next poll" in err
        _, err = _command("--imap", trusted.url("Retry"))
        assert "1 event(s)" in err and "0 left" in err
    finally:
        delivery.disconnect(flaky)
    assert calls == ["carl@example.com", "carl@example.com"]
    assert OutboxRecipient.objects.get(message=row).delivery == "bounced"


def test_imap_refusals_and_option_mistakes_are_command_errors(trusted: DovecotIMAP) -> None:
    """A refused login, a bad URL, --interval without --imap or not positive, two ways."""
    with pytest.raises(CommandError, match="refused"):
        _command("--imap", trusted.url(password="wrong"))
    with pytest.raises(CommandError, match="imaps:// or imap://"):
        _command("--imap", "https://example.com/")
    with pytest.raises(CommandError, match="--interval goes with --imap"):
        _command("--stdin", "--interval", "5")
    with pytest.raises(CommandError, match="positive"):
        _command("--imap", trusted.url(), "--interval", "0")
    with pytest.raises(CommandError, match="one way"):
        _command("--imap", trusted.url(), "--stdin")


def test_with_an_interval_it_keeps_polling_until_sigterm(
    trusted: DovecotIMAP, tmp_path: Path
) -> None:
    """The command as a process: a report put in while it runs is recorded; SIGTERM ends it."""
    database = tmp_path / "db.sqlite3"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.outbox.live.settings",
        "OUTBOX_LIVE_SETTINGS": json.dumps(
            {
                "DATABASES": {
                    "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(database)}
                }
            }
        ),
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "example_project")]),
    }
    subprocess.run(
        [sys.executable, "-m", "django", "migrate", "-v", "0"],
        env=env,
        cwd=ROOT,
        check=True,
        timeout=120,
    )
    command = [sys.executable, "-m", "django", "amsdal_bounces", "--imap", trusted.url("Loop")]
    process = subprocess.Popen(
        [*command, "--interval", "0.2"],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        trusted.append(report([_failed("dan@example.com")], envid="<never-sent@app.test>"), "Loop")
        deadline = time.monotonic() + 30
        while "$AmsdalTracked" not in "".join(trusted.flags("Loop")):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the report was not read within 30 s"
            time.sleep(0.05)  # the polling interval of a bounded wait
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    (line,) = out.splitlines()
    assert json.loads(line)["recipient"] == "dan@example.com"  # unknown message: logged, ignored
    assert "1 event(s)" in err
