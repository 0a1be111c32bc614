"""The batch scheduler alone: what it asks a driver to write and read, in order.

:func:`amsdal_mail.smtp.batch.schedule` is pure: here it is driven with no
socket. A small model of a server turns what is written into the replies it
would give (MAIL, RCPT: 250; DATA: 354, then the data until its final dot:
250), and the test records each request. Both drivers carry out exactly
these requests, so this is the plan of the sync and the async path alike.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from amsdal_mail import EmailMessage, TransportError
from amsdal_mail.config import SMTPSettings
from amsdal_mail.smtp.batch import Batch, Carry, Read, Request, Write, schedule
from amsdal_mail.smtp.driver import Driver
from amsdal_mail.smtp.flow import Connect, RetryPolicy, Sleep, send_flow
from amsdal_mail.smtp.transaction import Step, prepare_envelope
from amsdal_mail.status import SENT, SMTPReply


class _Server:
    """Replies as a pipelining server would give them, made as the bytes arrive."""

    def __init__(self, refuse: frozenset[int] = frozenset()) -> None:
        #: The messages (by number, from 0) whose data is refused: 554 after the dot.
        self.refuse = refuse
        self.replies: deque[SMTPReply] = deque()
        self.in_data = False
        self.pending = b""
        self.messages = 0
        self.data_seen = 0

    def receive(self, data: bytes) -> None:
        self.pending += data
        while b"\r\n" in self.pending:
            line, self.pending = self.pending.split(b"\r\n", 1)
            if self.in_data:
                if line == b".":
                    self.in_data = False
                    if self.data_seen in self.refuse:
                        self.replies.append(SMTPReply(554, "refused"))
                    else:
                        self.messages += 1
                        self.replies.append(SMTPReply(250, "queued"))
                    self.data_seen += 1
                continue
            verb = line.split(b" ", 1)[0].split(b":", 1)[0]
            if verb == b"BDAT":  # BDAT <size> LAST: the data follows
                size = int(line.split()[1])
                self.pending = self.pending[size:]
                self.messages += 1
                self.replies.append(SMTPReply(250, "queued"))
            elif verb == b"DATA":
                self.in_data = True
                self.replies.append(SMTPReply(354, "go ahead"))
            else:
                self.replies.append(SMTPReply(250, "ok"))

    def answer(self, count: int) -> list[SMTPReply]:
        return [self.replies.popleft() for _ in range(count)]


class _Driver(Driver[str]):
    def __init__(self, features: dict[str, str]) -> None:
        super().__init__(SMTPSettings(host="mx.test", port=25))
        self.connected("conn", features)

    def _abort(self, link: str) -> None:
        pass


def _what(data: bytes) -> str:
    """A write, in short: its commands, with <data> for a message's content."""
    out, rest = [], data
    while rest:
        if rest.startswith(b"BDAT"):
            line, rest = rest.split(b"\r\n", 1)
            rest = rest[int(line.split()[1]) :]
            out.append("BDAT")
        elif rest.startswith((b"MAIL", b"RCPT", b"DATA", b"RSET")):
            line, rest = rest.split(b"\r\n", 1)
            out.append(line.split(b" ", 1)[0].split(b":", 1)[0].decode())
        else:
            _, rest = rest.split(b"\r\n.\r\n", 1)
            out.append("<data>")
    return " ".join(out)


