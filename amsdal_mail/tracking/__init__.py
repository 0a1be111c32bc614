"""Delivery tracking for plain SMTP: reports and bounces back onto each recipient.

* :func:`parse_report` reads an RFC 3464 delivery status notification (and,
  with the extra ``[tracking]``, the non-standard bounces flufl.bounce knows)
  into :class:`DeliveryEvent` values;
* :func:`message_key`, :func:`encode_verp` and :func:`decode_verp` make and
  check the signed VERP return paths the SMTP backend sends with
  ``return_path=...`` and ``verp=True``;
* :mod:`amsdal_mail.tracking.receiver` is an SMTP server that takes reports
  for its return path and prints each event as a JSON line
  (``amsdal-mail bounces serve --listen HOST:PORT``);
* :mod:`amsdal_mail.tracking.imap` reads the reports delivered to a mailbox
  over IMAP, each message once (``poll_imap``).
"""

from .events import BOUNCED, DELAYED, DELIVERED, EVENTS, EXPANDED, RELAYED, DeliveryEvent
from .report import (
    MAX_DEPTH,
    MAX_PARTS,
    MAX_RECIPIENTS,
    MAX_SIZE,
    MalformedReportError,
    ReportError,
    ReportTooLargeError,
    parse_report,
)
from .verp import (
    VERP_SECRET_ENV,
    VerpToken,
    decode_verp,
    encode_verp,
    is_verp,
    message_key,
    verp_secret,
)

__all__ = [
    "BOUNCED",
    "DELAYED",
    "DELIVERED",
    "EVENTS",
    "EXPANDED",
    "MAX_DEPTH",
    "MAX_PARTS",
    "MAX_RECIPIENTS",
    "MAX_SIZE",
    "RELAYED",
    "VERP_SECRET_ENV",
    "DeliveryEvent",
    "MalformedReportError",
    "ReportError",
    "ReportTooLargeError",
    "VerpToken",
    "decode_verp",
    "encode_verp",
    "is_verp",
    "message_key",
    "parse_report",
    "verp_secret",
]
