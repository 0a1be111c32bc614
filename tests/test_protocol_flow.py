"""The pure send flow, driven with scripted server replies (no network needed).

The flow is pure logic: these cases feed it replies that a correct server
never sends, which no real test server can be made to produce on demand.
"""

from __future__ import annotations

import pytest

from amsdal_mail import EmailMessage, ProtocolError
from amsdal_mail.protocol import (
    Connect,
    Connection,
    RetryPolicy,
    Sleep,
    Step,
    advance,
    prepare_envelope,
    send_flow,
)
from amsdal_mail.status import SendStatus, SMTPReply

FEATURES = {"pipelining": ""}


def _drive(pipelining: bool, data_reply: SMTPReply) -> list[Step]:
    message = EmailMessage("S", "secret body", "a@example.com", ["b@example.com"])
    flow = send_flow(prepare_envelope(message), RetryPolicy(), pipelining=pipelining)
    steps: list[Step] = []
    outcome = advance(flow)
    while not isinstance(outcome, SendStatus):
        if isinstance(outcome, Connect):
            outcome = advance(flow, Connection(FEATURES if pipelining else {}, reused=False))
        elif isinstance(outcome, Sleep):
            outcome = advance(flow, None)
        else:
            steps.append(outcome)
            replies = []
            for line in outcome.payload:
                if line.startswith(b"DATA"):
                    replies.append(data_reply)
                elif line.startswith((b"MAIL", b"RCPT", b"RSET")):
                    replies.append(SMTPReply(250, "OK"))
            outcome = advance(flow, replies[: outcome.replies])
    raise AssertionError(f"the flow finished with {outcome!r}")


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "one-by-one"])
def test_positive_data_reply_other_than_354_is_an_error(pipelining: bool) -> None:
    """A 250 answer to DATA raises ProtocolError; the body is never sent nor reported sent."""
    with pytest.raises(ProtocolError) as info:
        _drive(pipelining, SMTPReply(250, "OK"))
    assert info.value.smtp_code == 250
    assert "expected 354" in str(info.value)
