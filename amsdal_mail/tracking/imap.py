"""Delivery reports from an IMAP mailbox: each new message read once, its events handed on.

Where reports are delivered to a mailbox (the return path is an ordinary
address at a provider, or your MTA files them there), :func:`poll_imap` logs
in over TLS, looks at every message of the mailbox not yet marked, parses it
with :func:`~amsdal_mail.tracking.parse_report` and calls ``on_event`` with
each event. A message is then marked with the keyword :data:`PROCESSED` (and
``\\Seen``), so the next poll never counts it again:

* a report whose events were all handed on: marked;
* a message that is no report, a malformed report, one over ``max_size``:
  marked too (they would be the same next time), counted and logged;
* a report for which ``on_event`` raised: left unmarked, so the next poll
  tries it again (recording an event twice changes nothing).

A mailbox that cannot keep keywords (no ``\\*`` in its PERMANENTFLAGS) is read
by ``\\Seen`` instead: only unseen messages are looked at.

The mailbox is named by a URL: ``imaps://USER:PASSWORD@HOST[:PORT][/MAILBOX]``
(TLS from the first byte, port 993) or ``imap://...`` (port 143, STARTTLS
required: the password never goes in clear). The user and password are
percent-decoded; a password left out of the URL is read from
``AMSDAL_EMAIL_IMAP_PASSWORD``. The mailbox defaults to ``INBOX``.
"""

from __future__ import annotations

import email
import imaplib
import logging
import os
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from .events import DeliveryEvent
from .report import MAX_SIZE, MalformedReportError, ReportTooLargeError, parse_report

__all__ = [
    "PASSWORD_ENV",
    "PROCESSED",
    "ImapError",
    "ImapSource",
    "PollResult",
    "parse_imap_url",
    "poll_imap",
]

logger = logging.getLogger(__name__)

#: The keyword a processed message gets.
PROCESSED = "$AmsdalTracked"
#: Where the password comes from when the URL has none.
PASSWORD_ENV = "AMSDAL_EMAIL_IMAP_PASSWORD"
_PORTS = {"imaps": 993, "imap": 143}
_SIZE = re.compile(rb"RFC822\.SIZE (\d+)")


class ImapError(Exception):
    """The mailbox could not be read: a bad URL, a refused login, no such mailbox, no TLS."""


@dataclass(frozen=True)
class ImapSource:
    """Where the reports are: server, login and mailbox (see :func:`parse_imap_url`)."""

    host: str
    port: int
    username: str
    password: str = field(repr=False)
    mailbox: str = "INBOX"
    implicit_tls: bool = True  #: imaps (TLS at once); else STARTTLS, required


@dataclass
class PollResult:
    """What one poll did, message by message."""

    looked_at: int = 0  #: messages not marked before this poll
    events: int = 0  #: events handed to ``on_event``
    not_reports: int = 0  #: messages that are no delivery report (marked)
    malformed: int = 0  #: reports beyond the limits or unreadable (marked)
    too_large: int = 0  #: messages over ``max_size`` (marked, not downloaded)
    failed: int = 0  #: reports whose ``on_event`` raised (left for the next poll)


def parse_imap_url(url: str) -> ImapSource:
    """Return the :class:`ImapSource` ``url`` names.

    Raises:
        ImapError: not an ``imaps://`` or ``imap://`` URL, or without a host or user,
            or without a password in it or in ``AMSDAL_EMAIL_IMAP_PASSWORD``.
    """
    parts = urlsplit(url)
    if parts.scheme not in _PORTS:
        raise ImapError(f"the IMAP URL must start with imaps:// or imap://, not {url!r}")
    if not parts.hostname:
        raise ImapError("the IMAP URL names no host (imaps://USER:PASSWORD@HOST/MAILBOX)")
    if not parts.username:
        raise ImapError("the IMAP URL names no user (imaps://USER:PASSWORD@HOST/MAILBOX)")
    try:
        port = parts.port or _PORTS[parts.scheme]
    except ValueError as exc:
        raise ImapError(f"the IMAP URL's port is not a number: {exc}") from exc
    password = unquote(parts.password) if parts.password is not None else None
    if password is None:
        password = os.environ.get(PASSWORD_ENV)
    if not password:
        raise ImapError(f"no IMAP password: put it in the URL or in {PASSWORD_ENV}")
    mailbox = unquote(parts.path.lstrip("/")) or "INBOX"
    return ImapSource(
        host=parts.hostname,
        port=port,
        username=unquote(parts.username),
        password=password,
        mailbox=mailbox,
        implicit_tls=parts.scheme == "imaps",
    )


