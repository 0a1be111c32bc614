"""The pure send flow, table-driven: scripted replies in, commands and statuses out.

As h11 tests its state machine, each row drives :func:`send_flow` through the
action-runner core (:class:`~amsdal_mail.smtp.driver.FlowRun`) with a driver
that has no socket: it answers each command from the row's script and logs
what the flow wrote, one entry per write (pipelined commands share an entry),
beside the connects and sleeps. Every reply is mapped to its command and to
its recipient in the expected statuses. These rows include replies a correct
server never sends and timings no real test server produces on demand.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

import pytest

from amsdal_mail import EmailMessage, MailTimeoutError, ProtocolError, ServerDisconnectedError
from amsdal_mail.config import SMTPSettings
from amsdal_mail.smtp.driver import CLOSING, Driver, FlowRun
from amsdal_mail.smtp.flow import Action, Connect, RetryPolicy, Sleep, send_flow
from amsdal_mail.smtp.transaction import Envelope, Step, prepare_envelope
from amsdal_mail.status import SMTPReply

_R = TypeVar("_R")
P = {"pipelining": ""}  # what a pipelining server offers
SENDER = "s@example.com"
DEFAULTS = {
    "MAIL": "250 2.1.0 Ok",
    "RCPT": "250 2.1.5 Ok",
    "DATA": "354 Go ahead",
    ".": "250 Queued",
}
DEFAULTS["RSET"] = "250 2.0.0 Ok"


class ScriptedDriver(Driver[str]):
    """A driver without I/O: replies come from ``script``, writes go to ``log``.

    ``script`` maps a command (``MAIL``, ``RCPT <addr>``, ``DATA``, ``.`` for
    the end of the data, ``RSET``) to the replies it gets, one per use; after
    those, the default reply. ``"drop"`` hangs up instead of replying,
    ``"timeout"`` stays silent until the timeout.
    """

    def __init__(
        self, features: Mapping[str, str], script: Mapping[str, list[str]], pooled: bool
    ) -> None:
        super().__init__(SMTPSettings(host="mx.test", port=25))
        self.script = {key: list(replies) for key, replies in script.items()}
        self.log: list[str] = []
        self.connected("pooled", dict(features))
        if not pooled:
            self.link = None
        self.used = pooled  # a pooled connection has served before
        self.awaiting: list[str] = []  # commands written and not yet answered
        self.in_data = False

    def _abort(self, link: str) -> None:
        self.awaiting, self.in_data = [], False

    def run(self, flow: Generator[Action, object, _R]) -> _R:
        run = FlowRun(self, flow)
        while run.action is not None:
            try:
                value = getattr(self, run.io)(run.action)
            except OSError as exc:
                run.fail(exc)
            else:
                run.resume(value)
        return run.result

    def do_sleep(self, action: Sleep) -> None:
        self.log.append(f"sleep {action.seconds:g}")

    def do_connect(self, action: Connect) -> None:
        self.log.append("connect")
        self.connected("new", dict(self.features))

    def do_exchange(self, action: Step) -> list[SMTPReply]:
        if action.payload:
            self._write(b"".join(action.payload))
        replies: list[SMTPReply] = []
        while len(replies) < action.replies and not (replies and replies[-1].code == CLOSING):
            replies.append(self._answer(self.awaiting.pop(0)))
        return replies

    def _write(self, data: bytes) -> None:
        if self.in_data:
            self.in_data = False
            self.awaiting.append(".")
            self.log.append("<empty data>" if data == b".\r\n" else "<data>")
            return
        commands = [_command(line) for line in data.decode().split("\r\n") if line]
        self.awaiting += [c.split(" ", 1)[0] if c.startswith("MAIL") else c for c in commands]
        self.log.append(" | ".join(commands))

    def _answer(self, command: str) -> SMTPReply:
        queue = self.script.get(command) or self.script.get(command.split(" ", 1)[0])
        text = queue.pop(0) if queue else DEFAULTS[command.split(" ", 1)[0]]
        if text == "drop":
            raise ServerDisconnectedError("scripted hang-up")
        if text == "timeout":
            raise MailTimeoutError("scripted silence")
        reply = SMTPReply(int(text[:3]), text[4:])
        self.in_data = command == "DATA" and reply.code == 354
        return reply


def _command(line: str) -> str:
    """Return the log form of a command line: ``RCPT <addr>``, ``MAIL`` with its options."""
    if line.startswith("RCPT TO:<"):
        return "RCPT " + line[9:].split(">", 1)[0]
    if line.startswith("MAIL FROM:<"):
        options = line.split(">", 1)[1].split()
        return " ".join(["MAIL", *("SIZE" if o.startswith("SIZE=") else o for o in options)])
    return line


def envelope(to: list[str], body: str = "Hello\n") -> Envelope:
    """Return the envelope of a small message from SENDER to ``to``."""
    return prepare_envelope(EmailMessage("S", body, SENDER, to).validate())


def eight_bit_envelope() -> Envelope:
    """Return an envelope whose data is 8-bit (a text part sent as 8bit, not QP)."""
    return Envelope(
        sender=SENDER,
        recipients=(("a@example.com", "a@example.com"),),
        chunks=[b"Subject: S\r\n", b"\r\n", "Chère maman\r\n".encode()],
        eight_bit=True,
    )


@dataclass
class Row:
    """One scripted exchange and everything it must produce."""

    id: str
    features: Mapping[str, str]
    script: dict[str, list[str]]
    written: list[str]
    #: recipient -> (status, code, command)
    statuses: dict[str, tuple[str, int | None, str | None]]
    to: list[str] = field(default_factory=lambda: ["a@example.com", "b@example.com"])
    retries: int = 0
    pooled: bool = False
    envelope: Envelope | None = None
    #: The connection is still open at the end.
    open_after: bool = True


A, B = "a@example.com", "b@example.com"
PIPELINED_AB = "MAIL | RCPT a@example.com | RCPT b@example.com | DATA"
UNKNOWN_USERS = [f"u{n}@example.com" for n in range(1, 21)]
POSTFIX_550 = {
    f"RCPT {u}": [f"550 5.1.1 <{u}>: Recipient address rejected: User unknown"]
    for u in UNKNOWN_USERS
}

ROWS = [
    Row(
        "pipelined: every recipient accepted",
        P,
        {},
        ["connect", PIPELINED_AB, "<data>"],
        {A: ("sent", 250, "DATA"), B: ("sent", 250, "DATA")},
    ),
    Row(
        "lock-step: every recipient accepted",
        {},
        {},
        ["connect", "MAIL", "RCPT a@example.com", "RCPT b@example.com", "DATA", "<data>"],
        {A: ("sent", 250, "DATA"), B: ("sent", 250, "DATA")},
    ),
    Row(
        "pipelined: one recipient refused for good",
        P,
        {f"RCPT {B}": ["550 5.1.1 No such user"]},
        ["connect", PIPELINED_AB, "<data>"],
        {A: ("sent", 250, "DATA"), B: ("rejected", 550, "RCPT")},
    ),
    Row(
        "lock-step: refused MAIL ends the transaction, RSET follows",
        {},
        {"MAIL": ["553 5.7.1 Sender not allowed"]},
        ["connect", "MAIL", "RSET"],
        {A: ("rejected", 553, "MAIL"), B: ("rejected", 553, "MAIL")},
    ),
    Row(
        "pipelined: temporarily refused MAIL, no retries left",
        P,
        {"MAIL": ["451 4.3.0 Try later"], "RCPT": ["503 5.5.1 No MAIL"] * 2, "DATA": ["503 No"]},
        ["connect", PIPELINED_AB, "RSET"],
        {A: ("failed", 451, "MAIL"), B: ("failed", 451, "MAIL")},
    ),
    Row(
        "lock-step: every recipient refused: no DATA",
        {},
        {"RCPT": ["550 5.1.1 No", "550 5.1.1 No"]},
        ["connect", "MAIL", "RCPT a@example.com", "RCPT b@example.com", "RSET"],
        {A: ("rejected", 550, "RCPT"), B: ("rejected", 550, "RCPT")},
    ),
    Row(
        "lock-step: refused DATA decides for the accepted recipients",
        {},
        {f"RCPT {B}": ["550 5.1.1 No"], "DATA": ["554 5.3.0 No data today"]},
        ["connect", "MAIL", "RCPT a@example.com", "RCPT b@example.com", "DATA", "RSET"],
        {A: ("rejected", 554, "DATA"), B: ("rejected", 550, "RCPT")},
    ),
    Row(
        "pipelined: data refused at its end",
        P,
        {".": ["552 5.3.4 Too big"]},
        ["connect", PIPELINED_AB, "<data>", "RSET"],
        {A: ("rejected", 552, "DATA"), B: ("rejected", 552, "DATA")},
    ),
    Row(
        "pipelined: 354 without an accepted recipient gets empty data",
        P,
        {"RCPT": ["550 5.1.1 No", "550 5.1.1 No"]},
        ["connect", PIPELINED_AB, "<empty data>", "RSET"],
        {A: ("rejected", 550, "RCPT"), B: ("rejected", 550, "RCPT")},
    ),
    Row(
        "SIZE: a message over the limit is not sent",
        {**P, "size": "10"},
        {},
        ["connect"],
        {A: ("rejected", 552, None), B: ("rejected", 552, None)},
    ),
    Row(
        "SMTPUTF8 missing: a non-ASCII local part is invalid, not sent",
        P,
        {},
        ["connect"],
        {"josé@example.com": ("invalid", None, None)},
        to=["josé@example.com"],
    ),
    Row(
        "SMTPUTF8 offered: MAIL declares it and BODY=8BITMIME",
        {**P, "smtputf8": "", "8bitmime": ""},
        {},
        ["connect", "MAIL SMTPUTF8 BODY=8BITMIME | RCPT josé@example.com | DATA", "<data>"],
        {"josé@example.com": ("sent", 250, "DATA")},
        to=["josé@example.com"],
    ),
    Row(
        "8-bit data: BODY=8BITMIME when the server offers 8BITMIME",
        {**P, "8bitmime": "", "size": "1000"},
        {},
        ["connect", "MAIL SIZE BODY=8BITMIME | RCPT a@example.com | DATA", "<data>"],
        {A: ("sent", 250, "DATA")},
        envelope=eight_bit_envelope(),
    ),
    Row(
        "8-bit data without 8BITMIME on offer: sent as it is",
        P,
        {},
        ["connect", "MAIL | RCPT a@example.com | DATA", "<data>"],
        {A: ("sent", 250, "DATA")},
        envelope=eight_bit_envelope(),
    ),
    Row(
        "452: the refused recipients go in a further transaction",
        P,
        {f"RCPT {B}": ["452 4.5.3 Too many recipients"]},
        ["connect", PIPELINED_AB, "<data>", "MAIL | RCPT b@example.com | DATA", "<data>"],
        {A: ("sent", 250, "DATA"), B: ("sent", 250, "DATA")},
    ),
    Row(
        "4xx: only the refused recipient is retried, after the backoff",
        P,
        {
            f"RCPT {B}": ["450 4.2.1 Busy", "450 4.2.1 Busy"],
            "DATA": ["354 Go ahead", "554 5.5.1 No valid recipients"],
        },
        [
            "connect",
            PIPELINED_AB,
            "<data>",
            "sleep 1",
            "MAIL | RCPT b@example.com | DATA",
            "RSET",
            "sleep 2",
            "MAIL | RCPT b@example.com | DATA",
            "<data>",
        ],
        {A: ("sent", 250, "DATA"), B: ("sent", 250, "DATA")},
        retries=2,
    ),
    Row(
        "4xx beyond max_retries stays failed",
        P,
        {f"RCPT {B}": ["450 4.2.1 Busy"] * 2, "DATA": ["354 Go", "554 5.5.1 No valid recipients"]},
        ["connect", PIPELINED_AB, "<data>", "sleep 1", "MAIL | RCPT b@example.com | DATA", "RSET"],
        {A: ("sent", 250, "DATA"), B: ("failed", 450, "RCPT")},
        retries=1,
    ),
    Row(
        "421 on a reused connection: closed while idle, replaced at once",
        P,
        {"MAIL": ["421 4.4.2 Idle for too long"]},
        [PIPELINED_AB, "connect", PIPELINED_AB, "<data>"],
        {A: ("sent", 250, "DATA"), B: ("sent", 250, "DATA")},
        pooled=True,
    ),
    Row(
        "Postfix hard error limit: twenty 550s, then 421 to DATA",
        P,
        {**POSTFIX_550, "DATA": ["421 4.7.0 mail.example.com Error: too many errors"]},
        ["connect", " | ".join(["MAIL", *(f"RCPT {u}" for u in UNKNOWN_USERS), "DATA"])],
        {u: ("rejected", 550, "RCPT") for u in UNKNOWN_USERS},
        to=UNKNOWN_USERS,
        retries=3,
        open_after=False,
    ),
    Row(
        "lock-step Postfix: the RSET after the refusals gets 421",
        {},
        {"RCPT": ["550 5.1.1 No", "550 5.1.1 No"], "RSET": ["421 4.7.0 Error: too many errors"]},
        ["connect", "MAIL", "RCPT a@example.com", "RCPT b@example.com", "RSET"],
        {A: ("rejected", 550, "RCPT"), B: ("rejected", 550, "RCPT")},
        open_after=False,
    ),
    Row(
        "421 to DATA after an accepted recipient: it is retried on a new connection",
        P,
        {f"RCPT {B}": ["550 5.1.1 No"], "DATA": ["421 4.7.0 Error: too many errors"]},
        [
            "connect",
            PIPELINED_AB,
            "sleep 1",
            "connect",
            "MAIL | RCPT a@example.com | DATA",
            "<data>",
        ],
        {A: ("sent", 250, "DATA"), B: ("rejected", 550, "RCPT")},
        retries=1,
    ),
    Row(
        "421 to DATA after an accepted recipient, no retries: failed 421",
        P,
        {f"RCPT {B}": ["550 5.1.1 No"], "DATA": ["421 4.7.0 Error: too many errors"]},
        ["connect", PIPELINED_AB],
        {A: ("failed", 421, "DATA"), B: ("rejected", 550, "RCPT")},
        open_after=False,
    ),
    Row(
        "lock-step: 421 to a RCPT ends the exchange, no RSET, nothing more asked",
        {},
        {f"RCPT {A}": ["421 4.7.0 Closing"]},
        ["connect", "MAIL", "RCPT a@example.com"],
        {A: ("failed", 421, "RCPT"), B: ("failed", 421, "RCPT")},
        open_after=False,
    ),
    Row(
        "lock-step: 421 to the second RCPT: the accepted one is not delivered",
        {},
        {f"RCPT {B}": ["421 4.7.0 Closing"]},
        ["connect", "MAIL", "RCPT a@example.com", "RCPT b@example.com"],
        {A: ("failed", 421, "DATA"), B: ("failed", 421, "RCPT")},
        open_after=False,
    ),
    Row(
        "421 to the end of the data: retried on a new connection",
        P,
        {".": ["421 4.3.0 Shutting down"]},
        ["connect", PIPELINED_AB, "<data>", "sleep 1", "connect", PIPELINED_AB, "<data>"],
        {A: ("sent", 250, "DATA"), B: ("sent", 250, "DATA")},
        retries=1,
    ),
    Row(
        "hang-up before the data: resent on a new connection",
        P,
        {"MAIL": ["drop"]},
        ["connect", PIPELINED_AB, "sleep 1", "connect", PIPELINED_AB, "<data>"],
        {A: ("sent", 250, "DATA"), B: ("sent", 250, "DATA")},
        retries=1,
    ),
    Row(
        "data sent, then a hang-up: unknown, never resent",
        P,
        {".": ["drop"]},
        ["connect", PIPELINED_AB, "<data>"],
        {A: ("unknown", None, None), B: ("unknown", None, None)},
        retries=3,
        open_after=False,
    ),
    Row(
        "data sent, then a hang-up: a recipient refused at RCPT keeps its refusal",
        P,
        {f"RCPT {B}": ["550 5.1.1 No such user"], ".": ["drop"]},
        ["connect", PIPELINED_AB, "<data>"],
        {A: ("unknown", None, None), B: ("rejected", 550, "RCPT")},
        retries=3,
        open_after=False,
    ),
    Row(
        "lock step, data sent, then a hang-up: a 4xx at RCPT stays a failure, not unknown",
        {},
        {f"RCPT {A}": ["450 4.2.2 Mailbox full"], ".": ["drop"]},
        ["connect", "MAIL", "RCPT a@example.com", "RCPT b@example.com", "DATA", "<data>"],
        {A: ("failed", 450, "RCPT"), B: ("unknown", None, None)},
        retries=3,
        open_after=False,
    ),
    Row(
        "452 split, the second data lost: the first transaction's recipient stays sent",
        P,
        {f"RCPT {B}": ["452 4.5.3 Too many recipients"], ".": ["250 Queued", "drop"]},
        ["connect", PIPELINED_AB, "<data>", "MAIL | RCPT b@example.com | DATA", "<data>"],
        {A: ("sent", 250, "DATA"), B: ("unknown", None, None)},
        retries=3,
        open_after=False,
    ),
    Row(
        "452 split, a hang-up before the second data: sent stays sent, the rest failed",
        P,
        {f"RCPT {B}": ["452 4.5.3 Too many recipients"], "MAIL": ["250 2.1.0 Ok", "drop"]},
        ["connect", PIPELINED_AB, "<data>", "MAIL | RCPT b@example.com | DATA"],
        {A: ("sent", 250, "DATA"), B: ("failed", None, None)},
        retries=3,
        open_after=False,
    ),
    Row(
        "the data refused, then a hang-up on the RSET: the refusal stands, nothing resent",
        P,
        {".": ["554 5.6.0 Message refused"], "RSET": ["drop"]},
        ["connect", PIPELINED_AB, "<data>", "RSET"],
        {A: ("rejected", 554, "DATA"), B: ("rejected", 554, "DATA")},
        retries=3,
        open_after=False,
    ),
    Row(
        "data sent, then silence: unknown, never resent",
        {},
        {".": ["timeout"]},
        ["connect", "MAIL", "RCPT a@example.com", "RCPT b@example.com", "DATA", "<data>"],
        {A: ("unknown", None, None), B: ("unknown", None, None)},
        retries=3,
        open_after=False,
    ),
]


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_flow_row(row: Row) -> None:
    """The flow writes exactly the row's commands and reports exactly its statuses."""
    driver = ScriptedDriver(row.features, row.script, row.pooled)
    policy = RetryPolicy(max_retries=row.retries, backoff=1.0)

    status = driver.run(send_flow(row.envelope or envelope(row.to), policy))

    assert driver.log == row.written
    got = {k: (r.status, r.code, r.command) for k, r in status.recipients.items()}
    assert got == row.statuses
    assert list(status.recipients) == list(row.statuses)  # in the message's order
    assert driver.is_connected() is row.open_after


