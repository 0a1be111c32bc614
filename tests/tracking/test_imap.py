"""poll_imap against a real IMAP server: Debian's Dovecot on 127.0.0.1 (tests/tracking/dovecot.py).

Reports are put into the mailbox over IMAP (APPEND, as a delivery would),
then polled: each message is read once and marked with ``$AmsdalTracked``;
what is no report, malformed or too large is marked and counted; a report
whose recording raised is left for the next poll. Skipped, with the reason
printed, only where Dovecot cannot run; under CI=true that is a failure.
"""

from __future__ import annotations

import ssl

import pytest

from amsdal_mail.tracking import MAX_SIZE, DeliveryEvent
from amsdal_mail.tracking.imap import (
    PASSWORD_ENV,
    PROCESSED,
    ImapError,
    PollResult,
    parse_imap_url,
    poll_imap,
)
from tests.smtpd import free_port
from tests.tracking.dovecot import USER, DovecotIMAP
from tests.tracking.reports import PLAIN_MESSAGE, POSTFIX_BOUNCE, report

FAILED = {"Final-Recipient": "rfc822; ann@mail.test", "Action": "failed", "Status": "5.1.1"}


def _nested(depth: int) -> bytes:
    """A multipart nested ``depth`` levels deep (past MAX_DEPTH: malformed)."""
    body = "Content-Type: text/plain\n\nbottom\n"
    for level in range(depth):
        body = (
            f'Content-Type: multipart/mixed; boundary="l{level}"\n\n'
            f"--l{level}\n{body}\n--l{level}--\n"
        )
    return ("Subject: nested\nMIME-Version: 1.0\n" + body).replace("\n", "\r\n").encode()


@pytest.fixture
def mailbox(dovecot: DovecotIMAP, request: pytest.FixtureRequest) -> str:
    """A fresh mailbox of the test's own (its name from the test's)."""
    return request.node.name.replace("[", "-").replace("]", "")[:60]


def _poll(
    dovecot: DovecotIMAP, mailbox: str, max_size: int = MAX_SIZE
) -> tuple[PollResult, list[str]]:
    events: list[DeliveryEvent] = []
    result = poll_imap(
        dovecot.url(mailbox), events.append, ssl_context=dovecot.client_context(), max_size=max_size
    )
    return result, [f"{e.event} {e.recipient}" for e in events]


# -- the URL ------------------------------------------------------------------------------


def test_the_url_names_server_login_and_mailbox(monkeypatch: pytest.MonkeyPatch) -> None:
    """imaps: port 993; imap: 143 with STARTTLS; percent-decoded; INBOX by default."""
    source = parse_imap_url("imaps://bounces%40example.com:p%2Fss@imap.example.com/Reports%202")
    assert (source.host, source.port, source.username, source.password, source.mailbox) == (
        "imap.example.com",
        993,
        "bounces@example.com",
        "p/ss",
        "Reports 2",
    )
    assert source.implicit_tls
    plain = parse_imap_url("imap://u:p@imap.example.com:1143")
    assert (plain.port, plain.mailbox, plain.implicit_tls) == (1143, "INBOX", False)
    assert "password" not in repr(plain)  # never shown
    monkeypatch.setenv(PASSWORD_ENV, "from-env")
    assert parse_imap_url("imaps://u@imap.example.com").password == "from-env"


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("pop3://u:p@host", "imaps:// or imap://"),
        ("imaps://u:p@/INBOX", "no host"),
        ("imaps://host/INBOX", "no user"),
        ("imaps://u@host", PASSWORD_ENV),
        ("imaps://u:p@host:99999", "port"),
    ],
)
def test_a_bad_url_says_what_is_wrong(url: str, says: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each mistake is named."""
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    with pytest.raises(ImapError, match=says):
        parse_imap_url(url)


# -- polling ------------------------------------------------------------------------------


def test_each_report_is_read_once_and_marked(dovecot: DovecotIMAP, mailbox: str) -> None:
    """Two reports and a non-report: the events once, every message marked, nothing twice."""
    dovecot.append(POSTFIX_BOUNCE, mailbox)
    dovecot.append(PLAIN_MESSAGE, mailbox)
    dovecot.append(report([FAILED], envid="<m1@app.test>"), mailbox)

    result, events = _poll(dovecot, mailbox)

    assert result == PollResult(looked_at=3, events=3, not_reports=1)
    assert events == [
        "bounced nobody@mail.test",
        "delayed slow@mail.test",
        "bounced ann@mail.test",
    ]
    assert all(PROCESSED in flags and "\\Seen" in flags for flags in dovecot.flags(mailbox))
    assert _poll(dovecot, mailbox) == (PollResult(), [])
    dovecot.append(report([FAILED], envid="<m2@app.test>"), mailbox)
    assert _poll(dovecot, mailbox) == (PollResult(looked_at=1, events=1), ["bounced ann@mail.test"])


def test_malformed_and_too_large_messages_are_marked_and_counted(
    dovecot: DovecotIMAP, mailbox: str
) -> None:
    """A multipart bomb and a message over max_size: no event, no crash, not looked at again."""
    dovecot.append(_nested(40), mailbox)
    dovecot.append(report([FAILED]) + b"x" * 5000, mailbox)

    result, events = _poll(dovecot, mailbox, max_size=4000)

    assert (result.malformed, result.too_large, result.events, events) == (1, 1, 0, [])
    assert _poll(dovecot, mailbox)[0] == PollResult()


def test_a_report_whose_recording_fails_is_read_again_next_time(
    dovecot: DovecotIMAP, mailbox: str
) -> None:
    """on_event raises: the message stays unmarked; the next poll records it and marks it."""
    dovecot.append(report([FAILED], envid="<m3@app.test>"), mailbox)

    def broken(event: DeliveryEvent) -> None:
        raise RuntimeError("the database is down")

    assert poll_imap(
        dovecot.url(mailbox), broken, ssl_context=dovecot.client_context()
    ) == PollResult(looked_at=1, failed=1)
    assert PROCESSED not in dovecot.flags(mailbox)[0]
    assert _poll(dovecot, mailbox) == (PollResult(looked_at=1, events=1), ["bounced ann@mail.test"])


def test_starttls_on_the_plain_port(dovecot: DovecotIMAP, mailbox: str) -> None:
    """imap:// upgrades with STARTTLS before the login."""
    dovecot.append(report([FAILED]), mailbox)
    events: list[DeliveryEvent] = []
    result = poll_imap(
        dovecot.url(mailbox, scheme="imap"), events.append, ssl_context=dovecot.client_context()
    )
    assert (result.events, [e.recipient for e in events]) == (1, ["ann@mail.test"])


def test_refusals_are_clear_errors(dovecot: DovecotIMAP, mailbox: str) -> None:
    """A wrong password, an untrusted certificate, a missing mailbox, nothing listening."""
    context = dovecot.client_context()
    with pytest.raises(ImapError, match=f"login as '{USER}' refused"):
        poll_imap(dovecot.url(mailbox, password="wrong"), print, ssl_context=context)
    with pytest.raises(ImapError, match="CERTIFICATE_VERIFY_FAILED"):
        poll_imap(dovecot.url(mailbox), print, ssl_context=ssl.create_default_context())
    with pytest.raises(ImapError, match="cannot open the mailbox 'no such box'"):
        poll_imap(dovecot.url("no such box"), print, ssl_context=context)
    with pytest.raises(ImapError, match="cannot connect"):
        poll_imap(f"imaps://u:p@127.0.0.1:{free_port()}/", print, timeout=5)
