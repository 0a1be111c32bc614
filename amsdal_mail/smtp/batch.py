"""Several messages in flight on one connection: the scheduling, shared by both drivers.

:func:`schedule` runs one flow per message over a driver's connection and
decides, without doing any I/O, what goes on the wire when. It is a
generator of three kinds of request, which a driver carries out (sync or
async) and answers, or throws the I/O error into:

* :class:`Write`: write these bytes (no reply is read; ``owes`` is how many
  replies they call for, read by later :class:`Read` requests);
* :class:`Read`: return the next ``count`` replies (fewer after a 421);
* :class:`Carry`: carry out a flow's current action alone, with the driver
  method :attr:`~.driver.FlowRun.io` names (a connect, a wait, a lock-step
  exchange).

Where the server offers PIPELINING, a message whose data is out leaves the
reply to it owed, and the next message's commands (with CHUNKING its data
too) go out before that reply is read (RFC 2920: the content may open a
group). A message's data and the next message's commands go out in one
write, so that the server reads them together and answers them together.
"""

from __future__ import annotations

import smtplib
from collections import deque
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ..exceptions import TransportError
from .driver import Driver, FlowRun
from .flow import Action
from .transaction import Step

__all__ = [
    "OVERLAP_BYTES",
    "OVERLAP_WINDOW",
    "Batch",
    "Carry",
    "Read",
    "Request",
    "Write",
    "schedule",
]

_R = TypeVar("_R")

#: Messages and bytes of data that :func:`schedule` keeps in flight at most.
OVERLAP_WINDOW = 8
OVERLAP_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class Write:
    """Write ``payload`` in one go; it calls for ``owes`` replies, read later."""

    payload: list[bytes]
    owes: int


@dataclass(frozen=True, slots=True)
class Read:
    """Return the next ``count`` replies (stopping after a 421)."""

    count: int


@dataclass(frozen=True, slots=True)
class Carry:
    """Carry out ``run``'s current action alone; answer with its result."""

    run: FlowRun[Any]


#: What :func:`schedule` asks a driver to do.
Request = Write | Read | Carry


class _Wire:
    """The messages on the wire whose replies are owed, in the order their bytes went out.

    It keeps what :func:`schedule` asks of it on every turn at hand: how many
    of them wait for a reply other than the one to their data (while one
    does, no further message may follow), the bytes they wrote, and
    ``driver.owed``.
    """

    __slots__ = ("_driver", "_entries", "blocking", "size")

    def __init__(self, driver: Driver[Any]) -> None:
        self._driver = driver
        #: (index, flow run, bytes written, replies owed, they answer its data)
        self._entries: deque[tuple[int, FlowRun[Any], int, int, bool]] = deque()
        #: Entries whose replies owed are not those to their data.
        self.blocking = 0
        #: Bytes the entries wrote.
        self.size = 0

    def __len__(self) -> int:
        return len(self._entries)

    def push(self, index: int, run: FlowRun[Any], size: int) -> None:
        """Put ``run`` behind the others: its current step's replies are owed."""
        action = run.action
        assert isinstance(action, Step)
        self._entries.append((index, run, size, action.replies, action.after_data))
        self._driver.owed += action.replies
        self.blocking += not action.after_data
        self.size += size

    def pop(self) -> tuple[int, FlowRun[Any]]:
        """Take the oldest entry: its replies are read next."""
        index, run, size, replies, after_data = self._entries.popleft()
        self._driver.owed -= replies
        self.blocking -= not after_data
        self.size -= size
        return index, run


class Batch(Generic[_R]):
    """The flows of a batch, one per message, and what became of each.

    Several :func:`schedule` runs (one per connection of an async batch)
    may take flows from the one batch: each takes the next one not started.
    """

    def __init__(self, flows: Sequence[Generator[Action, object, _R]]) -> None:
        #: The flows not started yet, with their index.
        self.upcoming = deque(enumerate(flows))
        #: Each flow's result, the TransportError it gave up with, or None (never started).
        self.results: list[_R | TransportError | None] = [None] * len(flows)


