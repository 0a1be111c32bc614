"""Delivery reports onto the outbox: record_event, the delivery signal, manage.py amsdal_bounces.

Messages go through the outbox (engine "immediate") to a recording server;
the reports are built as MTAs write them (tests/tracking/reports.py) and
handed over as ``manage.py amsdal_bounces`` gets them: on standard input, or
in an SMTP session to its receiver.
"""

from __future__ import annotations

import io
import logging
import os
import signal
import smtplib
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.core.mail import EmailMessage
from django.core.management import CommandError, call_command
from django.test.utils import override_settings

from amsdal_mail.tracking import DeliveryEvent, encode_verp, message_key, parse_report
from django_amsdal_mail.outbox import enqueue
from django_amsdal_mail.outbox.models import OutboxMessage, OutboxRecipient
from django_amsdal_mail.signals import delivery
from django_amsdal_mail.tracking import record_event
from tests.smtpd import RecordingServer, ServerFactory, free_port
from tests.tracking.reports import report

pytestmark = pytest.mark.django_db(transaction=True)

RETURN_PATH = "bounces@returns.test"


@pytest.fixture
def server(smtp_server: ServerFactory, outbox: Any) -> RecordingServer:
    """A recording server that the outbox (engine 'immediate') sends to."""
    server = smtp_server()
    outbox(server.host, server.port)
    return server


@pytest.fixture
def events(connect: Callable[..., Any]) -> list[tuple[DeliveryEvent, Any]]:
    """Every ``delivery`` signal: (event, outbox_recipient)."""
    seen: list[tuple[DeliveryEvent, Any]] = []
    connect(
        delivery,
        lambda sender, event, outbox_recipient, **kw: seen.append((event, outbox_recipient)),
    )
    return seen


def _send(*to: str, subject: str = "Hello") -> OutboxMessage:
    (row,) = enqueue(EmailMessage(subject, "Body", "app@example.com", list(to)))
    row.refresh_from_db()
    assert row.state == "done"
    return row


def _deliveries() -> dict[tuple[str, str], tuple[str, str]]:
    """Every recipient row's (delivery, delivery_status), by (Message-ID, address)."""
    return {
        (r.message.message_id, r.address): (r.delivery, r.delivery_status)
        for r in OutboxRecipient.objects.select_related("message")
    }


def _failed(address: str, status: str = "5.1.1", **more: str) -> dict[str, str]:
    return {"Final-Recipient": f"rfc822; {address}", "Action": "failed", "Status": status, **more}


def test_verp_return_paths_of_the_outbox_name_message_and_recipient(
    server: RecordingServer, settings: Any, events: list[Any]
) -> None:
    """EMAIL_RETURN_PATH + EMAIL_VERP (signed with SECRET_KEY): a bounce to one VERP address."""
    settings.EMAIL_RETURN_PATH = RETURN_PATH
    settings.EMAIL_VERP = True
    row = _send("ann@example.com", "bob@example.com")
    row.refresh_from_db()
    assert row.message_key == message_key(row.message_id)
    senders = {m.rcpt_tos[0]: m.mail_from for m in server.messages}
    assert set(senders) == {"ann@example.com", "bob@example.com"}
    assert all(s.startswith("bounces+") and s.endswith("@returns.test") for s in senders.values())
    # The report names neither the message nor the recipient by itself: only the address
    # it was sent to does (some MTAs rewrite Final-Recipient; the token is what counts).
    raw = report([_failed("someone-else@relay.test")], to=senders["ann@example.com"])
    (event,) = parse_report(raw, return_path=senders["ann@example.com"])
    recorded = record_event(event)
    assert recorded is not None and recorded.address == "ann@example.com"
    assert _deliveries() == {
        (row.message_id, "ann@example.com"): ("bounced", "5.1.1"),
        (row.message_id, "bob@example.com"): ("", ""),
    }
    assert events == [(event, recorded)]


def test_envid_and_returned_message_id_find_the_message(server: RecordingServer) -> None:
    """Without VERP: ENVID (the Message-ID) or the returned headers' Message-ID, any case domain."""
    first = _send("ann@example.com", "bob@example.com", subject="first")
    second = _send("carl@example.com", subject="second")
    by_envid = report([_failed("bob@EXAMPLE.com")], envid=first.message_id)
    returned = f"Message-ID: {second.message_id}\nSubject: second\n"
    by_header = report(
        [{"Final-Recipient": "rfc822; carl@example.com", "Action": "delivered", "Status": "2.0.0"}],
        returned=returned,
        returned_type="text/rfc822-headers",
    )
    for raw in (by_envid, by_header):
        for event in parse_report(raw):
            assert record_event(event) is not None
    assert _deliveries() == {
        (first.message_id, "ann@example.com"): ("", ""),
        (first.message_id, "bob@example.com"): ("bounced", "5.1.1"),
        (second.message_id, "carl@example.com"): ("delivered", "2.0.0"),
    }