def test_every_reply_is_reported_with_its_own_text() -> None:
    """Each recipient carries the text of the very reply that decided it."""
    script = {f"RCPT {A}": ["250 2.1.5 a ok"], f"RCPT {B}": ["550 5.1.1 b unknown"]}
    driver = ScriptedDriver(P, script, pooled=False)

    status = driver.run(send_flow(envelope([A, B]), RetryPolicy()))

    assert status.recipients[A].response == "Queued"
    assert status.recipients[B].response == "5.1.1 b unknown"
    assert status.esp_response == "250 Queued"


def test_after_a_421_the_next_message_gets_a_new_connection() -> None:
    """The Postfix case in a batch: the message after the 421 is sent on a new connection."""
    script = {**POSTFIX_550, "DATA": ["421 4.7.0 Error: too many errors"]}
    driver = ScriptedDriver(P, script, pooled=False)

    bad = driver.run(send_flow(envelope(UNKNOWN_USERS), RetryPolicy()))
    good = driver.run(send_flow(envelope([A]), RetryPolicy()))

    assert bad.status == {"rejected"}
    assert good.status == {"sent"}
    assert driver.log[2:] == ["connect", "MAIL | RCPT a@example.com | DATA", "<data>"]


@pytest.mark.parametrize("features", [P, {}], ids=["pipelined", "lock-step"])
def test_positive_data_reply_other_than_354_is_an_error(features: dict[str, str]) -> None:
    """A 250 answer to DATA raises ProtocolError; the body is never sent nor reported sent."""
    driver = ScriptedDriver(features, {"DATA": ["250 OK"]}, pooled=False)

    with pytest.raises(ProtocolError) as info:
        driver.run(send_flow(envelope([A]), RetryPolicy(max_retries=2)))

    assert info.value.smtp_code == 250
    assert "expected 354" in str(info.value)
    assert "<data>" not in driver.log
    assert not driver.is_connected()  # out of step: the connection is dropped


def test_a_hang_up_before_the_data_without_retries_is_raised() -> None:
    """With no retries left a lost connection is raised, and dropped."""
    driver = ScriptedDriver(P, {"MAIL": ["drop"]}, pooled=False)

    with pytest.raises(ServerDisconnectedError):
        driver.run(send_flow(envelope([A]), RetryPolicy()))

    assert driver.log == ["connect", "MAIL | RCPT a@example.com | DATA"]
    assert not driver.is_connected()


def test_a_pooled_connection_is_replaced_for_free_only_once() -> None:
    """A second idle-close in the same send is an ordinary failure (no endless reconnects)."""
    script = {"MAIL": ["421 4.4.2 Idle", "drop"]}
    driver = ScriptedDriver(P, script, pooled=True)

    with pytest.raises(ServerDisconnectedError):
        driver.run(send_flow(envelope([A]), RetryPolicy()))

    assert driver.log.count("connect") == 1
