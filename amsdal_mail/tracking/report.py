"""Delivery reports as data: RFC 3464 ``multipart/report`` and non-standard bounces.

:func:`parse_report` takes the raw bytes of one received message and returns
one :class:`~amsdal_mail.tracking.DeliveryEvent` per recipient it reports
on. No I/O happens here. The rules:

* a ``multipart/report; report-type=delivery-status`` message (RFC 3464) is
  read field by field: the per-message fields (Original-Envelope-Id,
  Arrival-Date, Reporting-MTA) and one block per recipient (Final-Recipient,
  Original-Recipient, Action, Status, Remote-MTA, Diagnostic-Code,
  Last-Attempt-Date); the Message-ID comes from the returned
  ``message/rfc822`` or ``text/rfc822-headers`` part;
* another message goes to flufl.bounce (the extra ``[tracking]``), which
  recognises the bounce texts of many MTAs; without it, or when it finds
  nothing, there is no event: a message that is no report is not an error;
* a delivery-status part that cannot be read (no Final-Recipient, an unknown
  Action, a recipient that is no address) raises :class:`MalformedReportError`
  rather than guess a recipient.

Hostile input is bounded: more than ``max_size`` bytes raises
:class:`ReportTooLargeError` before parsing; more than :data:`MAX_PARTS` MIME
parts or multiparts nested deeper than :data:`MAX_DEPTH` raise
:class:`MalformedReportError`; at most :data:`MAX_RECIPIENTS` recipient blocks
are read.
"""

from __future__ import annotations

import email
import email.message
import email.policy
import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Final

from .events import BOUNCED, DELAYED, DELIVERED, EXPANDED, RELAYED, DeliveryEvent

__all__ = [
    "MAX_DEPTH",
    "MAX_PARTS",
    "MAX_RECIPIENTS",
    "MAX_SIZE",
    "MalformedReportError",
    "ReportError",
    "ReportTooLargeError",
    "parse_report",
]

#: The largest report read by default (bytes); a bounce returning a big message is cut
#: to its headers by most MTAs, so 10 MiB is generous.
MAX_SIZE: Final = 10 * 1024 * 1024
#: The deepest nesting of multiparts read.
MAX_DEPTH: Final = 8
#: The most MIME parts (of any kind) read.
MAX_PARTS: Final = 200
#: The most recipient blocks read from one delivery-status part.
MAX_RECIPIENTS: Final = 1000

_ACTIONS: Final = {
    "failed": BOUNCED,
    "delayed": DELAYED,
    "delivered": DELIVERED,
    "relayed": RELAYED,
    "expanded": EXPANDED,
}
_STATUS: Final = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_ADDRESS: Final = re.compile(r"[^\s<>()\[\]\\,;:\"]+(?:@[^\s<>()\[\]\\,;:\"@]+)?")
_UTF8_ESCAPE: Final = re.compile(r"\\x\{([0-9A-Fa-f]{1,6})\}")
_POLICY: Final = email.policy.compat32


class ReportError(ValueError):
    """A delivery report that cannot be read safely."""


