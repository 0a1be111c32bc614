"""SMTP backend: sync through :mod:`smtplib`, async through :mod:`aiosmtplib`.

Both twins run the same pure steps (settings, envelope, rendering, the
transaction in :mod:`amsdal_mail.protocol`, reply-to-status mapping); they
differ only in how they connect and how they write bytes and read replies.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import ipaddress
import logging
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Generator, Mapping
from typing import Any, TypeVar

from ..config import SMTPSettings, resolve_smtp_settings
from ..exceptions import (
    AuthenticationError,
    ConfigurationError,
    ConnectError,
    MailTimeoutError,
    MissingDependencyError,
    NotSupportedError,
    ProtocolError,
    ServerDisconnectedError,
    TLSError,
    TransportError,
)
from ..message import EmailMessage
from ..protocol import (
    Action,
    Connect,
    Connection,
    RetryPolicy,
    Sleep,
    Step,
    advance,
    connect_flow,
    prepare_envelope,
    send_flow,
)
from ..status import SendStatus, SMTPCode, SMTPReply
from .base import BaseBackend

__all__ = ["SMTPBackend"]

logger = logging.getLogger("amsdal_mail.smtp")
_ACTIONS = (Step, Connect, Sleep)
_R = TypeVar("_R")


@functools.cache
def _local_hostname() -> str:
    """Return this host's FQDN for EHLO, looked up once per process."""
    return socket.getfqdn()


def _is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _features(raw: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in raw.items()}


def _import_aiosmtplib() -> Any:
    try:
        import aiosmtplib
    except ImportError as exc:  # pragma: no cover - exercised in the no-extras test run
        raise MissingDependencyError(
            "async SMTP sending needs aiosmtplib: pip install amsdal-mail[smtp]"
        ) from exc
    return aiosmtplib


