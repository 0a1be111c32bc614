"""A :class:`~tests.smtpd.RecordingServer` that offers DSN (RFC 3461) and records its parameters.

aiosmtpd knows no DSN: it refuses RET, ENVID, NOTIFY and ORCPT with 555 and
upper-cases every parameter it keeps. This server advertises ``DSN`` in its
EHLO reply, takes those four parameters off MAIL FROM and RCPT TO before
aiosmtpd sees them, and records them exactly as sent (case and xtext kept)
with each accepted message, in :attr:`DSNRecordingServer.dsn`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.smtp import Envelope, Session

from tests.smtpd import RecordingServer, _Controller, _Handler, _RecordingSMTP

__all__ = ["DSNRecord", "DSNRecordingServer"]

_MAIL_PARAMS = ("RET=", "ENVID=")
_RCPT_PARAMS = ("NOTIFY=", "ORCPT=")


@dataclass
class DSNRecord:
    """The DSN parameters of one accepted message, as they came over the wire."""

    mail_from: str
    #: MAIL FROM's RET and ENVID, by upper-case keyword (``{"RET": "HDRS"}``).
    mail: dict[str, str] = field(default_factory=dict)
    #: Each accepted recipient's NOTIFY and ORCPT, in RCPT order.
    rcpt: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def for_recipient(self, address: str) -> dict[str, str]:
        """Return the DSN parameters RCPT TO gave ``address`` (compared case-insensitively)."""
        for rcpt, params in self.rcpt:
            if rcpt.lower() == address.lower():
                return params
        raise KeyError(f"{address!r} is not among the recipients {[r for r, _ in self.rcpt]}")


def _split(arg: str | None, keywords: tuple[str, ...]) -> tuple[str | None, dict[str, str]]:
    """Return ``arg`` without the DSN parameters, and those parameters by keyword."""
    if arg is None:
        return None, {}
    kept: list[str] = []
    found: dict[str, str] = {}
    for token in arg.split(" "):
        upper = token.upper()
        keyword = next((k for k in keywords if upper.startswith(k)), None)
        if keyword is None:
            kept.append(token)
        else:
            found[keyword[:-1]] = token[len(keyword) :]
    return " ".join(kept), found


class _DSNSMTP(_RecordingSMTP):
    """aiosmtpd's protocol with DSN: advertised, its parameters set aside per message."""

    async def smtp_MAIL(self, arg: str | None) -> None:
        rest, params = _split(arg, _MAIL_PARAMS)
        await super().smtp_MAIL(rest)
        envelope = self.envelope
        if envelope is not None and envelope.mail_from and not hasattr(envelope, "dsn"):
            envelope.dsn = DSNRecord(envelope.mail_from, params)  # type: ignore[attr-defined]

    async def smtp_RCPT(self, arg: str | None) -> None:
        rest, params = _split(arg, _RCPT_PARAMS)
        envelope = self.envelope
        before = len(envelope.rcpt_tos) if envelope is not None else 0
        await super().smtp_RCPT(rest)
        if envelope is not None and len(envelope.rcpt_tos) > before:
            envelope.dsn.rcpt.append((envelope.rcpt_tos[-1], params))  # type: ignore[attr-defined]


class _DSNHandler(_Handler):
    async def handle_EHLO(
        self,
        server: Any,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        responses = await super().handle_EHLO(server, session, envelope, hostname, responses)
        return [*responses[:-1], "250-DSN", responses[-1]]

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        recorder = self.recorder
        assert isinstance(recorder, DSNRecordingServer)
        record = getattr(envelope, "dsn", None)
        if record is not None:
            with recorder._dsn_lock:
                recorder.dsn.append(record)
        return await super().handle_DATA(server, session, envelope)


class _DSNController(_Controller):
    def factory(self) -> _DSNSMTP:
        return _DSNSMTP(self.handler, loop=self.loop, **self.SMTP_kwargs)


class DSNRecordingServer(RecordingServer):
    """A recording SMTP server on 127.0.0.1 that offers DSN; see :mod:`tests.dsn_smtpd`.

    ``dsn[i]`` holds the DSN parameters of the i-th message that reached DATA
    (recorded before the reply to the end of DATA, as the messages are).
    """

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.dsn: list[DSNRecord] = []
        self._dsn_lock = threading.Lock()

    def _make_controller(self, port: int) -> _Controller:
        controller = super()._make_controller(port)
        # The same controller, building the DSN protocol with the DSN handler.
        controller.__class__ = _DSNController
        controller.handler = _DSNHandler(self)
        return controller