class ReportTooLargeError(ReportError):
    """A report larger than the size limit; nothing of it was parsed."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"the report is {size} bytes, over the limit of {limit} bytes")
        self.size = size
        self.limit = limit


class MalformedReportError(ReportError):
    """A report whose structure or delivery-status fields cannot be read."""


def parse_report(
    raw: bytes, *, max_size: int = MAX_SIZE, return_path: str | None = None
) -> list[DeliveryEvent]:
    """Return the delivery events the message ``raw`` reports, one per recipient.

    ``return_path`` is the address the report was delivered to (the envelope
    recipient, a VERP address); it is copied into every event. When it is not
    given, the report's ``Delivered-To``, ``X-Original-To`` or ``To`` header
    stands in (only a signed VERP token in it is ever trusted).

    Raises:
        ReportTooLargeError: ``raw`` is longer than ``max_size``.
        MalformedReportError: the MIME structure is beyond the limits, or a
            delivery-status part cannot be read.
    """
    if not isinstance(raw, bytes | bytearray):
        raise TypeError(f"parse_report takes bytes, got {type(raw).__name__}")
    if len(raw) > max_size:
        raise ReportTooLargeError(len(raw), max_size)
    # The parser walks nested multiparts recursively; refuse what would go
    # beyond the limits before it does.
    lower = raw.lower()
    if lower.count(b"boundary=") + lower.count(b"message/rfc822") > MAX_PARTS:
        raise MalformedReportError(f"the report declares more than {MAX_PARTS} nested parts")
    try:
        message = email.message_from_bytes(bytes(raw), policy=_POLICY)
        parts = _check_structure(message)
    except RecursionError as exc:
        raise MalformedReportError("the report's MIME structure is nested too deeply") from exc
    if return_path is None:
        return_path = _delivered_to(message)
    status_parts = [p for p in parts if p.get_content_type() == "message/delivery-status"]
    if message.get_content_type() == "multipart/report" and status_parts:
        return _standard(message, parts, status_parts[0], return_path)
    return _non_standard(message, return_path)


def _check_structure(message: email.message.Message) -> list[email.message.Message]:
    """Return every part, refusing too many or too deeply nested ones."""
    parts: list[email.message.Message] = []
    stack: list[tuple[email.message.Message, int]] = [(message, 0)]
    while stack:
        part, depth = stack.pop()
        parts.append(part)
        if len(parts) > MAX_PARTS:
            raise MalformedReportError(f"the report has more than {MAX_PARTS} MIME parts")
        if depth > MAX_DEPTH:
            raise MalformedReportError(f"the report nests multiparts deeper than {MAX_DEPTH}")
        payload = part.get_payload()
        nests = part.get_content_maintype() == "multipart" or part.get_content_type() in (
            "message/rfc822",
            "message/global",
        )
        if nests and isinstance(payload, list):
            stack.extend(
                (child, depth + 1)
                for child in reversed(payload)
                if isinstance(child, email.message.Message)
            )
    return parts


def _delivered_to(message: email.message.Message) -> str | None:
    for name in ("Delivered-To", "X-Original-To", "To"):
        value = message.get(name)
        if value:
            addresses = email.utils.getaddresses([str(value)])
            if addresses and addresses[0][1]:
                return addresses[0][1]
    return None


def _blocks(part: email.message.Message) -> list[dict[str, str]]:
    """Return the field blocks of a message/delivery-status part, names in lower case."""
    payload = part.get_payload()
    if isinstance(payload, list):
        text = "\n\n".join(
            "\n".join(f"{k}: {v}" for k, v in block.items())
            for block in payload
            if isinstance(block, email.message.Message)
        )
    else:
        data = part.get_payload(decode=True)
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(payload)
    blocks: list[dict[str, str]] = []
    for chunk in re.split(r"\r?\n[ \t]*\r?\n", text.strip()):
        fields: dict[str, str] = {}
        name = None
        for line in chunk.splitlines():
            if line[:1] in (" ", "\t") and name is not None:
                fields[name] += " " + line.strip()
                continue
            key, colon, value = line.partition(":")
            if not colon or not key.strip():
                raise MalformedReportError(f"delivery-status line is not a field: {line[:80]!r}")
            name = key.strip().lower()
            fields.setdefault(name, value.strip())
        if fields:
            blocks.append(fields)
        if len(blocks) > MAX_RECIPIENTS + 1:
            raise MalformedReportError(f"the report names more than {MAX_RECIPIENTS} recipients")
    return blocks


def _typed(value: str | None) -> str | None:
    """Return the value of an RFC 3464 typed field (``rfc822; x@y``) without its type."""
    if not value:
        return None
    kind, semi, rest = value.partition(";")
    return (rest if semi else kind).strip() or None


def _address(value: str | None, field: str) -> str | None:
    if not value:
        return None
    kind, semi, rest = value.partition(";")
    address = (rest if semi else kind).strip().strip("<>").strip()
    if semi and kind.strip().lower() == "utf-8":
        address = _UTF8_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), address)
    if not address or not _ADDRESS.fullmatch(address):
        raise MalformedReportError(f"{field} is not an address: {value[:200]!r}")
    return address


def _date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    # "-0000" (RFC 5322: the zone is unknown) gives a naive value; read it as UTC.
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _message_id(parts: list[email.message.Message]) -> str | None:
    """Return the Message-ID of the returned message (message/rfc822 or its headers)."""
    for part in parts:
        kind = part.get_content_type()
        if kind == "message/rfc822":
            payload = part.get_payload()
            inner = payload[0] if isinstance(payload, list) and payload else None
            if isinstance(inner, email.message.Message) and inner.get("Message-ID"):
                return str(inner["Message-ID"]).strip()
        elif kind == "text/rfc822-headers":
            data = part.get_payload(decode=True)
            if isinstance(data, bytes):
                headers = email.message_from_bytes(data, policy=_POLICY)
                if headers.get("Message-ID"):
                    return str(headers["Message-ID"]).strip()
    return None


def _standard(
    message: email.message.Message,
    parts: list[email.message.Message],
    status_part: email.message.Message,
    return_path: str | None,
) -> list[DeliveryEvent]:
    blocks = _blocks(status_part)
    if len(blocks) < 2:
        raise MalformedReportError("the delivery-status part has no recipient block")
    per_message, recipients = blocks[0], blocks[1:]
    envid = per_message.get("original-envelope-id") or None
    arrival = _date(per_message.get("arrival-date")) or _date(message.get("Date"))
    message_id = _message_id(parts)
    events = []
    for block in recipients:
        action = block.get("action", "").strip().lower()
        if action not in _ACTIONS:
            raise MalformedReportError(
                f"recipient block has Action {block.get('action')!r}; expected one of "
                f"{', '.join(sorted(_ACTIONS))}"
            )
        recipient = _address(block.get("final-recipient"), "Final-Recipient")
        if recipient is None:
            raise MalformedReportError("recipient block has no Final-Recipient")
        status = _STATUS.search(block.get("status", ""))
        events.append(
            DeliveryEvent(
                event=_ACTIONS[action],
                recipient=recipient,
                original_recipient=_address(block.get("original-recipient"), "Original-Recipient"),
                status=status.group(0) if status else None,
                diagnostic=_typed(block.get("diagnostic-code")),
                remote_mta=_typed(block.get("remote-mta")),
                envid=envid,
                message_id=message_id,
                reported_at=_date(block.get("last-attempt-date")) or arrival,
                return_path=return_path,
            )
        )
    return events


def _non_standard(message: email.message.Message, return_path: str | None) -> list[DeliveryEvent]:
    """Return what flufl.bounce recognises in a bounce that is no RFC 3464 report."""
    try:
        from flufl.bounce import all_failures
    except ImportError:
        return []
    try:
        temporary, permanent = all_failures(message)
    except Exception:  # a detector failing on odd input means "no event"
        return []
    when = _date(message.get("Date"))
    events = []
    for words, addresses in ((DELAYED, temporary), (BOUNCED, permanent)):
        for raw in sorted(addresses):
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
            text = text.strip().strip("<>")
            if "@" not in text or not _ADDRESS.fullmatch(text):
                continue
            events.append(
                DeliveryEvent(
                    event=words, recipient=text, reported_at=when, return_path=return_path
                )
            )
    return events
