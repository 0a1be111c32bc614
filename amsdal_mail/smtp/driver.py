"""The action-runner core shared by the sync and async drivers.

A driver carries out a flow's actions over one connection. Everything about
that which does no I/O is here, once: :class:`Driver` holds the connection
state (features, whether it served a message) and the error translation;
:class:`FlowRun` steps a flow, answers :class:`~.flow.Connect` on a live
connection itself, drops the connection after a 421 or an error, and turns
what an action raised into the error thrown into the flow. What is left to
a driver is a short loop and three I/O methods: connect, exchange bytes for
replies, and sleep.
"""

from __future__ import annotations

import functools
import socket
from collections.abc import Generator
from typing import Any, Generic, TypeVar

from ..config import SMTPSettings
from ..exceptions import ServerDisconnectedError, TransportError
from ..status import SMTPCode
from .errors import translate
from .flow import Action, Connect, Connection, Sleep, Throttle
from .limits import RateBudget, closes_after
from .transaction import Step

__all__ = ["CLOSING", "Driver", "FlowRun", "local_hostname"]

_R = TypeVar("_R")
_L = TypeVar("_L")  # what a driver holds for one connection
#: The driver method that carries out each kind of action.
_IO = {Sleep: "do_sleep", Connect: "do_connect", Step: "do_exchange", Throttle: "do_throttle"}


@functools.cache
def local_hostname() -> str:
    """Return this host's FQDN for EHLO, looked up once per process (it may block)."""
    return socket.getfqdn()


#: A reply with this code ends the reading of a step's replies: after a 421 the
#: server closes the connection, so the replies still owed never come (the flow
#: counts them as that 421). A 421 is therefore always the last reply of a step.
CLOSING = int(SMTPCode.SERVICE_UNAVAILABLE)


class Driver(Generic[_L]):
    """The non-I/O half of a driver: one connection's state and its errors.

    :attr:`link` is the connection (an ``smtplib.SMTP``, an asyncio
    protocol), set only once it is ready for mail. Subclasses implement
    :meth:`_abort` (close a link at once, without blocking), and, sync or
    async, the I/O of each action: ``do_connect`` (connect, then hand the
    new link and its EHLO features to :meth:`connected`),
    ``do_exchange`` (write a :class:`~.transaction.Step`'s bytes, return its
    replies, stopping after a :data:`CLOSING` one), ``do_sleep`` and
    ``do_throttle`` (wait as :attr:`budget` says). Their loop calls the one
    :attr:`FlowRun.io` names.

    ``budget`` is the backend's ``rate_limit``, shared by all its drivers.
    """

    def __init__(self, settings: SMTPSettings, budget: RateBudget | None = None) -> None:
        self.settings = settings
        #: The backend's rate budget (None without ``rate_limit``).
        self.budget = budget
        #: Messages the current connection has served (for ``max_messages_per_connection``).
        self.served = 0
        #: The current connection, None when there is none.
        self.link: _L | None = None
        #: The EHLO keywords of the current connection.
        self.features: dict[str, str] = {}
        #: The current connection has served a message (so it may have gone stale).
        self.used = False
        #: Replies owed by messages in flight (:func:`~.batch.schedule`).
        self.owed = 0

    @property
    def where(self) -> str:
        """Return ``host:port`` of the server, for error messages."""
        return f"{self.settings.host}:{self.settings.port}"

    def is_connected(self) -> bool:
        """Return True while a connection is held."""
        return self.link is not None

    def drop(self) -> None:
        """Close the connection at once, without a word to the server."""
        link = self._release()
        if link is not None:
            self._abort(link)

    def _release(self) -> _L | None:
        """Forget the connection and return it (for QUIT or an abort)."""
        link, self.link = self.link, None
        return link

    def _abort(self, link: _L) -> None:
        """Close ``link`` at once (subclasses)."""
        raise NotImplementedError

    def link_alive(self) -> bool:
        """Return False when the held connection is known to be gone, without a round trip.

        A server says nothing unasked but a 421 before it closes: a connection
        with something to read while no command is owed (that 421, the
        server's end of the connection) is over. Subclasses look.
        """
        return self.link is not None

    def connected(self, link: _L, features: dict[str, str]) -> None:
        """Take ``link``, a new connection ready for mail, with its EHLO ``features``."""
        self.link = link
        if not self.settings.chunking:
            # chunking=False: the flow sees no CHUNKING and sends DATA.
            features = {k: v for k, v in features.items() if k != "chunking"}
        self.features = features
        self.used = False
        self.served = 0

    def attach(self, link: _L, features: dict[str, str], served: int) -> None:
        """Take ``link``, a logged-in connection from a pool, as the current connection."""
        self.link = link
        self.features = features
        self.used = True  # it has served before: a death found on first use is replaced
        self.served = served

    def detach(self) -> tuple[_L, dict[str, str], int] | None:
        """Give up the current connection, alive, for a pool: (link, features, served)."""
        link = self._release()
        return None if link is None else (link, self.features, self.served)

    def message_done(self) -> bool:
        """Count a message sent on the current connection.

        Return True when ``max_messages_per_connection`` says the connection
        must now be closed (the next message opens a new one).
        """
        if self.link is None:
            return False
        self.served += 1
        return closes_after(self.served, self.settings.max_messages_per_connection)

    def throttle_wait(self, now: float) -> float:
        """Return 0.0 when a message may start at clock reading ``now``, else the wait."""
        return 0.0 if self.budget is None else self.budget.try_start(now)

    def translate(self, exc: BaseException) -> TransportError:
        """Return the amsdal_mail error for what an action raised."""
        return translate(exc, where=self.where, timeout=self.settings.timeout)


