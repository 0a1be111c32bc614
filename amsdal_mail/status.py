"""Send status: what happened to each recipient, and how SMTP replies map to it.

Everything here is pure data and pure functions shared by every backend.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import NamedTuple

__all__ = [
    "FAILED",
    "INVALID",
    "QUEUED",
    "REJECTED",
    "SENT",
    "STATUSES",
    "UNKNOWN",
    "RecipientStatus",
    "SMTPCode",
    "SMTPReply",
    "SendStatus",
    "recipient_status_from_reply",
]

SENT = "sent"
QUEUED = "queued"
FAILED = "failed"
REJECTED = "rejected"
INVALID = "invalid"
UNKNOWN = "unknown"
#: Every status word a recipient can have.
STATUSES = frozenset({SENT, QUEUED, FAILED, REJECTED, INVALID, UNKNOWN})
_SUCCESS = frozenset({SENT, QUEUED})


class SMTPCode(IntEnum):
    """SMTP reply codes that the library acts on."""

    START_INPUT = 354
    #: The server is closing the connection (RFC 5321 3.8), whatever command it answers.
    SERVICE_UNAVAILABLE = 421
    #: Too many recipients: the rest go in a further transaction.
    INSUFFICIENT_STORAGE = 452
    EXCEEDED_STORAGE = 552


class SMTPReply(NamedTuple):
    """One reply from the server: a three-digit code and its text."""

    code: int
    text: str

    def __str__(self) -> str:
        return f"{self.code} {self.text}".rstrip()

    @property
    def is_positive(self) -> bool:
        """Return True for a 2xx or 3xx reply."""
        return 200 <= self.code < 400


@dataclass(frozen=True, slots=True)
class RecipientStatus:
    """What happened to one recipient of one message.

    ``status`` is one of :data:`STATUSES`. For SMTP, ``code`` and ``response``
    hold the server's reply that decided it, ``command`` the SMTP command that
    reply answered (``MAIL``, ``RCPT`` or ``DATA``; None when no reply decided
    it), and ``message_id`` is always None (SMTP does not return one).
    """

    status: str
    message_id: str | None = None
    code: int | None = None
    response: str | None = None
    command: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(
                f"RecipientStatus.status must be one of {sorted(STATUSES)}, not {self.status!r}"
            )


def recipient_status_from_reply(reply: SMTPReply, command: str = "RCPT") -> RecipientStatus:
    """Map a server reply for one recipient to its status.

    Accepted (2xx/3xx) is ``sent``; refused with a code of 500 or more is
    ``rejected``; any other refusal is ``failed`` (temporary). ``command`` is
    the SMTP command the reply answered.
    """
    if reply.is_positive:
        word = SENT
    elif reply.code >= 500:
        word = REJECTED
    else:
        word = FAILED
    return RecipientStatus(status=word, code=reply.code, response=reply.text, command=command)


@dataclass(slots=True)
class SendStatus:
    """The outcome of sending one message, or the aggregate of a batch.

    ``recipients`` maps each bare address (as written, without display name)
    to its :class:`RecipientStatus`. ``status`` is the set of status words
    present. ``esp_response`` is the server's final reply (for SMTP, the reply
    to the end of DATA, or the refusal that ended the transaction).
    """

    recipients: dict[str, RecipientStatus] = field(default_factory=dict)
    message_id: str | None = None
    esp_response: str | None = None

    @property
    def status(self) -> set[str]:
        """Return the set of status words of all recipients."""
        return {r.status for r in self.recipients.values()}

    @property
    def is_success(self) -> bool:
        """Return True when there is at least one recipient and none failed."""
        return bool(self.recipients) and self.status <= _SUCCESS

    @property
    def has_failures(self) -> bool:
        """Return True when any recipient was not sent or queued."""
        return any(r.status not in _SUCCESS for r in self.recipients.values())

    def get_successful_recipients(self) -> list[str]:
        """Return the addresses whose status is ``sent`` or ``queued``."""
        return [a for a, r in self.recipients.items() if r.status in _SUCCESS]

    def get_failed_recipients(self) -> list[str]:
        """Return the addresses whose status is neither ``sent`` nor ``queued``."""
        return [a for a, r in self.recipients.items() if r.status not in _SUCCESS]

    def __repr__(self) -> str:
        words = ", ".join(repr(w) for w in sorted(self.status))
        return (
            f"SendStatus(status={{{words}}}, recipients={len(self.recipients)}, "
            f"esp_response={self.esp_response!r})"
        )

    @classmethod
    def uniform(
        cls,
        addresses: Iterable[str],
        status: str,
        *,
        code: int | None = None,
        response: str | None = None,
        command: str | None = None,
    ) -> SendStatus:
        """Return a status giving every address the same outcome."""
        rs = RecipientStatus(status=status, code=code, response=response, command=command)
        text = None if code is None else f"{code} {response or ''}".rstrip()
        return cls(recipients=dict.fromkeys(addresses, rs), esp_response=text)

    @classmethod
    def merge(cls, statuses: Iterable[SendStatus]) -> SendStatus:
        """Combine the statuses of a batch into one aggregate.

        An address that appears in several messages keeps its worst outcome,
        so a failure is never hidden behind a later success.
        """
        merged = cls()
        for st in statuses:
            for address, rs in st.recipients.items():
                prev = merged.recipients.get(address)
                if prev is None or (prev.status in _SUCCESS and rs.status not in _SUCCESS):
                    merged.recipients[address] = rs
            if st.esp_response is not None:
                merged.esp_response = st.esp_response
        return merged


def status_from_transaction(
    recipients: Iterable[str],
    *,
    mail_reply: SMTPReply,
    rcpt_replies: Mapping[str, SMTPReply],
    data_reply: SMTPReply | None,
) -> SendStatus:
    """Build a message's status from the replies of one SMTP transaction.

    A refused sender applies to every recipient. Otherwise each recipient
    refused at RCPT keeps that reply, and the DATA reply decides for every
    recipient accepted at RCPT (delivered, or refused with the data).
    ``data_reply`` is None when DATA did not matter (sender refused, or no
    recipient accepted).
    """
    recipients = list(recipients)
    if not mail_reply.is_positive:
        return SendStatus.uniform(
            recipients,
            _refusal_word(mail_reply),
            code=mail_reply.code,
            response=mail_reply.text,
            command="MAIL",
        )
    result = SendStatus()
    for address in recipients:
        reply = rcpt_replies[address]
        if reply.is_positive and data_reply is not None:
            # The RCPT was accepted, but delivery is decided by the DATA reply.
            result.recipients[address] = recipient_status_from_reply(data_reply, "DATA")
        else:
            result.recipients[address] = recipient_status_from_reply(reply)
    last = data_reply if data_reply is not None else list(rcpt_replies.values())[-1]
    result.esp_response = str(last)
    return result


def _refusal_word(reply: SMTPReply) -> str:
    return REJECTED if reply.code >= 500 else FAILED
