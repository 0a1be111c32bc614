"""The value a delivery report turns into: :class:`DeliveryEvent`, and its event words."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Final

__all__ = [
    "BOUNCED",
    "DELAYED",
    "DELIVERED",
    "EVENTS",
    "EXPANDED",
    "RELAYED",
    "DeliveryEvent",
]

DELIVERED: Final = "delivered"
BOUNCED: Final = "bounced"
DELAYED: Final = "delayed"
RELAYED: Final = "relayed"
EXPANDED: Final = "expanded"
#: Every event word.
EVENTS: Final = frozenset({DELIVERED, BOUNCED, DELAYED, RELAYED, EXPANDED})


@dataclass(frozen=True, slots=True)
class DeliveryEvent:
    """What a delivery report says about one recipient of one message.

    ``event`` is one of :data:`EVENTS` (RFC 3464's ``failed`` is ``bounced``);
    ``recipient`` the Final-Recipient address, ``original_recipient`` the
    Original-Recipient (the address as the message was sent to it, when the
    report says); ``status`` the RFC 3463 code (``5.1.1``); ``diagnostic`` the
    remote server's reply; ``remote_mta`` the server that gave it; ``envid``
    the Original-Envelope-Id (amsdal_mail sends the Message-ID there);
    ``message_id`` the Message-ID of the original message, from the part of it
    the report returned; ``reported_at`` the Last-Attempt-Date, else the
    Arrival-Date, else the report's Date. ``return_path`` is the address the
    report was sent to (a VERP address carries the message and the recipient,
    see :func:`amsdal_mail.tracking.decode_verp`), when known.
    """

    event: str
    recipient: str
    original_recipient: str | None = None
    status: str | None = None
    diagnostic: str | None = None
    remote_mta: str | None = None
    envid: str | None = None
    message_id: str | None = None
    reported_at: datetime | None = None
    return_path: str | None = None

    def __post_init__(self) -> None:
        if self.event not in EVENTS:
            raise ValueError(
                f"DeliveryEvent.event must be one of {', '.join(sorted(EVENTS))}, "
                f"got {self.event!r}"
            )
        if not self.recipient or any(c in self.recipient for c in "\r\n\0"):
            raise ValueError(f"DeliveryEvent.recipient is not an address: {self.recipient!r}")

    def as_dict(self) -> dict[str, Any]:
        """Return the fields as JSON-ready values (``reported_at`` in ISO 8601)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.isoformat() if isinstance(value, datetime) else value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DeliveryEvent:
        """Return the event :meth:`as_dict` gave ``data`` for."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        when = values.get("reported_at")
        if isinstance(when, str):
            values["reported_at"] = datetime.fromisoformat(when)
        return cls(**values)