class FlowRun(Generic[_R]):
    """One flow being carried out by a driver.

    :attr:`action` is the action the driver must carry out next (None once
    the flow returned :attr:`result`); the driver then calls :meth:`resume`
    with its result, or :meth:`fail` with what it raised. A
    :class:`~amsdal_mail.TransportError` the flow gives up on propagates
    from these calls, with the connection dropped.
    """

    def __init__(self, driver: Driver[Any], flow: Generator[Action, object, _R]) -> None:
        self._driver = driver
        self._flow = flow
        self._reused = False
        #: The connection this flow last used (a fresh Connect replaces only that one).
        self._link: object = None
        self._result: _R | None = None
        self.action: Action | None = None
        #: The name of the driver method that carries out :attr:`action`.
        self.io = ""
        self._advance(None, None)

    @property
    def result(self) -> _R:
        """Return what the flow returned."""
        assert self.action is None, "the flow has not finished"
        return self._result  # type: ignore[return-value]

    def resume(self, value: object) -> None:
        """Go on with the result of the current action."""
        action, driver = self.action, self._driver
        if isinstance(action, (Step, Connect)):
            self._link = driver.link
        if isinstance(action, Step):
            driver.used = True
            assert isinstance(value, list)
            if value and value[-1].code == CLOSING:
                driver.drop()  # 421: the server is closing this connection
        elif isinstance(action, Connect):
            value = Connection(driver.features, self._reused)
        self._advance(value, None)

    def fail(self, exc: BaseException) -> None:
        """Go on after the current action raised ``exc``: the connection is dropped."""
        self._driver.drop()
        self._advance(None, self._driver.translate(exc))

    def _advance(self, value: object, error: TransportError | None) -> None:
        """Step the flow to its next action that needs I/O, or to its end."""
        driver = self._driver
        while True:
            try:
                action = self._flow.send(value) if error is None else self._flow.throw(error)
            except StopIteration as stop:
                self.action, self._result = None, stop.value
                return
            except TransportError:
                driver.drop()  # the exchange ended mid-way: never reuse that connection
                raise
            value, error = None, None
            if isinstance(action, Step):
                if driver.link is None:
                    error = ServerDisconnectedError(f"{driver.where}: not connected")
                    continue
            elif isinstance(action, Connect):
                # Another flow may have made a new connection since: fresh replaces only
                # the one this flow used.
                stale = action.fresh and driver.link is self._link
                if stale or (driver.used and not driver.link_alive()):
                    # Found closed before a byte was written: replaced at no cost, and
                    # never a message whose data went into a dead connection.
                    driver.drop()
                self._reused = driver.link is not None and driver.used
                if driver.link is not None:
                    value = Connection(driver.features, self._reused)
                    continue
            self.action, self.io = action, _IO[type(action)]
            return