def schedule(
    driver: Driver[Any],
    batch: Batch[Any],
    *,
    window: int = OVERLAP_WINDOW,
    max_bytes: int = OVERLAP_BYTES,
) -> Generator[Request, object, None]:
    """Run ``batch``'s flows in order, several in flight on ``driver``'s connection.

    Up to ``window`` messages or ``max_bytes`` of data are in flight.
    Replies are read in the order their commands went out. A message whose
    flow needs more after its replies (an RSET, a retry, another
    transaction) waits until the ones written after it are done. A lost
    connection fails every message in flight at once: those whose data was
    out are ``unknown``. After a flow gives up (its TransportError is its
    result) this run starts no further message. ``driver.owed`` counts the
    replies owed meanwhile.
    """
    results: list[Any] = batch.results
    wire = _Wire(driver)  # replies owed, in the order the bytes went out
    held: deque[tuple[int, FlowRun[Any]]] = deque()  # continuations, for an idle wire
    upcoming = batch.upcoming
    stopped = False
    # A message's data held back to go out in one write with the next message's commands.
    unsent: list[bytes] = []
    unsent_owes = 0

    def settle(
        i: int, run: FlowRun[Any], value: object = None, error: BaseException | None = None
    ) -> bool:
        """Resume ``run`` with ``value`` (or fail it with ``error``); True while it goes on."""
        nonlocal stopped
        try:
            if error is not None:
                run.fail(error)
            else:
                run.resume(value)
        except TransportError as exc:
            results[i], stopped = exc, True
            return False
        if run.action is None:
            results[i] = run.result
            driver.message_done()
            return False
        return True

    def start() -> tuple[int, FlowRun[Any]] | None:
        nonlocal stopped
        i, flow = upcoming.popleft()
        try:
            return i, FlowRun(driver, flow)
        except TransportError as exc:
            results[i], stopped = exc, True
            return None

    def lost(exc: BaseException) -> None:
        """The connection broke: every message in flight fails with ``exc``, in order."""
        nonlocal unsent, unsent_owes
        unsent, unsent_owes = [], 0
        while wire:
            i, run = wire.pop()
            if settle(i, run, error=exc):
                held.append((i, run))
        driver.owed = 0

    def write(payload: list[bytes], owes: int) -> Generator[Request, object, None]:
        """Write what is held back, then ``payload``, in one write."""
        nonlocal unsent, unsent_owes
        chunks = [*unsent, *payload] if unsent else payload
        owes += unsent_owes
        unsent, unsent_owes = [], 0
        yield Write(chunks, owes)

    def solo(i: int, run: FlowRun[Any]) -> Generator[Request, object, None]:
        """Run ``run`` alone on an idle wire until it ends or leaves replies owed after data."""
        nonlocal unsent, unsent_owes
        while run.action is not None:
            action = run.action
            if isinstance(action, Step) and upcoming and not stopped:
                if action.after_data:
                    wire.push(i, run, 0)
                    return
                if (
                    action.payload
                    and not action.replies
                    and driver.link is not None
                    and "pipelining" in driver.features
                ):
                    # A message's data, answered in the next step: held back for the
                    # next message's commands (never on a lost connection: there it
                    # must fail unsent, to be retried, not be taken as written).
                    unsent, unsent_owes = action.payload, action.owes
                    if not settle(i, run, []):
                        return
                    continue
            try:
                if isinstance(action, Step):
                    if driver.link is None:
                        # Another message's failure closed the connection under this one.
                        raise smtplib.SMTPServerDisconnected("the connection was lost")
                    if unsent:
                        yield from write([], 0)
                value = yield Carry(run)
            except Exception as exc:  # noqa: BLE001 - only the I/O errors a driver throws in
                if not settle(i, run, error=exc):
                    return
            else:
                if not settle(i, run, value):
                    return

    def overlap() -> Generator[Request, object, bool]:
        """Put the next message on the wire behind the ones in flight; False if it cannot."""
        if wire.blocking or stopped or held or not upcoming or driver.link is None:
            return False
        if len(wire) >= window or wire.size >= max_bytes:
            return False
        started = start()
        if started is None:
            return True
        i, run = started
        action = run.action
        if not (isinstance(action, Step) and action.payload) or driver.link is None:
            held.append((i, run))  # it must connect, wait or sleep first: once idle
            return True
        size = sum(len(p) for p in action.payload)
        try:
            yield from write(action.payload, action.replies + action.owes)
        except Exception as exc:  # noqa: BLE001 - only the I/O errors a driver throws in
            lost(exc)
            if settle(i, run, error=exc):
                held.append((i, run))
            return True
        if action.replies:
            wire.push(i, run, size)
            return True
        if settle(i, run, []):
            nxt = run.action
            if isinstance(nxt, Step) and nxt.after_data and not nxt.payload:
                wire.push(i, run, size)
            else:
                held.append((i, run))
        return True

    while True:
        if wire:
            if (yield from overlap()):
                continue
            i, run = wire.pop()
            action = run.action
            assert isinstance(action, Step)
            try:
                if unsent:
                    yield from write([], 0)
                replies = yield Read(action.replies)
            except Exception as exc:  # noqa: BLE001 - only the I/O errors a driver throws in
                lost(exc)
                if settle(i, run, error=exc):
                    held.appendleft((i, run))
                continue
            goes_on = settle(i, run, replies)
            if driver.link is None and wire:  # a 421 closed the connection under them
                lost(
                    smtplib.SMTPServerDisconnected(
                        "the server closed the connection (421) before these replies"
                    )
                )
            if goes_on:
                if wire or held:
                    held.append((i, run))
                else:
                    yield from solo(i, run)
            continue
        if held:
            yield from solo(*held.popleft())
            continue
        if not upcoming or stopped:
            assert not unsent, "a message's data was held back and never written"
            return
        started = start()
        if started is not None:
            yield from solo(*started)