class SMTPBackend(BaseBackend):
    """Send through an SMTP server (sync and async).

    Settings (``host``, ``port``, ``username``, ``password``, ``use_tls``,
    ``use_ssl``, ``timeout``, ``ssl_certfile``, ``ssl_keyfile``,
    ``ssl_context``, ``local_hostname``, ``allow_insecure_auth``,
    ``max_retries``, ``retry_backoff``) come from the arguments, else the
    ``AMSDAL_EMAIL_*`` environment, else the defaults; see
    :func:`amsdal_mail.config.resolve_smtp_settings`.

    Outside a ``with`` block each call opens and closes its own connection;
    inside one, a single connection serves every message.
    """

    def __init__(self, *, fail_silently: bool = False, **options: Any) -> None:
        super().__init__(fail_silently=fail_silently)
        self.settings: SMTPSettings = resolve_smtp_settings(options)
        s = self.settings
        if s.username and not s.is_encrypted and not s.allow_insecure_auth:
            if not _is_loopback(s.host):
                raise ConfigurationError(
                    f"refusing to send the password for {s.username!r} unencrypted to "
                    f"{s.host}:{s.port}; set use_tls=True (STARTTLS, port 587) or "
                    "use_ssl=True (port 465), or allow_insecure_auth=True "
                    "(AMSDAL_EMAIL_ALLOW_INSECURE_AUTH) if you really mean it"
                )
        self._policy = RetryPolicy(max_retries=s.max_retries, backoff=s.retry_backoff)
        self._connection: smtplib.SMTP | None = None
        self._used = False  # the connection has served a message
        self._lock = threading.RLock()
        self._achannel: _AsyncChannel | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.settings!r}>"

    # --- errors --------------------------------------------------------------

    def _where(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    def _translate(self, exc: BaseException) -> TransportError:
        """Return the amsdal_mail error for an smtplib/aiosmtplib/socket error."""
        error = self._translate_error(exc)
        error.__suppress_context__ = True
        return error

    def _translate_error(self, exc: BaseException) -> TransportError:
        if isinstance(exc, TransportError):
            return exc
        where = self._where()
        chain = _causes(exc)
        for cause in chain:
            if isinstance(cause, ssl.SSLError):
                return TLSError(f"TLS with {where} failed: {cause}")
        name = type(exc).__name__
        code = getattr(exc, "smtp_code", None) or getattr(exc, "code", None)
        text = getattr(exc, "smtp_error", None) or getattr(exc, "message", None) or str(exc)
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        if "Authentication" in name:
            return AuthenticationError(code or 535, text)
        if "NotSupported" in name:
            return NotSupportedError(f"{where}: {text}")
        # aiosmtplib wraps a timeout or a hang-up before the greeting in
        # SMTPConnectError, and smtplib wraps socket errors in
        # SMTPServerDisconnected: the underlying cause decides, so the twins
        # raise the same error for the same event.
        if any(isinstance(c, TimeoutError) or "Timeout" in type(c).__name__ for c in chain):
            return MailTimeoutError(
                f"timed out after {self.settings.timeout}s talking to {where}: {exc}"
            )
        if any("Disconnected" in type(c).__name__ for c in chain):
            return ServerDisconnectedError(f"{where} closed the connection: {text}")
        if isinstance(code, int) and code > 0:
            return ProtocolError(code, f"{text} (from {where})")
        return ConnectError(f"could not talk to {where}: {exc}")

    # --- sync ------------------------------------------------------------------

    def _connect(self) -> smtplib.SMTP:
        """Return a new connection with TLS and AUTH done, or raise TransportError."""
        s = self.settings
        context = s.make_ssl_context() if s.is_encrypted else None
        local = s.local_hostname or _local_hostname()
        timeout: Any = s.timeout  # None: blocking, as smtplib takes it
        conn: smtplib.SMTP | None = None
        try:
            if s.use_ssl:
                conn = _BoundedSMTPSSL(
                    s.host, s.port, local_hostname=local, timeout=timeout, context=context
                )
            else:
                conn = _BoundedSMTP(s.host, s.port, local_hostname=local, timeout=timeout)
            conn.ehlo_or_helo_if_needed()
            if s.use_tls:
                if not conn.has_extn("starttls"):
                    raise NotSupportedError(
                        f"{self._where()} does not offer STARTTLS, and use_tls is set; "
                        "not falling back to an unencrypted connection"
                    )
                conn.starttls(context=context)
                conn.ehlo()
            if s.username:
                if not conn.has_extn("auth"):
                    raise NotSupportedError(_no_auth(self._where()))
                conn.login(s.username, s.password or "")
        except (OSError, smtplib.SMTPException) as exc:
            if conn is not None:
                conn.close()
            raise self._translate(exc) from None
        return conn

    def open(self) -> bool:
        """Connect, STARTTLS and log in if needed; return True if this call connected."""
        with self._lock:
            if self._connection is not None:
                return False
            # _perform publishes the connection only once TLS and AUTH succeeded.
            self._run(connect_flow(self._policy))
            self._used = False
            return True

    def close(self) -> None:
        """Send QUIT and close; a dead connection is just dropped."""
        with self._lock:
            conn, self._connection = self._connection, None
            if conn is None:
                return
            try:
                conn.quit()
            except (OSError, smtplib.SMTPException):
                conn.close()

    def _is_open(self) -> bool:
        return self._connection is not None

    def _drop(self) -> None:
        conn, self._connection = self._connection, None
        if conn is not None:
            conn.close()

    def _perform(self, action: Action) -> object:
        """Carry out one action of a send flow on the sync connection."""
        if isinstance(action, Sleep):
            time.sleep(action.seconds)
            return None
        if isinstance(action, Connect):
            if action.fresh:
                self._drop()
            reused = self._connection is not None and self._used
            if self._connection is None:
                self._connection = self._connect()
                self._used = False
            return Connection(_features(self._connection.esmtp_features), reused)
        conn = self._connection
        if conn is None:
            raise ServerDisconnectedError(f"{self._where()}: not connected")
        self._used = True
        if action.payload:
            assert isinstance(conn, _BoundedReplies)
            conn.send_chunks(action.payload)
        replies = []
        for _ in range(action.replies):
            code, text = conn.getreply()
            replies.append(SMTPReply(code, text.decode("utf-8", "replace")))
        if any(r.code == SMTPCode.SERVICE_UNAVAILABLE for r in replies):
            self._drop()  # 421: the server is closing this connection
        return replies

    def _run(self, flow: Generator[Action, object, _R]) -> _R:
        """Carry out the actions of ``flow`` until it returns; return its result."""
        try:
            outcome = advance(flow)
            while isinstance(outcome, _ACTIONS):
                try:
                    result = self._perform(outcome)
                except (OSError, smtplib.SMTPException) as exc:
                    self._drop()
                    outcome = advance(flow, error=self._translate(exc))
                else:
                    outcome = advance(flow, result)
        except TransportError:
            self._drop()  # the exchange ended mid-way: never reuse that connection
            raise
        return outcome

    def _send(self, message: EmailMessage) -> SendStatus:
        envelope = prepare_envelope(message)
        with self._lock:
            status = self._run(send_flow(envelope, self._policy, pipelining=True))
        _log_status(envelope.keys, status)
        return status

    # --- async -----------------------------------------------------------------

    async def aopen(self) -> bool:
        """Async twin of :meth:`open`."""
        if self._achannel is not None and self._achannel.reader is not None:
            return False
        channel = _AsyncChannel(self)
        await channel.run(connect_flow(self._policy))
        self._achannel = channel
        return True

    async def aclose(self) -> None:
        """Async twin of :meth:`close`."""
        channel, self._achannel = self._achannel, None
        if channel is not None:
            await channel.quit()

    async def _asend_batch(self, batch: list[EmailMessage], concurrency: int) -> None:
        for message in batch:
            message.status = None
        queue = list(reversed(batch))
        shared = self._achannel

        async def worker(channel: _AsyncChannel, own: bool) -> None:
            try:
                while queue:
                    message = queue.pop()
                    try:
                        message.status = await channel.send(message)
                    except TransportError as exc:
                        self._failed(message, exc)
                        raise
            finally:
                if own:
                    await channel.quit()

        workers = [
            worker(shared, False)
            if i == 0 and shared is not None
            else worker(_AsyncChannel(self), True)
            for i in range(min(concurrency, len(batch)))
        ]
        results = await asyncio.gather(*workers, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result


def _no_auth(where: str) -> str:
    return (
        f"{where} does not offer AUTH, and a username is set; remove the username "
        "or use a server (or TLS mode) that offers AUTH"
    )


def _causes(exc: BaseException) -> list[BaseException]:
    """Return ``exc`` and the exceptions it was raised from or during, outermost first."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        if current.__cause__ is not None or current.__suppress_context__:
            current = current.__cause__
        else:
            current = current.__context__
    return chain


class _ReplyReader(asyncio.Protocol):
    """The protocol of an async connection once aiosmtplib has set it up.

    aiosmtplib's protocol keeps one parsed reply and drops data that arrives
    while it is unread, so it cannot take pipelined replies. Once EHLO,
    STARTTLS and AUTH are done, the channel moves the transport to this
    protocol, which queues every complete reply and hands them out in order:
    each reply still answers exactly one command. Replies are parsed as the
    sync path parses them (``_BoundedReplies.getreply``), each read within
    ``timeout`` seconds. A reply that arrives while no command awaits one
    (the server talking while the connection sits idle) answers nothing
    and is dropped; a 421 among those marks the connection as closing.
    """

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self._buffer = bytearray()
        self._lines: list[bytes] = []  # lines of a multi-line reply read so far
        self._replies: collections.deque[SMTPReply] = collections.deque()
        self._expected = 0  # replies owed to commands already written
        # Why the connection is unusable: the text, the SMTP code for an
        # invalid reply (None when the connection closed), and the cause.
        self._error: str | None = None
        self._error_code: int | None = None
        self._cause: BaseException | None = None
        self._waiter: asyncio.Future[bool] | None = None
        self._paused = False
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    # --- asyncio.Protocol ---------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        end = buffer.rfind(b"\n") + 1
        if not end:
            if len(buffer) > 1 << 20:
                self._invalid("Reply too long.")
            return
        lines = bytes(buffer[:end]).split(b"\n")
        del buffer[:end]
        lines.pop()  # the empty text after the last line break
        for line in lines:
            if len(line) >= smtplib._MAXLINE:  # type: ignore[attr-defined]
                self._invalid("Line too long.")  # over _MAXLINE with its line break
                return
            self._lines.append(line[4:].strip(b" \t\r\n"))
            try:
                code = int(line[:3])
            except ValueError:
                code = -1
            else:
                if line[3:4] == b"-":
                    continue
            text = b"\n".join(self._lines).decode("utf-8", "replace")
            self._lines = []
            self._reply(SMTPReply(code, text))
        self._wake()

    def _invalid(self, text: str) -> None:
        """Give up on a server that sends replies no SMTP server sends."""
        self._buffer.clear()
        self._fail(text, None, code=500)
        self.transport.abort()

    def _reply(self, reply: SMTPReply) -> None:
        if self._expected:
            self._expected -= 1
            self._replies.append(reply)
        elif reply.code == SMTPCode.SERVICE_UNAVAILABLE:
            self._fail(f"Connection closing: {reply}", None)
        else:
            logger.debug("ignoring an unsolicited reply: %s", reply)

    def eof_received(self) -> bool:
        self._fail("Connection unexpectedly closed", None)
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail("Connection unexpectedly closed", exc)
        self._paused = False
        self._wake()
        if not self.closed.done():
            self.closed.set_result(None)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._wake()

    # --- for the channel ------------------------------------------------------------

    def _fail(self, text: str, cause: BaseException | None, *, code: int | None = None) -> None:
        if self._error is None:
            self._error, self._error_code, self._cause = text, code, cause
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(True)

    def _raise_error(self) -> None:
        """Raise what made the connection unusable, as the sync path would raise it."""
        text = self._error or "Connection unexpectedly closed"
        error: smtplib.SMTPException
        if self._error_code is not None:
            error = smtplib.SMTPResponseException(self._error_code, text)
        else:
            error = smtplib.SMTPServerDisconnected(text)
        raise error from self._cause

    @property
    def is_open(self) -> bool:
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
        self, payload: list[bytes], replies: int, timeout: float | None
    ) -> list[SMTPReply]:
        """Write ``payload``, then return the next ``replies`` replies, each within ``timeout``.

        Large chunks are written one at a time, waiting while the transport's
        buffer is full, so a large message is never copied whole into it.
        Raises ``SMTPServerDisconnected``, ``SMTPResponseException`` or
        ``TimeoutError``; the caller drops the connection then.
        """
        if not self.is_open:
            self._raise_error()
        try:
            return await self._exchange(payload, replies, timeout)
        except BaseException:
            # Interrupted (an error, a timeout, a cancelled task): which bytes
            # went out and which replies are owed is unknown, so the
            # connection can never serve another command.
            self.abort()
            raise

    async def _exchange(
        self, payload: list[bytes], replies: int, timeout: float | None
    ) -> list[SMTPReply]:
        self._expected += replies
        # Small chunks are joined into one write; a large one is written as it
        # is, after which the buffer is let drain before the next.
        pending: list[bytes] = []
        size = 0
        for chunk in payload:
            if len(chunk) < _COALESCE:
                pending.append(chunk)
                size += len(chunk)
                if size < _COALESCE:
                    continue
                chunk = b"".join(pending)
            elif pending:
                self.transport.write(b"".join(pending))
            pending, size = [], 0
            self.transport.write(chunk)
            while self._paused and self.is_open:
                await self._wait(timeout, "room to write")
            if not self.is_open:
                self._raise_error()
        if pending:
            self.transport.write(pending[0] if len(pending) == 1 else b"".join(pending))
        out: list[SMTPReply] = []
        while len(out) < replies:
            if self._replies:
                out.append(self._replies.popleft())
            elif self._error is not None:
                self._raise_error()
            else:
                await self._wait(timeout, "complete reply")
        return out

    def abort(self) -> None:
        """Close the connection at once."""
        self._fail("Connection closed", None)
        self.transport.abort()

    async def close(self, timeout: float) -> None:
        """Close the connection, waiting up to ``timeout`` seconds for it to end."""
        self.transport.close()
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(self.closed)
        except TimeoutError:
            self.transport.abort()


def _expire(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(False)


class _AsyncChannel:
    """One async connection and the flows it runs (the async twin of the sync path).

    aiosmtplib connects, and does EHLO, STARTTLS and AUTH; the mail
    transactions then run over its transport through a :class:`_ReplyReader`,
    pipelined when the server offers PIPELINING, as on the sync path.
    """

    def __init__(self, backend: SMTPBackend) -> None:
        self.backend = backend
        self.reader: _ReplyReader | None = None
        self.features: dict[str, str] = {}
        self.used = False
        self.lock = asyncio.Lock()

    async def connect(self) -> None:
        aiosmtplib = _import_aiosmtplib()
        backend = self.backend
        s = backend.settings
        context = s.make_ssl_context() if s.is_encrypted else None
        local = s.local_hostname or await asyncio.to_thread(_local_hostname)
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
            await client.ehlo()
            if s.use_tls:
                if not client.supports_extension("starttls"):
                    raise NotSupportedError(
                        f"{backend._where()} does not offer STARTTLS, and use_tls is set; "
                        "not falling back to an unencrypted connection"
                    )
                await client.starttls(tls_context=context)
                await client.ehlo()
            if s.username:
                if not client.supports_extension("auth"):
                    raise NotSupportedError(_no_auth(backend._where()))
                await client.login(s.username, s.password or "")
            transport = client.transport
            if not isinstance(transport, asyncio.Transport) or transport.is_closing():
                raise aiosmtplib.SMTPServerDisconnected("Connection lost")
        except (OSError, aiosmtplib.SMTPException) as exc:
            client.close()
            raise backend._translate(exc) from None
        # From here on the transport is this channel's: aiosmtplib is not used again.
        reader = _ReplyReader(transport)
        transport.set_protocol(reader)
        self.reader = reader
        self.features = _features(client.esmtp_extensions)
        self.used = False

    def drop(self) -> None:
        reader, self.reader = self.reader, None
        if reader is not None:
            reader.abort()

    async def quit(self) -> None:
        reader, self.reader = self.reader, None
        if reader is None:
            return
        timeout = self.backend.settings.timeout
        try:
            if reader.is_open:
                await reader.exchange([b"QUIT\r\n"], 1, timeout)
        except Exception:  # noqa: BLE001 - QUIT on a dying connection is not an error
            reader.abort()
        await reader.close(min(timeout or 5.0, 5.0))

    async def perform(self, action: Action) -> object:
        """Carry out one action of a send flow on this connection."""
        if isinstance(action, Sleep):
            await asyncio.sleep(action.seconds)
            return None
        if isinstance(action, Connect):
            if action.fresh:
                self.drop()
            reused = self.reader is not None and self.used
            if self.reader is None:
                await self.connect()
            return Connection(self.features, reused)
        reader = self.reader
        if reader is None:
            raise ServerDisconnectedError(f"{self.backend._where()}: not connected")
        self.used = True
        replies = await reader.exchange(
            action.payload, action.replies, self.backend.settings.timeout
        )
        if any(r.code == SMTPCode.SERVICE_UNAVAILABLE for r in replies):
            self.drop()  # 421: the server is closing this connection
        return replies

    async def run(self, flow: Generator[Action, object, _R]) -> _R:
        """Carry out the actions of ``flow`` until it returns; return its result."""
        aiosmtplib = _import_aiosmtplib()
        try:
            outcome = advance(flow)
            while isinstance(outcome, _ACTIONS):
                try:
                    result = await self.perform(outcome)
                except (OSError, aiosmtplib.SMTPException) as exc:
                    self.drop()
                    outcome = advance(flow, error=self.backend._translate(exc))
                else:
                    outcome = advance(flow, result)
        except TransportError:
            self.drop()  # the exchange ended mid-way: never reuse that connection
            raise
        return outcome

    async def send(self, message: EmailMessage) -> SendStatus:
        """Send one message over this connection (reconnecting as the flow asks)."""
        envelope = prepare_envelope(message)
        async with self.lock:
            status = await self.run(send_flow(envelope, self.backend._policy, pipelining=True))
        _log_status(envelope.keys, status)
        return status


class _BoundedReplies(smtplib.SMTP):
    """smtplib.SMTP whose replies are read against a deadline.

    smtplib applies ``timeout`` to each socket read, so a server that trickles
    a reply one byte at a time can hold it forever. Here ``timeout`` bounds
    the whole reply. Bytes received before STARTTLS completes are discarded,
    so nothing sent in plain text can pose as a reply under TLS.
    """

    _buffer: bytearray

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        sock: socket.socket = super()._get_socket(host, port, timeout)  # type: ignore[misc]
        # Every step's bytes go out in one write and then the replies are
        # awaited, so Nagle's algorithm could only delay the tail of a write
        # until the server's delayed ACK (tens of milliseconds per message).
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:  # pragma: no cover - not a TCP socket
            pass
        return sock

    def send_chunks(self, chunks: list[bytes]) -> None:
        """Write ``chunks`` in as few system calls as possible, without joining large ones.

        Raises ``SMTPServerDisconnected`` (with the socket error as its
        context) and closes the connection when the write fails, as
        ``smtplib.SMTP.send`` does.
        """
        sock = self.sock
        if sock is None:
            raise smtplib.SMTPServerDisconnected("please run connect() first")
        try:
            if isinstance(sock, ssl.SSLSocket):
                _send_coalesced(sock, chunks)
            else:
                _send_gathered(sock, chunks)
        except OSError:
            self.close()
            raise smtplib.SMTPServerDisconnected("Server not connected")  # noqa: B904

    def getreply(self) -> tuple[int, bytes]:
        """Return (code, text) of the next reply, read within ``timeout`` seconds."""
        timeout = self.timeout if isinstance(self.timeout, (int, float)) else None
        deadline = None if timeout is None else time.monotonic() + timeout
        lines: list[bytes] = []
        code = -1
        while True:
            line = self._readline(deadline)
            if len(line) > smtplib._MAXLINE:  # type: ignore[attr-defined]
                self.close()
                raise smtplib.SMTPResponseException(500, "Line too long.")
            lines.append(line[4:].strip(b" \t\r\n"))
            try:
                code = int(line[:3])
            except ValueError:
                code = -1
                break
            if line[3:4] != b"-":
                break
        return code, b"\n".join(lines)

    def _readline(self, deadline: float | None) -> bytes:
        buffer = self.__dict__.setdefault("_buffer", bytearray())
        sock = self.sock
        while True:
            end = buffer.find(b"\n")
            if end != -1:
                line = bytes(buffer[: end + 1])
                del buffer[: end + 1]
                return line
            if sock is None:
                raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self.close()
                    raise TimeoutError(f"no complete reply within {self.timeout}s")
                sock.settimeout(remaining)
            try:
                data = sock.recv(65536)
            except TimeoutError:
                self.close()
                raise TimeoutError(f"no complete reply within {self.timeout}s") from None
            except OSError as exc:
                self.close()
                raise smtplib.SMTPServerDisconnected(
                    f"Connection unexpectedly closed: {exc}"
                ) from None
            finally:
                if deadline is not None and self.sock is not None:
                    self.sock.settimeout(self.timeout)
            if not data:
                self.close()
                raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")
            buffer += data
            if len(buffer) > 1 << 20:
                self.close()
                raise smtplib.SMTPResponseException(500, "Reply too long.")

    def starttls(self, *args: Any, **kwargs: Any) -> tuple[int, bytes]:
        """Upgrade to TLS, discarding anything the server sent before the handshake."""
        result = super().starttls(*args, **kwargs)
        self.__dict__.setdefault("_buffer", bytearray()).clear()
        return result


_IOV_MAX = 512  # buffers per sendmsg() call (Linux allows 1024)
_COALESCE = 64 * 1024


def _send_gathered(sock: socket.socket, chunks: list[bytes]) -> None:
    """Send ``chunks`` with scatter/gather writes: one system call, no copy."""
    views = [memoryview(c) for c in chunks if c]
    i = 0
    while i < len(views):
        sent = sock.sendmsg(views[i : i + _IOV_MAX])
        if sent <= 0:  # pragma: no cover - a blocking socket sends or raises
            raise ConnectionError("the socket accepted no data")
        while sent:
            size = views[i].nbytes
            if sent >= size:
                sent -= size
                i += 1
            else:
                views[i] = views[i][sent:]
                sent = 0


def _send_coalesced(sock: socket.socket, chunks: list[bytes]) -> None:
    """Send ``chunks`` over TLS: small ones joined into one record, large ones as they are."""
    pending: list[bytes] = []
    size = 0
    for chunk in chunks:
        if len(chunk) >= _COALESCE:
            if pending:
                sock.sendall(b"".join(pending))
                pending, size = [], 0
            sock.sendall(chunk)
            continue
        pending.append(chunk)
        size += len(chunk)
        if size >= _COALESCE:
            sock.sendall(b"".join(pending))
            pending, size = [], 0
    if pending:
        sock.sendall(b"".join(pending))


class _BoundedSMTP(_BoundedReplies):
    """Plain/STARTTLS connection with deadline-bounded replies."""


class _BoundedSMTPSSL(_BoundedReplies, smtplib.SMTP_SSL):
    """Implicit-TLS connection with deadline-bounded replies."""


def _log_status(keys: list[str], status: SendStatus) -> None:
    if logger.isEnabledFor(logging.DEBUG):
        for key in keys:
            rs = status.recipients[key]
            logger.debug("%s: %s (%s %s)", key, rs.status, rs.code, rs.response)
