"""parse_report: RFC 3464 reports, non-standard bounces, non-reports and hostile input."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amsdal_mail.tracking import (
    MAX_DEPTH,
    DeliveryEvent,
    MalformedReportError,
    ReportError,
    ReportTooLargeError,
    parse_report,
)
from tests.tracking.reports import PLAIN_MESSAGE, POSTFIX_BOUNCE, QMAIL_BOUNCE, report


def test_postfix_report_gives_one_event_per_recipient() -> None:
    """Both recipient blocks of Postfix's report become events with every field read."""
    bounced, delayed = parse_report(POSTFIX_BOUNCE)
    assert bounced == DeliveryEvent(
        event="bounced",
        recipient="nobody@mail.test",
        original_recipient="nobody@mail.test",
        status="5.1.1",
        diagnostic="550 5.1.1 <nobody@mail.test>: Recipient address rejected: "
        "User unknown in virtual mailbox table",
        remote_mta="mx.mail.test",
        envid="<orig.1@app.test>",
        message_id="<orig.1@app.test>",
        reported_at=datetime(2025, 6, 3, 10, 15, 1, tzinfo=UTC),
        return_path="bounces@returns.test",
    )
    assert delayed.event == "delayed"
    assert delayed.recipient == "slow@mail.test"
    assert delayed.original_recipient == "Slow@Mail.test"
    assert delayed.status == "4.4.1"
    assert delayed.remote_mta is None
    # Last-Attempt-Date wins over Arrival-Date.
    assert delayed.reported_at == datetime(2025, 6, 3, 10, 20, tzinfo=UTC)


@pytest.mark.parametrize(
    ("action", "event"),
    [
        ("failed", "bounced"),
        ("delayed", "delayed"),
        ("delivered", "delivered"),
        ("relayed", "relayed"),
        ("expanded", "expanded"),
        ("FAILED", "bounced"),
    ],
)
def test_actions_map_to_event_words(action: str, event: str) -> None:
    """Each RFC 3464 Action becomes its event word, whatever its case."""
    raw = report([{"Final-Recipient": "rfc822; a@x.test", "Action": action, "Status": "2.0.0"}])
    (found,) = parse_report(raw)
    assert found.event == event


def test_message_id_from_returned_message_and_envid() -> None:
    """The Message-ID comes from the returned message/rfc822; ENVID from the per-message block."""
    raw = report(
        [{"Final-Recipient": "rfc822; a@x.test", "Action": "delivered", "Status": "2.0.0"}],
        envid="env-42",
        returned="Message-ID: <m.1@app.test>\nSubject: hi\n\nbody\n",
    )
    (event,) = parse_report(raw)
    assert (event.envid, event.message_id) == ("env-42", "<m.1@app.test>")


def test_utf8_recipient_and_return_path_argument() -> None:
    """A utf-8 typed address is decoded (RFC 6533); return_path= overrides the headers."""
    raw = report(
        [{"Final-Recipient": "utf-8; j\\x{E9}r\\x{F4}me@x.test", "Action": "failed"}],
    )
    (event,) = parse_report(raw, return_path="b+tok@returns.test")
    assert event.recipient == "jérôme@x.test"
    assert event.return_path == "b+tok@returns.test"
    assert event.status is None


def test_non_standard_bounce_through_flufl() -> None:
    """A qmail bounce (no RFC 3464 part) is recognised by flufl.bounce."""
    pytest.importorskip("flufl.bounce", reason="the [tracking] extra is not installed")
    (event,) = parse_report(QMAIL_BOUNCE)
    assert (event.event, event.recipient) == ("bounced", "gone@qmail.test")
    assert event.reported_at == datetime(2025, 6, 4, 8, 0, tzinfo=UTC)


def test_a_message_that_is_no_report_gives_no_event() -> None:
    """An ordinary reply to the bounce address is not a report, and not an error."""
    assert parse_report(PLAIN_MESSAGE) == []
    assert parse_report(b"") == []
    assert parse_report(b"Subject: x\r\n\r\n\xff\xfe") == []


def test_report_over_the_size_limit() -> None:
    """A report longer than max_size is refused before it is parsed."""
    raw = POSTFIX_BOUNCE
    with pytest.raises(ReportTooLargeError) as info:
        parse_report(raw, max_size=len(raw) - 1)
    assert (info.value.size, info.value.limit) == (len(raw), len(raw) - 1)
    assert isinstance(info.value, ValueError)
    assert len(parse_report(raw, max_size=len(raw))) == 2


def _nested(depth: int) -> bytes:
    head = "MIME-Version: 1.0\n"
    body = "Content-Type: text/plain\n\nbottom\n"
    for level in range(depth):
        body = (
            f'Content-Type: multipart/mixed; boundary="l{level}"\n\n'
            f"--l{level}\n{body}\n--l{level}--\n"
        )
    return (head + body).replace("\n", "\r\n").encode()


def test_nested_multipart_bomb_is_refused() -> None:
    """Multiparts nested beyond MAX_DEPTH, or a thousand of them, are refused."""
    assert parse_report(_nested(MAX_DEPTH)) == []
    with pytest.raises(MalformedReportError, match="deeper"):
        parse_report(_nested(MAX_DEPTH + 2))
    with pytest.raises(MalformedReportError, match="more than"):
        parse_report(_nested(1000))


@pytest.mark.parametrize(
    "block",
    [
        {"Action": "failed", "Status": "5.1.1"},
        {"Final-Recipient": "rfc822; a@x.test", "Action": "exploded"},
        {"Final-Recipient": "rfc822; a@x.test"},
        {"Final-Recipient": "rfc822; <a b>@x", "Action": "failed"},
        {"Final-Recipient": "rfc822;", "Action": "failed"},
    ],
)
def test_malformed_recipient_block_is_an_error(block: dict[str, str]) -> None:
    """A block without a readable recipient or Action raises, never guessing a recipient."""
    with pytest.raises(MalformedReportError):
        parse_report(report([block]))


def test_report_without_recipient_blocks_is_an_error() -> None:
    """A delivery-status part with only the per-message fields is malformed."""
    with pytest.raises(MalformedReportError, match="no recipient block"):
        parse_report(report([]))


def test_several_recipients_in_order() -> None:
    """Every recipient block is one event, in the report's order."""
    blocks = [
        {"Final-Recipient": f"rfc822; r{i}@x.test", "Action": "failed", "Status": "5.0.0"}
        for i in range(5)
    ]
    assert [e.recipient for e in parse_report(report(blocks))] == [f"r{i}@x.test" for i in range(5)]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_never_crash(raw: bytes) -> None:
    """Any bytes give events or a ReportError, nothing else."""
    try:
        events = parse_report(raw)
    except ReportError:
        return
    for event in events:
        assert event.recipient.lower().encode("utf-8", "replace") in raw.lower()


_atoms = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789.-_+", min_size=1, max_size=20)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(_atoms, st.sampled_from(["failed", "delivered", "delayed"])), max_size=8))
def test_recipients_come_only_from_the_report(items: list[tuple[str, str]]) -> None:
    """The events name exactly the Final-Recipients of the report, never another address."""
    blocks = [
        {"Final-Recipient": f"rfc822; {local}@x.test", "Action": action} for local, action in items
    ]
    try:
        events = parse_report(report(blocks))
    except MalformedReportError:
        # Only a report without any recipient block is malformed here.
        assert not items
        return
    assert [e.recipient for e in events] == [f"{local}@x.test" for local, _ in items]