def test_a_final_word_is_kept_and_the_same_event_twice_changes_nothing(
    server: RecordingServer,
) -> None:
    """delayed, then delivered; a later delayed does not replace it; a repeat is a no-op."""
    row = _send("ann@example.com")
    stamp = "Last-Attempt-Date"

    def event(action: str, status: str, when: str) -> DeliveryEvent:
        fields = {"Final-Recipient": "rfc822; ann@example.com", "Action": action}
        (parsed,) = parse_report(
            report([{**fields, "Status": status, stamp: when}], envid=row.message_id)
        )
        return parsed

    ann = row.recipients.get()
    record_event(event("delayed", "4.4.1", "Wed, 04 Jun 2025 08:00:00 +0000"))
    ann.refresh_from_db()
    assert (ann.delivery, ann.delivery_status) == ("delayed", "4.4.1")
    delivered = event("delivered", "2.0.0", "Wed, 04 Jun 2025 09:00:00 +0000")
    record_event(delivered)
    ann.refresh_from_db()
    assert (ann.delivery, ann.delivery_status) == ("delivered", "2.0.0")
    kept_at = ann.updated_at
    record_event(event("delayed", "4.4.1", "Wed, 04 Jun 2025 10:00:00 +0000"))
    record_event(delivered)
    ann.refresh_from_db()
    assert (ann.delivery, ann.delivery_status, ann.updated_at) == ("delivered", "2.0.0", kept_at)


def test_forged_and_foreign_tokens_and_unknown_messages_touch_nothing(
    server: RecordingServer, settings: Any, events: list[Any], caplog: pytest.LogCaptureFixture
) -> None:
    """A token signed with another secret, an altered one, an unknown ENVID, a stranger: ignored."""
    row = _send("ann@example.com", "bob@example.com")
    before = _deliveries()
    key = message_key(row.message_id)
    foreign = encode_verp(RETURN_PATH, key, "ann@example.com", "another secret")
    genuine = encode_verp(RETURN_PATH, key, "ann@example.com", settings.SECRET_KEY)
    altered = genuine.replace("ann=example.com", "bob=example.com")
    cases = [
        (report([_failed("ann@example.com")], envid=row.message_id), foreign),
        (report([_failed("bob@example.com")], envid=row.message_id), altered),
        (report([_failed("ann@example.com")], envid="<never-sent@example.com>"), None),
        (report([_failed("stranger@example.com")], envid=row.message_id), None),
    ]
    with caplog.at_level(logging.INFO, logger="django_amsdal_mail.tracking"):
        for raw, to in cases:
            for event in parse_report(raw, return_path=to):
                assert record_event(event) is None
    assert _deliveries() == before
    assert [recipient for _, recipient in events] == [None] * 4
    logged = caplog.text
    assert "not signed with this secret" in logged
    assert "no outbox message has Message-ID <never-sent@example.com>" in logged
    assert "has no recipient stranger@example.com" in logged


def test_without_the_outbox_only_the_signal_is_sent(events: list[Any]) -> None:
    """The outbox app not installed: record_event sends the signal with no recipient."""
    (event,) = parse_report(report([_failed("ann@example.com")], envid="<m@example.com>"))
    installed = [
        "django.contrib.contenttypes",
        "django.contrib.auth",
        "django_amsdal_mail",
    ]
    with override_settings(INSTALLED_APPS=installed):
        assert record_event(event) is None
    assert events == [(event, None)]


# -- manage.py amsdal_bounces --------------------------------------------------------------


def _stdin(monkeypatch: pytest.MonkeyPatch, raw: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(raw)))


