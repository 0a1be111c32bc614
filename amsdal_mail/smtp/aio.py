"""The async driver: aiosmtplib connects and authenticates, then raw bytes over its transport.

:class:`AsyncDriver` holds one connection. aiosmtplib connects and does
EHLO, STARTTLS and AUTH as :mod:`.handshake` decides; then the transport is
moved to a :class:`_ReplyReader`, which reads every reply through the one
:class:`~.wire.ReplyParser` and writes as :func:`~.wire.plan_writes` plans.
aiosmtplib's own protocol keeps one parsed reply and drops data that arrives
while it is unread, so it cannot take pipelined replies.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import smtplib
import socket
import time
from collections import deque
from collections.abc import Callable, Generator
from typing import Any, TypeVar

from ..exceptions import MissingDependencyError
from ..status import SMTPReply
from .batch import OVERLAP_BYTES, OVERLAP_WINDOW, Batch, Carry, Read, Write, schedule
from .driver import CLOSING, Driver, FlowRun, local_hostname
from .flow import Action, Connect, Sleep, Throttle
from .handshake import (
    OAUTH_MECHANISMS,
    FetchToken,
    auth_mechanism,
    checked_token,
    ehlo_features,
    oauth_login,
    provider_kwargs,
    wants_starttls,
)
from .transaction import Step
from .wire import COALESCE, ReplyLimitError, ReplyParser, plan_writes

__all__ = ["AsyncDriver", "import_aiosmtplib"]

logger = logging.getLogger("amsdal_mail.smtp")
_R = TypeVar("_R")
_LOGIN = {"CRAM-MD5": "auth_crammd5", "PLAIN": "auth_plain", "LOGIN": "auth_login"}


def import_aiosmtplib() -> Any:
    """Return the aiosmtplib module; raise MissingDependencyError naming the extra."""
    try:
        import aiosmtplib
    except ImportError as exc:  # pragma: no cover - exercised in the no-extras test run
        raise MissingDependencyError(
            "async SMTP sending needs aiosmtplib: pip install amsdal-mail[smtp]"
        ) from exc
    return aiosmtplib


class AsyncDriver(Driver["_ReplyReader"]):
    """Run flows over one async connection, made on demand; one flow at a time."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Held while a flow runs: one connection serves one message at a time.
        self.lock = asyncio.Lock()

    def _abort(self, link: _ReplyReader) -> None:
        link.abort()

    async def quit(self) -> None:
        """Send QUIT and close; a dead connection is just dropped."""
        reader = self._release()
        if reader is not None:
            await quit_reader(reader, self.settings.timeout)

    def link_alive(self) -> bool:
        """Return False when the held connection was closed (EOF or a 421 while idle)."""
        return self.link is not None and self.link.is_open

    async def check(self, reader: _ReplyReader) -> bool:
        """Return True when ``reader``'s connection still answers (NOOP)."""
        if not reader.is_open:
            return False
        try:
            (reply,) = await reader.exchange([b"NOOP\r\n"], 1, self.settings.timeout)
        except Exception:  # noqa: BLE001 - any failure: the connection is not reusable
            return False
        return reply.code == 250

    async def run(self, flow: Generator[Action, object, _R], *, message: bool = False) -> _R:
        """Carry out the actions of ``flow`` until it returns; return its result.

        With ``message`` the flow sent one message: it counts against
        ``max_messages_per_connection``, and the connection is closed when
        that limit is reached. Raises the :class:`~amsdal_mail.TransportError`
        the flow gives up on.
        """
        errors = (OSError, import_aiosmtplib().SMTPException)
        async with self.lock:
            run = FlowRun(self, flow)
            while run.action is not None:
                try:
                    value = await getattr(self, run.io)(run.action)
                except errors as exc:
                    run.fail(exc)
                else:
                    run.resume(value)
            if message and self.message_done():
                await self.quit()
            return run.result

    async def run_batch(
        self, batch: Batch[Any], *, window: int = OVERLAP_WINDOW, max_bytes: int = OVERLAP_BYTES
    ) -> None:
        """Carry out what :func:`~.batch.schedule` asks for ``batch`` on this connection.

        Several drivers may share one batch: each takes the next flow not
        started. Writes that need no wait and reads whose replies are here
        are carried out at once, and a read that must wait goes on in the
        connection's callbacks as the replies arrive (:class:`_Pump`): the
        task wakes only for what needs it (a connect, a large write, a wait
        of a flow's own, the end of the batch).
        """
        async with self.lock:
            pump = _Pump(self, schedule(self, batch, window=window, max_bytes=max_bytes))
            request = pump.advance(None, None)
            while request is not None:
                if request is _PARKED:
                    request = await pump.parked()
                    continue
                value: object = None
                error: BaseException | None = None
                try:
                    if isinstance(request, Write):  # a large one: it waits for room
                        await self._reader().exchange(
                            request.payload, 0, self.settings.timeout, request.owes
                        )
                    else:  # the pump carries out every Read itself
                        assert isinstance(request, Carry)
                        value = await getattr(self, request.run.io)(request.run.action)
                except pump.errors as exc:
                    error = exc
                request = pump.advance(value, error)

    def _reader(self) -> _ReplyReader:
        reader = self.link
        if reader is None:
            raise smtplib.SMTPServerDisconnected("not connected")
        return reader

    async def do_sleep(self, action: Sleep) -> None:
        """Wait before a retry."""
        await asyncio.sleep(action.seconds)

    async def do_throttle(self, action: Throttle) -> None:
        """Wait until the rate budget (shared with every connection) lets a message start."""
        while (wait := self.throttle_wait(time.monotonic())) > 0:
            await asyncio.sleep(wait)

    async def do_exchange(self, action: Step) -> list[SMTPReply]:
        """Write the step's bytes and return its replies."""
        reader = self.link
        assert reader is not None  # FlowRun answers a Step without connection itself
        return await reader.exchange(
            action.payload, action.replies, self.settings.timeout, action.owes
        )

    async def do_connect(self, action: Connect) -> None:
        """Connect, say EHLO, STARTTLS and log in as the handshake policy says.

        The connection is kept only once all of that succeeded.
        """
        aiosmtplib = import_aiosmtplib()
        s = self.settings
        context = s.make_ssl_context() if s.is_encrypted else None
        local = s.local_hostname or await asyncio.to_thread(local_hostname)
        # Pass both TLS flags explicitly: left unset, aiosmtplib upgrades
        # opportunistically and logs in whenever a username is set.
        client = aiosmtplib.SMTP(
            hostname=s.host,
            port=s.port,
            local_hostname=local,
            timeout=s.timeout,
            use_tls=s.use_ssl,
            start_tls=False,
            tls_context=context,
        )
        try:
            await client.connect()
            # asyncio turns Nagle off on every TCP transport; keep it on for the
            # handshake (see SyncDriver's _Connection.set_nodelay for why).
            _set_nodelay(client.transport, False)
            await client.ehlo()
            if wants_starttls(s, ehlo_features(client.esmtp_extensions), self.where):
                await client.starttls(tls_context=context)
                await client.ehlo()
            features = ehlo_features(client.esmtp_extensions)
            mechanism = auth_mechanism(s, features, self.where)
            if mechanism is not None and mechanism not in OAUTH_MECHANISMS:
                await getattr(client, _LOGIN[mechanism])(s.username or "", s.password or "")
            transport = client.transport
            if not isinstance(transport, asyncio.Transport) or transport.is_closing():
                raise aiosmtplib.SMTPServerDisconnected("Connection lost")
            _set_nodelay(transport, True)
        except BaseException:
            client.close()
            raise
        # From here on the transport is this driver's: aiosmtplib is not used again.
        reader = _ReplyReader(transport)
        transport.set_protocol(reader)
        if mechanism in OAUTH_MECHANISMS:
            # Logged in over the reader: the same parser reads the replies.
            try:
                await self._oauth_login(reader, mechanism, action.refresh_token)
            except BaseException:
                reader.abort()
                raise
        self.connected(reader, features)

    async def _oauth_login(self, reader: _ReplyReader, mechanism: str, force_refresh: bool) -> None:
        """Carry out :func:`~.handshake.oauth_login` over ``reader``."""
        login = oauth_login(mechanism, self.settings, self.where, force_refresh=force_refresh)
        value: object = None
        while True:
            try:
                step = login.send(value)
            except StopIteration:
                return
            if isinstance(step, FetchToken):
                value = await self._token(step.force_refresh)
            else:
                (value,) = await reader.exchange([step.line], 1, self.settings.timeout)

    async def _token(self, force_refresh: bool) -> str:
        """Return a token from ``oauth2_token``: a string, an async provider's, or a sync one's.

        A sync provider runs in a thread (it may fetch the token over HTTP),
        so the event loop is not blocked.
        """
        source = self.settings.oauth2_token
        if isinstance(source, str):
            return source
        assert source is not None
        kwargs = provider_kwargs(source, force_refresh)
        if inspect.iscoroutinefunction(source):
            result = await source(**kwargs)
        else:
            result = await asyncio.to_thread(source, **kwargs)
            if inspect.isawaitable(result):
                result = await result
        return checked_token(result, source)


