"""Delivery tracking end to end: a real Postfix's own DSNs put back onto the outbox's recipients.

Postfix (Debian's ``postfix``, :class:`tests.postfix.PostfixRelay` on
127.0.0.1) is the final destination of ``mail.test``: its ``virtual``
delivery agent writes ``ann@mail.test``'s Maildir in a throwaway directory,
and any other address there is accepted at RCPT
(``smtpd_reject_unlisted_recipient = no``) and bounced afterwards, as a
relay does for a mailbox that vanished. Reports for ``returns.test`` go by a
transport map to a :class:`~amsdal_mail.tracking.receiver.ReportReceiver` on a free
port. The outbox sends one message to both with ``NOTIFY=SUCCESS,FAILURE``;
what comes back is Postfix's own "delivered" and "failed" DSN, which the
receiver parses and ``record_event`` records: ``delivered`` for ann,
``bounced`` (5.1.1) for the vanished one, with and without VERP.

Skipped, with the reason printed, only where Postfix cannot be started; under
CI=true that is a failure.
"""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.mail import EmailMessage

from amsdal_mail.tracking import DeliveryEvent
from amsdal_mail.tracking.receiver import ReportReceiver
from django_amsdal_mail.outbox import enqueue
from django_amsdal_mail.outbox.models import OutboxRecipient
from django_amsdal_mail.tracking import record_event
from tests.outbox.live.postgres import unavailable
from tests.postfix import PostfixRelay, postfix_unavailable

pytestmark = pytest.mark.django_db(transaction=True)

RETURN_PATH = "bounces@returns.test"
ANN, GONE = "ann@mail.test", "gone@mail.test"
_REPORT_TIMEOUT = 60.0

_MAIN_CF = """
virtual_mailbox_domains = mail.test
virtual_mailbox_base = {mail}
virtual_mailbox_maps = texthash:{config}/vmailbox
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}
virtual_minimum_uid = 1
smtpd_reject_unlisted_recipient = no
transport_maps = texthash:{config}/transport
"""
_MASTER_CF = "virtual   unix  -       n       n       -       -       virtual\n"


class Reports:
    """What the receiver got: the events, in order (appended by its worker thread)."""

    def __init__(self) -> None:
        self.events: list[DeliveryEvent] = []

    def wait_for(self, count: int) -> list[DeliveryEvent]:
        """Return the events once there are ``count``; fail after the timeout, saying which."""
        deadline = time.monotonic() + _REPORT_TIMEOUT
        while len(self.events) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{count} reports expected, got {self.events!r}")
            time.sleep(0.05)  # the polling interval of a bounded wait
        return list(self.events)


@pytest.fixture(scope="module")
def postfix_and_receiver() -> Iterator[tuple[PostfixRelay, ReportReceiver, Reports]]:
    """Postfix delivering mail.test and reporting to the receiver; stopped after the module.

    Its directory is made here rather than under pytest's ``tmp_path``, whose
    parent is private to root: Postfix's users must reach the queue and the mailboxes.
    """
    reason = postfix_unavailable()
    if reason is not None:
        unavailable(reason)
    reports = Reports()
    receiver = ReportReceiver(return_paths=[RETURN_PATH], on_event=reports.events.append)
    receiver.start()
    directory = Path(tempfile.mkdtemp(prefix="amsdal-postfix-tracking-"))
    directory.chmod(0o755)
    nobody = pwd.getpwnam("nobody")
    (directory / "mail").mkdir()
    os.chown(directory / "mail", nobody.pw_uid, nobody.pw_gid)
    relay = PostfixRelay(
        directory / "postfix",
        receiver.port,
        main_cf=_MAIN_CF.replace("{mail}", str(directory / "mail"))
        .replace("{uid}", str(nobody.pw_uid))
        .replace("{gid}", str(nobody.pw_gid)),
        master_cf=_MASTER_CF,
        files={
            "vmailbox": f"{ANN} ann/\n",
            "transport": f"returns.test smtp:[127.0.0.1]:{receiver.port}\n",
        },
    )
    relay.directory.mkdir()
    try:
        try:
            relay.start()
        except (OSError, RuntimeError) as exc:
            unavailable(f"Postfix did not start: {exc}")
        yield relay, receiver, reports
    finally:
        relay.stop()
        receiver.stop()
        shutil.rmtree(directory, ignore_errors=True)


def _mailbox(relay: PostfixRelay) -> list[bytes]:
    """The messages in ann's Maildir."""
    new = relay.directory.parent / "mail" / "ann" / "new"
    return [path.read_bytes() for path in sorted(new.iterdir())] if new.is_dir() else []


@pytest.mark.parametrize("verp", [True, False], ids=["verp", "envid"])
def test_postfix_reports_become_delivered_and_bounced_on_the_right_recipients(
    postfix_and_receiver: tuple[PostfixRelay, ReportReceiver, Reports],
    outbox: Any,
    verp: bool,
) -> None:
    """One message to a mailbox that exists and one that does not: Postfix's own DSNs say
    delivered and failed, and each lands on its recipient (by VERP token, or by ENVID)."""
    relay, _, reports = postfix_and_receiver
    settings = outbox(relay.host, relay.port)
    settings.EMAIL_RETURN_PATH = RETURN_PATH
    settings.EMAIL_VERP = verp
    settings.EMAIL_DSN_NOTIFY = "success,failure"
    reports.events.clear()

    (row,) = enqueue(
        EmailMessage(f"Order (verp={verp})", "Shipped.", "shop@shop.test", [ANN, GONE])
    )
    row.refresh_from_db()
    assert {r.address: r.status for r in row.recipients.all()} == {ANN: "sent", GONE: "sent"}

    events = reports.wait_for(2)
    by_recipient = {event.recipient: event for event in events}
    assert set(by_recipient) == {ANN, GONE}, events
    assert by_recipient[ANN].event == "delivered"
    assert by_recipient[GONE].event == "bounced"
    assert by_recipient[GONE].status == "5.1.1"
    for event in events:
        assert event.envid == row.message_id  # Postfix returned the ENVID it was given
        if verp:
            assert event.return_path is not None and event.return_path.startswith("bounces+")
        assert record_event(event) is not None

    recipients = {r.address: r for r in OutboxRecipient.objects.filter(message=row)}
    assert recipients[ANN].delivery == "delivered"
    assert recipients[ANN].delivery_status.startswith("2.")
    assert recipients[GONE].delivery == "bounced"
    assert recipients[GONE].delivery_status == "5.1.1"
    assert "gone@mail.test" in recipients[GONE].delivery_diagnostic
    assert any(f"Order (verp={verp})".encode() in m for m in _mailbox(relay))