def _run(
    features: dict[str, str],
    count: int,
    *,
    refuse: frozenset[int] = frozenset(),
    lose_at_rset: bool = False,
    policy: RetryPolicy | None = None,
) -> tuple[list[str], list[Any], int]:
    """Drive the scheduler over ``count`` messages; return the requests, results, stored.

    ``refuse``: the messages whose data the server refuses; ``lose_at_rset``: the
    connection breaks when the first RSET is written (a new one is made on Connect).
    """
    driver, server = _Driver(features), _Server(refuse)
    flows = [
        send_flow(
            prepare_envelope(
                EmailMessage(f"m{n}", "body\n", "a@example.com", [f"r{n}@x.test"]).validate()
            ),
            policy or RetryPolicy(),
        )
        for n in range(count)
    ]
    batch = Batch(flows)
    requests = schedule(driver, batch)
    log: list[str] = []
    value: object = None
    error: OSError | None = None
    while True:
        try:
            request: Request = requests.send(value) if error is None else requests.throw(error)
        except StopIteration:
            break
        value, error = None, None
        if isinstance(request, Carry) and isinstance(request.run.action, Sleep):
            log.append("sleep")
            continue
        if isinstance(request, Carry) and isinstance(request.run.action, Connect):
            driver.connected("new", features)
            server.replies.clear()  # a new session: nothing pending from the old one
            server.in_data, server.pending = False, b""
            log.append("connect")
            continue
        if isinstance(request, Carry) and isinstance(request.run.action, Step):
            if lose_at_rset and request.run.action.payload == [b"RSET\r\n"]:
                lose_at_rset = False
                log.append("lost at RSET")
                error = OSError("connection lost")
                continue
        if isinstance(request, Write):
            server.receive(b"".join(request.payload))
            log.append(f"write {_what(b''.join(request.payload))} (owes {request.owes})")
        elif isinstance(request, Read):
            value = server.answer(request.count)
            log.append(f"read {request.count}")
        else:
            assert isinstance(request, Carry)
            action = request.run.action
            assert isinstance(action, Step), action
            if action.payload:
                server.receive(b"".join(action.payload))
            value = server.answer(action.replies)
            written = _what(b"".join(action.payload)) if action.payload else "-"
            log.append(f"alone {written}, read {action.replies}")
    return log, batch.results, server.messages


def test_with_data_each_message_costs_one_write_and_the_reads_of_its_replies() -> None:
    log, results, stored = _run({"pipelining": ""}, 3)
    assert log == [
        "alone MAIL RCPT DATA, read 3",
        "write <data> MAIL RCPT DATA (owes 4)",  # message 0's data, message 1's commands
        "read 1",  # the reply to message 0's final dot
        "read 3",  # message 1's MAIL, RCPT, DATA
        "write <data> MAIL RCPT DATA (owes 4)",
        "read 1",
        "read 3",
        "alone <data>, read 0",  # the last message: nothing to follow its data
        "alone -, read 1",
    ]
    assert [r.status for r in results] == [{SENT}] * 3
    assert stored == 3


def test_without_pipelining_every_step_is_carried_out_alone() -> None:
    log, results, stored = _run({}, 2)
    assert all(entry.startswith("alone ") for entry in log)
    assert [entry for entry in log if "<data>" in entry] == ["alone <data>, read 0"] * 2
    assert [r.status for r in results] == [{SENT}] * 2
    assert stored == 2


def test_with_chunking_up_to_the_window_is_in_flight_and_every_reply_read_was_owed() -> None:
    """CHUNKING: eight messages go out before the first replies are read; what the
    writes say they owe is exactly what the reads take (a driver that drops replies
    nobody awaits, the async one, keeps every one of them)."""
    log, results, stored = _run({"pipelining": "", "chunking": ""}, 12)
    # The first message's write waits to go out with the second's, then one write each:
    assert log[0] == "write MAIL RCPT BDAT MAIL RCPT BDAT (owes 6)"
    assert log[1:7] == ["write MAIL RCPT BDAT (owes 3)"] * 6
    assert log[7] == "read 3"  # eight in flight before the first read
    owed = sum(int(e.rsplit("owes ", 1)[1].rstrip(")")) for e in log if e.startswith("write"))
    read = sum(int(e.split()[1]) for e in log if e.startswith("read"))
    assert owed == read == 12 * 3
    assert [r.status for r in results] == [{SENT}] * 12
    assert stored == 12


def test_a_message_whose_data_waits_behind_a_lost_rset_is_not_taken_as_written() -> None:
    """Message 0's data is refused; its RSET waits while message 1's commands are
    answered, then the connection breaks as the RSET goes out. Message 1's data never
    left: it fails as not sent (``failed``; with a retry it is sent on a new
    connection), never ``unknown``; message 0 keeps its refusal."""
    log, results, stored = _run({"pipelining": ""}, 3, refuse=frozenset({0}), lose_at_rset=True)
    assert log[-1] == "lost at RSET"
    first = next(iter(results[0].recipients.values()))
    assert (first.status, first.code) == ("rejected", 554)
    assert isinstance(results[1], TransportError) and results[2] is None  # the batch stops
    assert stored == 0

    retried = RetryPolicy(max_retries=1, backoff=0)
    log, results, stored = _run(
        {"pipelining": ""}, 3, refuse=frozenset({0}), lose_at_rset=True, policy=retried
    )
    assert log.index("connect") > log.index("lost at RSET")
    assert [next(iter(r.recipients.values())).status for r in results] == [
        "rejected",
        SENT,
        SENT,
    ]
    assert stored == 2
