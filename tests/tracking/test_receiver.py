"""The SMTP report receiver: only its return paths, a size limit, one JSON line per event."""

from __future__ import annotations

import json
import os
import smtplib
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from amsdal_mail.tracking import DeliveryEvent, encode_verp, message_key
from amsdal_mail.tracking.receiver import ReportReceiver, event_json, main, parse_listen
from tests.smtpd import free_port
from tests.tracking.reports import PLAIN_MESSAGE, POSTFIX_BOUNCE, report

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def receiver() -> Iterator[tuple[ReportReceiver, list[DeliveryEvent]]]:
    events: list[DeliveryEvent] = []
    with ReportReceiver(
        return_paths=["bounces@returns.test"], on_event=events.append, max_size=20_000
    ) as server:
        yield server, events


def _send(port: int, rcpt: str, data: bytes) -> dict[str, tuple[int, bytes]]:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        return client.sendmail("", [rcpt], data)


def test_report_for_the_return_path_becomes_events(
    receiver: tuple[ReportReceiver, list[DeliveryEvent]],
) -> None:
    """A report to the return path gives its events, each knowing the address it came to."""
    server, events = receiver
    _send(server.port, "bounces@returns.test", POSTFIX_BOUNCE)
    assert [(e.event, e.recipient) for e in events] == [
        ("bounced", "nobody@mail.test"),
        ("delayed", "slow@mail.test"),
    ]
    assert {e.return_path for e in events} == {"bounces@returns.test"}


def test_verp_address_is_accepted_and_kept(
    receiver: tuple[ReportReceiver, list[DeliveryEvent]],
) -> None:
    """bounces+TOKEN@ is taken; the event's return_path is that VERP address."""
    server, events = receiver
    verp = encode_verp("bounces@returns.test", message_key("<m@a>"), "a@x.test", "k")
    raw = report([{"Final-Recipient": "rfc822; a@x.test", "Action": "failed"}])
    _send(server.port, verp, raw)
    (event,) = events
    assert event.return_path == verp
    line = json.loads(event_json(event, secret="k"))
    assert line["verp"] == {"message_key": message_key("<m@a>"), "recipient": "a@x.test"}
    assert json.loads(event_json(event, secret="wrong"))["verp"] is None


@pytest.mark.parametrize(
    "rcpt", ["someone@returns.test", "bounces@elsewhere.test", "bouncesx@returns.test"]
)
def test_other_recipients_are_refused(
    receiver: tuple[ReportReceiver, list[DeliveryEvent]], rcpt: str
) -> None:
    """RCPT TO anything but the return path (or its VERP form) is refused with 550."""
    server, events = receiver
    with pytest.raises(smtplib.SMTPRecipientsRefused) as info:
        _send(server.port, rcpt, POSTFIX_BOUNCE)
    assert info.value.recipients[rcpt][0] == 550
    assert events == []


def test_size_limit_malformed_and_non_reports(
    receiver: tuple[ReportReceiver, list[DeliveryEvent]],
) -> None:
    """Over max_size: 552; a malformed report: 550 5.6.0; a non-report: accepted, no event."""
    server, events = receiver
    big = POSTFIX_BOUNCE + (b"X" * 70 + b"\r\n") * 500  # lines of legal length
    # Announced with SIZE (as smtplib and Postfix do): refused at MAIL FROM.
    with pytest.raises(smtplib.SMTPSenderRefused) as announced:
        _send(server.port, "bounces@returns.test", big)
    assert announced.value.smtp_code == 552
    # Not announced: refused at the end of DATA.
    with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as client:
        client.ehlo()
        assert client.mail("")[0] == 250
        assert client.rcpt("bounces@returns.test")[0] == 250
        assert client.data(big)[0] == 552
    malformed = report([{"Action": "failed"}])
    with pytest.raises(smtplib.SMTPDataError) as bad:
        _send(server.port, "bounces@returns.test", malformed)
    assert bad.value.smtp_code == 550 and b"5.6.0" in bad.value.smtp_error
    assert _send(server.port, "bounces@returns.test", PLAIN_MESSAGE) == {}
    assert events == []


def test_failing_callback_asks_for_a_retry() -> None:
    """An on_event that raises gives 451: the reporting server keeps the report."""

    def fail(event: DeliveryEvent) -> None:
        raise RuntimeError("database down")

    with ReportReceiver(return_paths="bounces@returns.test", on_event=fail) as server:
        with pytest.raises(smtplib.SMTPDataError) as info:
            _send(server.port, "bounces@returns.test", POSTFIX_BOUNCE)
    assert info.value.smtp_code == 451


def test_listen_and_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    """HOST:PORT is parsed; a bad --listen or --return-path is exit code 2, named."""
    assert parse_listen("127.0.0.1:2526") == ("127.0.0.1", 2526)
    assert parse_listen("[::1]:25") == ("::1", 25)
    assert main(["serve", "--listen", "nowhere", "--return-path", "b@r.test"]) == 2
    assert "--listen must be HOST:PORT" in capsys.readouterr().err
    assert main(["serve", "--listen", "127.0.0.1:1", "--return-path", "nobody"]) == 2
    assert "return path must be an address" in capsys.readouterr().err


def test_serve_as_a_process_prints_json_lines(tmp_path: Path) -> None:
    """`python -m amsdal_mail bounces serve` prints each event; SIGTERM stops it."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "amsdal_mail",
            "bounces",
            "serve",
            "--listen",
            f"127.0.0.1:{port}",
            "--return-path",
            "bounces@returns.test",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    try:
        assert process.stderr is not None and process.stdout is not None
        banner = process.stderr.readline()
        assert banner.strip() == f"listening on 127.0.0.1:{port}", banner
        lines: list[str] = []
        reader = threading.Thread(
            target=lambda: lines.extend(process.stdout.readline() for _ in range(2))  # type: ignore[union-attr]
        )
        reader.start()
        _send(port, "bounces@returns.test", POSTFIX_BOUNCE)
        reader.join(timeout=20)
        first, second = (json.loads(line) for line in lines)
        assert first["event"] == "bounced" and first["recipient"] == "nobody@mail.test"
        assert first["status"] == "5.1.1" and first["message_id"] == "<orig.1@app.test>"
        assert first["reported_at"] == "2025-06-03T10:15:01+00:00"
        assert set(first) >= {
            "event",
            "recipient",
            "original_recipient",
            "status",
            "diagnostic",
            "remote_mta",
            "envid",
            "message_id",
            "reported_at",
        }
        assert second["event"] == "delayed"
        process.terminate()
        deadline = time.monotonic() + 15
        while process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert process.returncode == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