async def quit_reader(reader: _ReplyReader, timeout: float | None) -> None:
    """Say QUIT on ``reader``'s connection and close it; a dead one is just closed."""
    try:
        if reader.is_open:
            await reader.exchange([b"QUIT\r\n"], 1, timeout)
    except Exception:  # noqa: BLE001 - QUIT on a dying connection is not an error
        reader.abort()
    await reader.close(min(timeout or 5.0, 5.0))


class _ReplyReader(asyncio.Protocol):
    """The protocol of an async connection once aiosmtplib has set it up.

    It feeds every byte to a :class:`~.wire.ReplyParser` and hands the
    replies out in order: each answers exactly one command, read within
    ``timeout`` seconds. A reply that arrives while no command awaits one
    (the server talking while the connection sits idle) answers nothing and
    is dropped; a 421 among those marks the connection as closing.
    """

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self._parser = ReplyParser()
        self._replies: deque[SMTPReply] = deque()  # owed replies, not yet taken
        self._expected = 0  # replies owed to commands already written
        # Of those, the replies a step's bytes called for ahead of the step that reads them.
        self._prepaid = 0
        # Why the connection is unusable: the text, the SMTP code for an
        # invalid reply (None when the connection closed), and the cause.
        self._error: str | None = None
        self._error_code: int | None = None
        self._cause: BaseException | None = None
        self._waiter: asyncio.Future[bool] | None = None
        self._paused = False
        self._deferred: list[bytes] = []
        # A batch waiting in callbacks (park()): the replies it waits for, what to call
        # once they are here (or the connection failed), and since when it waits.
        self._want = 0
        self._on_replies: Callable[[], None] | None = None
        self._since = 0.0
        self._timeout: float | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        #: The timeout a parked wait ran out of (the caller raises TimeoutError), or None.
        self.expired: float | None = None
        self._loop = asyncio.get_running_loop()
        self.closed: asyncio.Future[None] = self._loop.create_future()

    # --- asyncio.Protocol ---------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        """Parse what arrived; keep the replies owed, drop the others."""
        parser = self._parser
        try:
            parser.feed(data)
        except ReplyLimitError as exc:
            self._fail(exc.text, None, code=exc.code)
            self.transport.abort()
            return
        while parser.replies:
            reply = parser.replies.popleft()
            if self._expected:
                self._expected -= 1
                self._replies.append(reply)
            elif reply.code == CLOSING:
                self._fail(f"Connection closing: {reply}", None)
            else:
                logger.debug("ignoring an unsolicited reply: %s", reply)
        self._wake_task()
        self._call_back()

    def eof_received(self) -> bool:
        """Note the server's end of the connection; close the transport."""
        self._fail("Connection unexpectedly closed", None)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        """Fail every wait: the connection is gone."""
        self._fail("Connection unexpectedly closed", exc)
        self._paused = False
        self._wake()
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if not self.closed.done():
            self.closed.set_result(None)

    def pause_writing(self) -> None:
        """Stop writing until the transport's buffer drains."""
        self._paused = True

    def resume_writing(self) -> None:
        """Writing may go on."""
        self._paused = False
        self._wake()

    # --- for the driver -------------------------------------------------------------

    def _fail(self, text: str, cause: BaseException | None, *, code: int | None = None) -> None:
        if self._error is None:
            self._error, self._error_code, self._cause = text, code, cause
        self._wake()

    def _wake(self) -> None:
        self._wake_task()
        if self._on_replies is not None:
            # Never inside whoever failed the connection: from the event loop.
            self._loop.call_soon(self._call_back)

    def _wake_task(self) -> None:
        """Wake a task waiting in :meth:`_wait`."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(True)

    def _call_back(self) -> None:
        """Call the callback of :meth:`park` if what it waits for is here."""
        callback = self._on_replies
        if callback is not None and (self._error is not None or self.complete(self._want)):
            self._on_replies = None
            callback()

    def _raise_error(self) -> None:
        """Raise what made the connection unusable, as the sync driver would raise it."""
        text = self._error or "Connection unexpectedly closed"
        error: smtplib.SMTPException
        if self._error_code is not None:
            error = smtplib.SMTPResponseException(self._error_code, text)
        else:
            error = smtplib.SMTPServerDisconnected(text)
        raise error from self._cause

    @property
    def is_open(self) -> bool:
        """Return True while the connection can take commands."""
        return self._error is None and not self.transport.is_closing()

    async def _wait(self, timeout: float | None, what: str) -> None:
        """Wait until the protocol has news (a reply, room to write, a close), or time out."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        self._waiter = waiter
        # A bare timer, cheaper than asyncio.timeout() at two waits per message.
        timer = None if timeout is None else loop.call_later(timeout, _expire, waiter)
        try:
            woken = await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()
        if not woken:
            raise TimeoutError(f"no {what} within {timeout}s")

    async def exchange(
        self, payload: list[bytes], replies: int, timeout: float | None, owes: int = 0
    ) -> list[SMTPReply]:
        """Write ``payload``, then return the next ``replies`` replies, each within ``timeout``.

        ``owes`` more replies are owed to ``payload`` and read by a later
        exchange: they are kept from the moment the bytes go out (the server
        may answer the start of a large write before its end is written), and
        that later exchange takes them instead of owing its own.

        Large chunks are written one at a time, waiting while the transport's
        buffer is full, so a large message is never copied whole into it.
        Reading stops after a 421. Raises ``SMTPServerDisconnected``,
        ``SMTPResponseException`` or ``TimeoutError``; the connection is
        aborted then.
        """
        if not self.is_open:
            self._raise_error()
        try:
            return await self._exchange(payload, replies, timeout, owes)
        except BaseException:
            # Interrupted (an error, a timeout, a cancelled task): which bytes
            # went out and which replies are owed is unknown, so the
            # connection can never serve another command.
            self.abort()
            raise

    async def _exchange(
        self, payload: list[bytes], replies: int, timeout: float | None, owes: int
    ) -> list[SMTPReply]:
        self.owe(replies, owes)
        for data in plan_writes(payload):
            self.send(data)
            # Only after a large write can the buffer be full: let it drain first.
            while len(data) >= COALESCE and self._paused and self.is_open:
                await self._wait(timeout, "room to write")
            if not self.is_open:
                self._raise_error()
        out: list[SMTPReply] = []
        while len(out) < replies:
            if self._replies:
                reply = self._replies.popleft()
                out.append(reply)
                if reply.code == CLOSING:
                    break
            elif self._error is not None:
                self._raise_error()
            else:
                await self._wait(timeout, "complete reply")
        return out

    # --- for a batch carried out in callbacks (_Pump) -------------------------------
    #
    # The same steps as exchange(), without a coroutine: owe() what a write calls
    # for, write_now() a small payload, take() replies that are all here, or
    # park() until they are. Each raises as exchange() would, leaving the caller to
    # abort().

    def owe(self, replies: int, owes: int) -> None:
        """Count the replies owed: ``replies`` read now, ``owes`` by a later read."""
        prepaid = min(replies, self._prepaid)
        self._prepaid += owes - prepaid
        self._expected += replies - prepaid + owes

    def send(self, data: bytes) -> None:
        """Put ``data`` on the wire: every write of this connection goes through here."""
        if self._deferred:
            self._flush()
        self.transport.write(data)

    def _flush(self) -> None:
        """Write what :meth:`write_now` deferred (nothing on a connection that is closing)."""
        deferred, self._deferred = self._deferred, []
        if not self.transport.is_closing():
            for data in deferred:
                self.send(data)

    def write_now(self, payload: list[bytes], owes: int) -> bool:
        """Write a payload that needs no wait for room; False (nothing done) for a large one.

        The write goes out at the end of this turn of the event loop (or before
        any later write of this connection, or its close).
        """
        if sum(map(len, payload)) >= COALESCE:
            return False
        if not self.is_open:
            self._raise_error()
        self.owe(0, owes)
        # What plan_writes() makes of chunks this small: one write of them all.
        data = payload[0] if len(payload) == 1 else b"".join(payload)
        if data:
            # Written once the loop has seen to every connection with replies in: the
            # writes of several connections then go out back to back, and a server
            # process that sleeps between them is woken once for all (on a 2-core
            # machine that wake-up is a tenth of a sender's CPU).
            if not self._deferred:
                self._loop.call_soon(self._flush)
            self._deferred.append(data)
        return True

    def complete(self, count: int) -> bool:
        """Return True when the next ``count`` replies are here (or a 421 ends them)."""
        replies = self._replies
        return len(replies) >= count or any(r.code == CLOSING for r in replies)

    def take(self, count: int) -> list[SMTPReply]:
        """Return the next ``count`` replies, which :meth:`complete` says are here."""
        if not self.is_open:
            self._raise_error()
        replies = self._replies
        out: list[SMTPReply] = []
        while len(out) < count and replies:
            reply = replies.popleft()
            out.append(reply)
            if reply.code == CLOSING:
                return out
        if len(out) < count:
            self._raise_error()
        return out

    def park(self, count: int, timeout: float | None, callback: Callable[[], None]) -> None:
        """Call ``callback`` once ``count`` replies are here, the connection failed, or
        ``timeout`` seconds passed without them (:attr:`expired` says so then)."""
        self._want, self._on_replies, self._timeout = count, callback, timeout
        if timeout is None:
            return
        self._since = self._loop.time()
        if self._watchdog is None:
            # One timer for many waits: when it fires it looks at the wait under way.
            self._watchdog = self._loop.call_at(self._since + timeout, self._watch)

    def unpark(self) -> None:
        """Forget the callback of :meth:`park` (the batch was interrupted)."""
        self._on_replies = None

    def _watch(self) -> None:
        self._watchdog = None
        callback, timeout = self._on_replies, self._timeout
        if callback is None or timeout is None:
            return
        due = self._since + timeout
        if self._loop.time() < due:
            self._watchdog = self._loop.call_at(due, self._watch)
            return
        self._on_replies = None
        self.expired = timeout
        callback()

    def abort(self) -> None:
        """Close the connection at once."""
        self._fail("Connection closed", None)
        self.transport.abort()

    async def close(self, timeout: float) -> None:
        """Close the connection, waiting up to ``timeout`` seconds for it to end."""
        self._flush()
        self.transport.close()
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(self.closed)
        except TimeoutError:
            self.transport.abort()