def test_stdin_records_and_prints_each_event(
    server: RecordingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--stdin: one report, its events recorded and printed as JSON lines."""
    row = _send("ann@example.com")
    _stdin(monkeypatch, report([_failed("ann@example.com")], envid=row.message_id))
    out = io.StringIO()
    call_command("amsdal_bounces", "--stdin", stdout=out)
    assert (
        '"event": "bounced"' in out.getvalue()
        and '"recipient": "ann@example.com"' in out.getvalue()
    )
    assert _deliveries() == {(row.message_id, "ann@example.com"): ("bounced", "5.1.1")}


def _nested(depth: int) -> bytes:
    head = "From: x@mx.test\nTo: bounces@returns.test\nMIME-Version: 1.0\n"
    body = "Content-Type: text/plain\n\nx\n"
    for level in range(depth):
        body = (
            f'Content-Type: multipart/mixed; boundary="b{level}"\n\n'
            f"--b{level}\n{body}\n--b{level}--\n"
        )
    return (head + body).replace("\n", "\r\n").encode()


@pytest.mark.parametrize(
    ("what", "raw", "error"),
    [
        ("too large", report([_failed("ann@example.com")]) + b"x" * 70_000, "larger than"),
        ("nested like a zip bomb", _nested(200), "nest"),
        (
            "a recipient block without Action",
            report([{"Final-Recipient": "rfc822; a@x.test"}]),
            "Action",
        ),
    ],
)
def test_stdin_refuses_hostile_reports_and_records_nothing(
    server: RecordingServer, monkeypatch: pytest.MonkeyPatch, what: str, raw: bytes, error: str
) -> None:
    """Over --max-size, nested too deep, malformed: CommandError naming why; no row changes."""
    row = _send("ann@example.com")
    before = _deliveries()
    _stdin(monkeypatch, raw)
    with pytest.raises(CommandError, match=error):
        call_command("amsdal_bounces", "--stdin", "--max-size", "65536")
    assert _deliveries() == before
    assert row.recipients.get().delivery == ""


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ([], "say how reports come in"),
        (["serve"], "serve needs --listen"),
        (["serve", "--listen", "nowhere"], "--listen must be HOST:PORT"),
        (["serve", "--listen", "127.0.0.1:2526"], "serve needs the return path"),
        (["--stdin", "--max-size", "0"], "--max-size must be a positive"),
    ],
)
def test_usage_errors_say_what_is_missing(args: list[str], error: str) -> None:
    with pytest.raises(CommandError, match=error):
        call_command("amsdal_bounces", *args)


@pytest.fixture
def sigterm_later() -> Iterator[Callable[[Callable[[], None]], threading.Thread]]:
    """Run a function in a thread, then SIGTERM this process (how serve is stopped)."""
    threads: list[threading.Thread] = []
    failures: list[BaseException] = []

    def start(work: Callable[[], None]) -> threading.Thread:
        def run() -> None:
            try:
                work()
            except BaseException as exc:  # reported by the fixture's teardown
                failures.append(exc)
            finally:
                os.kill(os.getpid(), signal.SIGTERM)

        thread = threading.Thread(target=run, daemon=True)
        threads.append(thread)
        thread.start()
        return thread

    yield start
    for thread in threads:
        thread.join(30)
    if failures:
        raise failures[0]


def test_serve_takes_reports_over_smtp_and_records_them(
    server: RecordingServer,
    settings: Any,
    sigterm_later: Callable[[Callable[[], None]], threading.Thread],
) -> None:
    """serve: a real SMTP session to the receiver; a stranger's report and an oversize refused."""
    settings.EMAIL_RETURN_PATH = RETURN_PATH
    row = _send("ann@example.com", "bob@example.com")
    port = free_port()
    replies: dict[str, Any] = {}

    def client() -> None:
        deadline = time.monotonic() + 20
        while True:
            try:
                connection = smtplib.SMTP("127.0.0.1", port, timeout=10)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)  # polling interval: until the receiver listens
        with connection:
            replies["ok"] = connection.sendmail(
                "", [RETURN_PATH], report([_failed("bob@example.com")], envid=row.message_id)
            )
            try:
                connection.sendmail("", ["postmaster@returns.test"], b"Subject: x\r\n\r\nx\r\n")
            except smtplib.SMTPRecipientsRefused as exc:
                replies["stranger"] = exc.recipients
            try:
                connection.sendmail("", [RETURN_PATH], b"Subject: big\r\n\r\n" + b"y" * 70 * 2000)
            except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as exc:
                replies["big"] = exc.smtp_code

    out = io.StringIO()
    sigterm_later(client)
    call_command(
        "amsdal_bounces",
        "serve",
        "--listen",
        f"127.0.0.1:{port}",
        "--max-size",
        "65536",
        stdout=out,
    )
    assert replies["ok"] == {}
    assert replies["stranger"]["postmaster@returns.test"][0] == 550
    assert replies["big"] == 552
    assert _deliveries() == {
        (row.message_id, "ann@example.com"): ("", ""),
        (row.message_id, "bob@example.com"): ("bounced", "5.1.1"),
    }
    assert '"recipient": "bob@example.com"' in out.getvalue()


def test_the_admin_filters_by_delivery_and_shows_it(
    admin_client: Any, server: RecordingServer
) -> None:
    """recipient_delivery=bounced / none keeps the right messages; the message page shows it."""
    from django.urls import reverse

    bounced = _send("ann@example.com", "bob@example.com", subject="bounced")
    _send("carl@example.com", subject="quiet")
    (event,) = parse_report(report([_failed("bob@example.com")], envid=bounced.message_id))
    record_event(event)
    changelist = reverse("admin:amsdal_outbox_outboxmessage_changelist")

    def listed(**params: str) -> set[str]:
        response = admin_client.get(changelist, params)
        assert response.status_code == 200
        return {row.subject for row in response.context["cl"].result_list}

    assert listed(recipient_delivery="bounced") == {"bounced"}
    assert listed(recipient_delivery="delivered") == set()
    assert listed(recipient_delivery="none") == {"bounced", "quiet"}  # ann has no report yet
    page = admin_client.get(reverse("admin:amsdal_outbox_outboxmessage_change", args=[bounced.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert "Bounced" in html and "5.1.1" in html
