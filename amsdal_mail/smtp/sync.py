"""The sync driver: smtplib connects and authenticates, the transactions move raw bytes.

:class:`SyncDriver` holds one connection. smtplib's :class:`smtplib.SMTP`
makes it, says EHLO, does STARTTLS and AUTH as :mod:`.handshake` decides;
every reply (the handshake's too) is read through the one
:class:`~.wire.ReplyParser`, each within ``timeout`` seconds in total.
Payloads go out with one ``sendmsg()`` gather write on a plain socket (no
copy) and as :func:`~.wire.plan_writes` coalesces them over TLS.
"""

from __future__ import annotations

import select
import smtplib
import socket
import ssl
import time
from collections.abc import Generator
from typing import Any, TypeVar

from ..exceptions import MailError
from ..status import SMTPReply
from .batch import OVERLAP_BYTES, OVERLAP_WINDOW, Batch, Read, Write, schedule
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
from .wire import ReplyLimitError, ReplyParser, plan_writes

__all__ = ["SyncDriver"]

_R = TypeVar("_R")
_IOV_MAX = 512  # buffers per sendmsg() call (Linux allows 1024)


class SyncDriver(Driver["_Connection"]):
    """Run flows over one smtplib connection, made on demand."""

    def _abort(self, link: _Connection) -> None:
        link.close()

    def quit(self) -> None:
        """Send QUIT and close; a dead connection is just dropped."""
        conn = self._release()
        if conn is not None:
            quit_link(conn)

    def link_alive(self) -> bool:
        """Return False when the server has closed the held connection (or spoke unasked)."""
        if self.owed:
            return True  # replies are on their way: the socket is readable for them
        conn = self.link
        sock = conn.sock if conn is not None else None
        if sock is None:
            return False
        try:
            readable, _, _ = select.select([sock], [], [], 0)
        except (OSError, ValueError):
            return False
        return not readable

    @staticmethod
    def check(conn: _Connection) -> bool:
        """Return True when ``conn`` still answers (NOOP); False when the server has gone."""
        try:
            conn.send_chunks([b"NOOP\r\n"])
            return conn.next_reply().code == 250
        except (OSError, smtplib.SMTPException, MailError):
            return False

    def run(self, flow: Generator[Action, object, _R], *, message: bool = False) -> _R:
        """Carry out the actions of ``flow`` until it returns; return its result.

        With ``message`` the flow sent one message: it counts against
        ``max_messages_per_connection``, and the connection is closed when
        that limit is reached. Raises the :class:`~amsdal_mail.TransportError`
        the flow gives up on.
        """
        run = FlowRun(self, flow)
        while run.action is not None:
            try:
                value = getattr(self, run.io)(run.action)
            except (OSError, smtplib.SMTPException) as exc:
                run.fail(exc)
            else:
                run.resume(value)
        if message and self.message_done():
            self.quit()
        return run.result

    def run_batch(
        self, batch: Batch[Any], *, window: int = OVERLAP_WINDOW, max_bytes: int = OVERLAP_BYTES
    ) -> None:
        """Carry out what :func:`~.batch.schedule` asks for ``batch`` on this connection.

        Several drivers may share one batch: each takes the next flow not started.
        """
        requests = schedule(self, batch, window=window, max_bytes=max_bytes)
        value: object = None
        error: BaseException | None = None
        while True:
            try:
                request = requests.send(value) if error is None else requests.throw(error)
            except StopIteration:
                return
            value, error = None, None
            try:
                if isinstance(request, Write):
                    self._connection().send_chunks(request.payload)
                elif isinstance(request, Read):
                    value = self._read(request.count)
                else:
                    value = getattr(self, request.run.io)(request.run.action)
            except (OSError, smtplib.SMTPException) as exc:
                error = exc

    def _connection(self) -> _Connection:
        conn = self.link
        if conn is None:
            raise smtplib.SMTPServerDisconnected("not connected")
        return conn

    def _read(self, count: int) -> list[SMTPReply]:
        conn = self._connection()
        replies: list[SMTPReply] = []
        for _ in range(count):
            reply = conn.next_reply()
            replies.append(reply)
            if reply.code == CLOSING:
                break
        return replies

    def do_sleep(self, action: Sleep) -> None:
        """Wait before a retry."""
        time.sleep(action.seconds)

    def do_throttle(self, action: Throttle) -> None:
        """Wait until the rate budget lets a message start."""
        while (wait := self.throttle_wait(time.monotonic())) > 0:
            time.sleep(wait)

    def do_exchange(self, action: Step) -> list[SMTPReply]:
        """Write the step's bytes and return its replies."""
        conn = self.link
        assert conn is not None  # FlowRun answers a Step without connection itself
        if action.payload:
            conn.send_chunks(action.payload)
        return self._read(action.replies)

    def do_connect(self, action: Connect) -> None:
        """Connect, say EHLO, STARTTLS and log in as the handshake policy says.

        The connection is kept only once all of that succeeded.
        """
        s = self.settings
        context = s.make_ssl_context() if s.is_encrypted else None
        local = s.local_hostname or local_hostname()
        timeout: Any = s.timeout  # None: blocking, as smtplib takes it
        conn: _Connection | None = None
        try:
            if s.use_ssl:
                conn = _SSLConnection(
                    s.host, s.port, local_hostname=local, timeout=timeout, context=context
                )
            else:
                conn = _Connection(s.host, s.port, local_hostname=local, timeout=timeout)
            conn.ehlo_or_helo_if_needed()
            if wants_starttls(s, ehlo_features(conn.esmtp_features), self.where):
                conn.starttls(context=context)
                conn.ehlo()
            features = ehlo_features(conn.esmtp_features)
            mechanism = auth_mechanism(s, features, self.where)
            if mechanism in OAUTH_MECHANISMS:
                self._oauth_login(conn, mechanism, action.refresh_token)
            elif mechanism is not None:
                conn.authenticate(mechanism, s.username or "", s.password or "")
            conn.set_nodelay()
        except BaseException:
            if conn is not None:
                conn.close()
            raise
        self.connected(conn, features)

    def _oauth_login(self, conn: _Connection, mechanism: str, force_refresh: bool) -> None:
        """Carry out :func:`~.handshake.oauth_login` over ``conn``."""
        login = oauth_login(mechanism, self.settings, self.where, force_refresh=force_refresh)
        value: object = None
        while True:
            try:
                step = login.send(value)
            except StopIteration:
                return
            if isinstance(step, FetchToken):
                value = self._token(step.force_refresh)
            else:
                conn.send_chunks([step.line])
                value = conn.next_reply()

    def _token(self, force_refresh: bool) -> str:
        """Return a token from ``oauth2_token`` (a string, or a sync provider's answer)."""
        source = self.settings.oauth2_token
        if isinstance(source, str):
            return source
        assert source is not None
        return checked_token(source(**provider_kwargs(source, force_refresh)), source)