def _connect(source: ImapSource, context: ssl.SSLContext, timeout: float) -> imaplib.IMAP4:
    try:
        if source.implicit_tls:
            return imaplib.IMAP4_SSL(source.host, source.port, ssl_context=context, timeout=timeout)
        connection = imaplib.IMAP4(source.host, source.port, timeout=timeout)
    except (OSError, imaplib.IMAP4.error) as exc:
        raise ImapError(f"cannot connect to {source.host}:{source.port}: {exc}") from exc
    try:
        connection.starttls(ssl_context=context)
    except (OSError, imaplib.IMAP4.error) as exc:
        connection.shutdown()
        raise ImapError(
            f"{source.host}:{source.port} did not start TLS ({exc}); the password is not sent"
        ) from exc
    return connection


def _quoted(mailbox: str) -> str:
    return '"' + mailbox.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _keeps_keywords(connection: imaplib.IMAP4) -> bool:
    _, data = connection.response("PERMANENTFLAGS")
    flags = b" ".join(d for d in data if isinstance(d, bytes))
    return b"\\*" in flags or PROCESSED.encode() in flags


def poll_imap(
    source: ImapSource | str,
    on_event: Callable[[DeliveryEvent], object],
    *,
    max_size: int = MAX_SIZE,
    ssl_context: ssl.SSLContext | None = None,
    timeout: float = 30.0,
) -> PollResult:
    """Read every unmarked message of the mailbox once; hand each report's events on.

    ``source`` is an :class:`ImapSource` or its URL. The certificate is checked
    with ``ssl_context`` (default: the system's trust store).

    Raises:
        ImapError: the URL, the connection, TLS, the login or the mailbox failed
            (nothing was marked after the failure).
    """
    if isinstance(source, str):
        source = parse_imap_url(source)
    context = ssl_context or ssl.create_default_context()
    connection = _connect(source, context, timeout)
    result = PollResult()
    try:
        try:
            connection.login(source.username, source.password)
        except imaplib.IMAP4.error as exc:
            raise ImapError(f"IMAP login as {source.username!r} refused: {exc}") from exc
        status, data = connection.select(_quoted(source.mailbox))
        if status != "OK":
            raise ImapError(f"cannot open the mailbox {source.mailbox!r}: {data!r}")
        keywords = _keeps_keywords(connection)
        if not keywords:
            logger.warning(
                "the mailbox %r keeps no keywords: reading only unseen messages", source.mailbox
            )
        mark = f"(\\Seen {PROCESSED})" if keywords else "(\\Seen)"
        criteria = ("UNKEYWORD", PROCESSED, "UNDELETED") if keywords else ("UNSEEN", "UNDELETED")
        status, data = connection.uid("SEARCH", *criteria)
        if status != "OK":
            raise ImapError(f"cannot search the mailbox {source.mailbox!r}: {data!r}")
        uids = data[0].split() if data and data[0] else []
        for uid in uids:
            result.looked_at += 1
            if _handle(connection, uid.decode(), on_event, max_size, result):
                connection.uid("STORE", uid.decode(), "+FLAGS", mark)
    except (OSError, imaplib.IMAP4.abort) as exc:
        raise ImapError(f"the IMAP connection to {source.host} failed: {exc}") from exc
    finally:
        try:
            connection.logout()
        except (OSError, imaplib.IMAP4.error):
            pass
    return result


def _fetch(connection: imaplib.IMAP4, uid: str, item: str) -> list[object]:
    status, data = connection.uid("FETCH", uid, item)
    if status != "OK":
        raise ImapError(f"cannot fetch message {uid}: {data!r}")
    return list(data)


def _handle(
    connection: imaplib.IMAP4,
    uid: str,
    on_event: Callable[[DeliveryEvent], object],
    max_size: int,
    result: PollResult,
) -> bool:
    """Process message ``uid``; return True when it is to be marked."""
    sizes = [
        _SIZE.search(d) for d in _fetch(connection, uid, "(RFC822.SIZE)") if isinstance(d, bytes)
    ]
    size = next((int(m.group(1)) for m in sizes if m), 0)
    if size > max_size:
        result.too_large += 1
        logger.warning(
            "message %s is %d bytes, over the %d-byte limit: skipped", uid, size, max_size
        )
        return True
    raw = next(
        (d[1] for d in _fetch(connection, uid, "(BODY.PEEK[])") if isinstance(d, tuple)), b""
    )
    try:
        events = parse_report(bytes(raw), max_size=max_size)
    except (MalformedReportError, ReportTooLargeError) as exc:
        result.malformed += 1
        logger.warning("message %s is no readable delivery report: %s", uid, exc)
        return True
    if not events:
        result.not_reports += 1
        subject = email.message_from_bytes(bytes(raw)[:65536]).get("Subject", "")
        logger.info("message %s (%r) is no delivery report", uid, subject)
        return True
    try:
        for event in events:
            on_event(event)
            result.events += 1
    except Exception:
        result.failed += 1
        logger.exception("recording the report in message %s failed; it is tried again", uid)
        return False
    return True
