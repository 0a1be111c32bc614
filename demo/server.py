"""The embedded SMTP server: the same recording aiosmtpd server the tests use.

:class:`GreylistingServer` adds what the outbox part of the demo needs: some
recipients are refused with a temporary (4xx) reply the first time they are
given, and accepted afterwards, as a greylisting mail server does.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.smtpd import ReceivedMessage, RecordingServer, _Controller, _Handler

__all__ = ["GreylistingServer", "ReceivedMessage", "RecordingServer"]


class GreylistingServer(RecordingServer):
    """A :class:`RecordingServer` that refuses some recipients once, then accepts them.

    ``first_replies`` maps an address to the reply its first ``RCPT TO`` gets
    (a ``4xx`` line such as ``"451 4.7.1 Greylisted, try again later"``); every
    later ``RCPT TO`` for it is answered as ``rcpt_replies`` says (``250`` when
    not listed there). :meth:`rcpt_count` tells how many times an address was given.
    """

    def __init__(self, *, first_replies: dict[str, str], **options: Any) -> None:
        super().__init__(**options)
        for address, reply in first_replies.items():
            if not (len(reply) >= 3 and reply[:3].isdigit() and reply[0] == "4"):
                raise ValueError(f"first_replies[{address!r}]: {reply!r} is not a 4xx reply")
        self.first_replies = {a.lower(): r for a, r in first_replies.items()}
        self._rcpt_counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def rcpt_count(self, address: str) -> int:
        """Return how many times ``RCPT TO:<address>`` was received."""
        with self._lock:
            return self._rcpt_counts[address.lower()]

    def _first_reply(self, address: str) -> str | None:
        """Count one ``RCPT TO`` for ``address``; return its first-time reply, if due."""
        bare = address.strip().strip("<>").strip().lower()
        with self._lock:
            self._rcpt_counts[bare] += 1
            first = self._rcpt_counts[bare] == 1
        return self.first_replies.get(bare) if first else None

    def _make_controller(self, port: int) -> _Controller:
        controller = super()._make_controller(port)
        controller.handler = _GreylistingHandler(self)
        return controller


class _GreylistingHandler(_Handler):
    """The recording handler, with the first-time refusals of a :class:`GreylistingServer`."""

    def __init__(self, recorder: GreylistingServer) -> None:
        super().__init__(recorder)
        self.greylist = recorder

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        reply = self.greylist._first_reply(address)
        if reply is not None:
            return reply
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)