def quit_link(conn: _Connection) -> None:
    """Say QUIT on ``conn`` and close it; a dead one is just closed."""
    try:
        conn.quit()
    except (OSError, smtplib.SMTPException, MailError):
        conn.close()


class _Connection(smtplib.SMTP):
    """smtplib.SMTP reading replies through a :class:`~.wire.ReplyParser`.

    smtplib applies ``timeout`` to each socket read, so a server that trickles
    a reply one byte at a time could hold it forever; here ``timeout`` bounds
    the whole reply. Bytes received before STARTTLS completes are discarded.
    """

    def set_nodelay(self) -> None:
        """Turn Nagle's algorithm off, once the connection is ready for mail.

        From then on every step's bytes go out in one write and the replies
        are awaited, so Nagle could only hold the tail of a large write back.
        It stays on during the handshake: there the client's TLS Finished
        and the EHLO after it would leave as two segments at once, the server
        (Postfix) answers them with two writes (its session tickets, then the
        EHLO reply), and its own Nagle holds the second until this side's
        delayed ACK, about 40 ms on Linux, on every new connection.
        """
        sock = self.sock
        if sock is None:
            return
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:  # pragma: no cover - not a TCP socket
            pass

    @property
    def parser(self) -> ReplyParser:
        """Return this connection's reply parser (made on first use: connect() reads one)."""
        parser = self.__dict__.get("_parser")
        if parser is None:
            parser = self.__dict__["_parser"] = ReplyParser()
        return parser

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
                for data in plan_writes(chunks):
                    sock.sendall(data)
            else:
                _send_gathered(sock, chunks)
        except OSError:
            self.close()
            raise smtplib.SMTPServerDisconnected("Server not connected")  # noqa: B904

    def next_reply(self) -> SMTPReply:
        """Return the next reply, read within ``timeout`` seconds.

        Raises ``TimeoutError``, ``SMTPServerDisconnected``, or
        ``SMTPResponseException`` (code 500) for a reply over the parser's limits;
        the connection is closed then.
        """
        parser = self.parser
        if parser.replies:
            return parser.replies.popleft()
        timeout = self.timeout if isinstance(self.timeout, (int, float)) else None
        started = None if timeout is None else time.monotonic()
        # The first read waits at most the socket's own timeout, which is ``timeout``:
        # only a reply that takes several reads needs the socket's timeout shortened
        # (each change of it costs system calls).
        deadline = None
        while not parser.replies:
            try:
                parser.feed(self._receive(deadline))
            except ReplyLimitError as exc:
                self.close()
                raise smtplib.SMTPResponseException(exc.code, exc.text) from None
            if started is not None:
                deadline = started + timeout
        return parser.replies.popleft()

    def _receive(self, deadline: float | None) -> bytes:
        sock = self.sock
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
            raise smtplib.SMTPServerDisconnected(f"Connection unexpectedly closed: {exc}") from None
        finally:
            if deadline is not None and self.sock is not None:
                self.sock.settimeout(self.timeout)
        if not data:
            self.close()
            raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")
        return data

    def getreply(self) -> tuple[int, bytes]:
        """Return (code, text) of the next reply, for smtplib's own commands."""
        reply = self.next_reply()
        return reply.code, reply.text.encode("utf-8")

    def starttls(self, *args: Any, **kwargs: Any) -> tuple[int, bytes]:
        """Upgrade to TLS, discarding anything the server sent before the handshake."""
        result = super().starttls(*args, **kwargs)
        self.parser.reset()
        return result

    def authenticate(self, mechanism: str, username: str, password: str) -> None:
        """Log in with ``mechanism``, one of :data:`~.handshake.MECHANISMS`.

        Raises ``SMTPAuthenticationError`` when the server refuses.
        """
        self.user, self.password = username, password
        # smtplib's own names: auth_cram_md5, auth_plain, auth_login.
        self.auth(mechanism, getattr(self, "auth_" + mechanism.lower().replace("-", "_")))


class _SSLConnection(_Connection, smtplib.SMTP_SSL):
    """Implicit-TLS connection with parser-read replies."""


def _send_gathered(sock: socket.socket, chunks: list[bytes]) -> None:
    """Send ``chunks`` with scatter/gather writes: one system call, no copy.

    A chunk that is made when written (a large attachment's base64 slice) is
    made just before it is sent, alone, so only one exists at a time.
    """
    group: list[bytes] = []
    for chunk in chunks:
        if isinstance(chunk, bytes):
            group.append(chunk)
            continue
        if group:
            _send_views(sock, group)
            group = []
        _send_views(sock, [bytes(chunk)])
    if group:
        _send_views(sock, group)


def _send_views(sock: socket.socket, chunks: list[bytes]) -> None:
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