#: What :meth:`_Pump.advance` returns while the batch waits for replies in callbacks.
_PARKED: Any = object()


class _Pump:
    """Carries out :func:`~.batch.schedule`'s requests without a task switch where it can.

    :meth:`advance` answers the scheduler until a request needs the task
    (it returns that request), the batch waits for replies (it returns
    :data:`_PARKED`: the reader calls back as they arrive and the
    scheduler goes on from there) or the batch is over (None). Each I/O
    error is thrown into the scheduler as the coroutine path would throw
    it, with the connection aborted as :meth:`_ReplyReader.exchange` does.
    """

    def __init__(self, driver: AsyncDriver, requests: Generator[Any, object, None]) -> None:
        self.driver = driver
        self.requests = requests
        self.errors = (OSError, import_aiosmtplib().SMTPException)
        self._count = 0  # the replies a parked read waits for
        self._future: asyncio.Future[Any] | None = None

    def advance(self, value: object, error: BaseException | None) -> Any:
        """Answer the scheduler with ``value`` (or throw ``error``) and go on."""
        requests, driver, errors = self.requests, self.driver, self.errors
        while True:
            try:
                request = requests.send(value) if error is None else requests.throw(error)
            except StopIteration:
                return None
            value, error = None, None
            if isinstance(request, Write):
                reader = driver.link
                if reader is None:
                    return request
                try:
                    if not reader.write_now(request.payload, request.owes):
                        return request  # a large write: the task waits for room
                except errors as exc:
                    reader.abort()
                    error = exc
            elif isinstance(request, Read):
                reader = driver.link
                if reader is not None:
                    reader.owe(request.count, 0)
                    if not reader.complete(request.count) and reader.is_open:
                        self._count = request.count
                        reader.park(request.count, driver.settings.timeout, self._woken)
                        return _PARKED
                value, error = self._take(reader, request.count)
            else:
                return request

    async def parked(self) -> Any:
        """Wait while the batch goes on in callbacks; return what the task must do next."""
        future = self._future = asyncio.get_running_loop().create_future()
        try:
            return await future
        except BaseException:
            # Interrupted (cancelled): what is owed is unknown, so the connection is done.
            reader = self.driver.link
            if reader is not None:
                reader.unpark()
                reader.abort()
            raise
        finally:
            self._future = None

    def _take(
        self, reader: _ReplyReader | None, count: int, *, expired: bool = False
    ) -> tuple[object, BaseException | None]:
        """Return (the next ``count`` replies, None), or (None, the I/O error) with the
        connection aborted; ``expired``: the wait for them ran out of time."""
        try:
            if reader is None:
                raise smtplib.SMTPServerDisconnected("not connected")
            if expired:
                raise TimeoutError(f"no complete reply within {reader.expired}s")
            return reader.take(count), None
        except self.errors as exc:
            if reader is not None:
                reader.abort()
            return None, exc

    def _woken(self) -> None:
        """The replies a parked read waits for are here (or the connection failed)."""
        reader = self.driver.link
        expired = reader is not None and reader.expired is not None
        value, error = self._take(reader, self._count, expired=expired)
        future = self._future
        try:
            request = self.advance(value, error)
        except BaseException as exc:  # noqa: BLE001 - raised in the task, not in a callback
            if future is not None and not future.done():
                future.set_exception(exc)
            return
        if request is not _PARKED and future is not None and not future.done():
            future.set_result(request)


def _expire(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(False)


def _set_nodelay(transport: object, on: bool) -> None:
    """Set TCP_NODELAY on the socket under ``transport`` (nothing for a non-TCP one)."""
    get_extra_info = getattr(transport, "get_extra_info", None)
    sock = get_extra_info("socket") if get_extra_info is not None else None
    if sock is None:
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, int(on))
    except OSError:  # pragma: no cover - not a TCP socket
        pass
