"""A misbehaving SMTP server for fault and security tests, on raw asyncio.

:class:`FaultyServer` listens on 127.0.0.1 (an ephemeral port), runs its own
event loop in a background thread, and speaks enough ESMTP for a real client:
EHLO with chosen extensions (PIPELINING, SIZE, SMTPUTF8, 8BITMIME, STARTTLS,
AUTH PLAIN/LOGIN), MAIL, RCPT, DATA, RSET, NOOP, QUIT. Commands may arrive
pipelined, several in one packet.

What it does wrong is chosen with a :class:`Faults` object (every field
combinable): drop the connection at chosen points, stall, trickle the
greeting, answer 421 / 4xx / 5xx where told, greylist, limit recipients per
transaction, close idle connections, break or refuse STARTTLS, require AUTH,
hang up after too many errors as Postfix does (``smtpd_hard_error_limit``).

It records every session (the command lines, in order, each with whether it
came over TLS), every AUTH attempt, and every DATA phase: the raw bytes as
they came over the wire (dot-stuffing and the final ``.<CRLF>`` included)
beside the unstuffed message. End of data is recognised only as
``<CRLF>.<CRLF>``, as a strict server does, so a client that ends the data
any other way is caught by the raw record.

Every wait is bounded: a session that hears nothing for ``Faults.read_timeout``
seconds is closed, stalls are plain sleeps that ``stop()`` cancels, and
``start()`` / ``stop()`` give up after a few seconds.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import random
import re
import ssl
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal

__all__ = ["Attempt", "Faults", "FaultyServer", "Session"]

HOSTNAME = "faulty.test"
_WAIT = 5.0  # bound on starting / stopping the server and on TLS handshakes
_MAX_LINE = 1 << 20

StarttlsMode = Literal["none", "offer", "require"]
DropPoint = Literal["command", "mid_data", "before_reply", "after_reply"]
Outcome = Literal["accepted", "dropped_before_reply", "lost_mid_data", "refused", "closed_421"]


@dataclass
class Faults:
    """How the server misbehaves. Every field is independent; the defaults behave well."""

    # -- what EHLO offers --------------------------------------------------------------
    pipelining: bool = True
    size: int | None = None  #: announce ``SIZE n`` and refuse larger MAIL SIZE= / data
    smtputf8: bool = True
    eightbitmime: bool = True
    starttls: StarttlsMode = "none"  #: not offered / offered / offered and required
    tls_context: ssl.SSLContext | None = None  #: server side of STARTTLS
    starttls_reply: str | None = None  #: answer STARTTLS with this (e.g. 454) and stay plain
    starttls_handshake_fails: bool = False  #: say 220, then send junk instead of a handshake
    auth: dict[str, str] | None = None  #: offer AUTH PLAIN LOGIN and require it before MAIL
    # -- connection level -------------------------------------------------------------
    greeting: str = f"220 {HOSTNAME} ESMTP faulty"
    greeting_stall: float = 0.0  #: wait this long before greeting
    greeting_trickle: float = 0.0  #: send the greeting one byte at a time, this far apart
    refuse_connections: int = 0  #: the first n connections get 421 instead of a greeting
    idle_close: float | None = None  #: after this many idle seconds say 421 and close
    idle_close_silently: bool = False  #: ... or close without a word
    close_after_each_message: bool = False  #: close after the reply to each message's data
    drop_after_messages: int | None = None  #: on each connection, hang up after n messages
    read_timeout: float = 15.0  #: close a session that sends nothing for this long
    # -- per message (numbered 1, 2, ... over the server's life, at the DATA command) -
    drop_mid_data: Collection[int] = ()  #: hang up after the headers of the data
    drop_before_reply: Collection[int] = ()  #: store the message, hang up before the reply
    reply_421_after_data: Collection[int] = ()  #: answer the data with 421 and close
    stall_after_data: float = 0.0  #: wait this long before answering the data
    #: store the message, then never reply: wait until the client is gone (killed)
    hold_after_data: Collection[int] = ()
    stall_before: dict[str, float] = field(default_factory=dict)  #: verb -> wait before reply
    # -- replies ----------------------------------------------------------------------
    greylist: int = 0  #: refuse each new sender/recipient this many times first...
    greylist_at: Literal["mail", "rcpt", "data"] = "rcpt"  #: ... at this command
    greylist_reply: str = "451 4.7.1 Greylisted, try again later"
    rcpt_limit: int | None = None  #: 452 for every RCPT after the first k of a transaction
    #: Postfix's smtpd_hard_error_limit: after this many 4xx/5xx replies in a session
    #: (counted from the last delivered message), answer the next command with 421, close.
    hard_error_limit: int | None = None
    rcpt_replies: dict[str, str] = field(default_factory=dict)  #: address -> reply
    mail_reply: str | None = None  #: refuse every MAIL FROM with this
    data_reply: str | None = None  #: refuse every message's data with this
    # -- random faults for load tests --------------------------------------------------
    random_drop: float = 0.0  #: chance of a hang-up at each point in ``drop_points``
    drop_points: Collection[DropPoint] = ("command", "mid_data", "before_reply", "after_reply")
    seed: int = 0


@dataclass
class Command:
    """One command line as the server received it."""

    line: str
    tls: bool


@dataclass
class Session:
    """One TCP connection."""

    id: int
    commands: list[Command] = field(default_factory=list)
    tls: bool = False
    auth_user: str | None = None
    ended: str = ""  #: why the server ended it ("quit", "dropped: ...", "timeout", ...)

    def verbs(self, *, tls: bool | None = None) -> list[str]:
        """Return the command verbs in order (only those with that TLS state if given)."""
        return [
            c.line.split(" ", 1)[0].split(":", 1)[0].upper()
            for c in self.commands
            if tls is None or c.tls == tls
        ]


@dataclass
class Attempt:
    """One DATA phase: what came over the wire and what the server made of it."""

    number: int
    session_id: int
    mail_from: str
    mail_options: list[str]
    rcpt_tos: list[str]
    raw: bytes  #: exactly the bytes after the 354, up to and including the final .CRLF
    data: bytes  #: the message: raw without the final .CRLF, dot-unstuffed
    tls: bool
    outcome: Outcome = "accepted"

    @property
    def stored(self) -> bool:
        """Return True when the server kept the message (whether or not it replied)."""
        return self.outcome in ("accepted", "dropped_before_reply")

    def header(self, name: str) -> str | None:
        """Return the first value of header ``name`` in the data (unfolded), or None."""
        head = self.data.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
        match = re.search(
            rf"^{re.escape(name)}:[ \t]*(.*(?:\r\n[ \t].*)*)", head, re.IGNORECASE | re.MULTILINE
        )
        return None if match is None else re.sub(r"\r\n[ \t]", " ", match.group(1)).strip()


class _Drop(Exception):
    """Hang up at once (abort the transport, no reply)."""


class _Close(Exception):
    """End the session gracefully (after flushing what was written)."""


def unstuff(raw: bytes) -> bytes:
    """Return the message in raw DATA bytes: without the final .CRLF, dot-unstuffed."""
    body = raw[:-3] if raw.endswith(b".\r\n") else raw
    lines = body.split(b"\r\n")
    return b"\r\n".join(line[1:] if line.startswith(b".") else line for line in lines)


class FaultyServer:
    """An SMTP server on a free local port that misbehaves as ``faults`` say.

    Use it as a context manager or call :meth:`start` / :meth:`stop`. After a
    client is done, read :attr:`sessions`, :attr:`attempts`, :attr:`messages`
    (the attempts the server stored) and :attr:`auth_attempts`.
    """

    def __init__(self, faults: Faults | None = None, *, port: int = 0) -> None:
        self.faults = faults or Faults()
        self.host = "127.0.0.1"
        self.port = port  #: 0: an ephemeral port, chosen by start()
        self.sessions: list[Session] = []
        self.attempts: list[Attempt] = []
        #: (username, password received over TLS?) for every AUTH exchange
        self.auth_attempts: list[tuple[str, bool]] = []
        self._rng = random.Random(self.faults.seed)
        self._greylisted: dict[tuple[str, ...], int] = {}
        self._numbers = 0
        self._changed = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> FaultyServer:
        """Listen on 127.0.0.1 (``port``, or an ephemeral one) and return ``self``."""
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="faulty-smtpd", daemon=True)
        thread.start()
        self._loop, self._thread = loop, thread
        future = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, self.host, self.port, limit=_MAX_LINE), loop
        )
        self._server = future.result(_WAIT)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        """Close the listener and every session, then end the loop and its thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        self._loop = self._thread = None
        with contextlib.suppress(TimeoutError, RuntimeError):
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(_WAIT)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(_WAIT)
        if not thread.is_alive():
            loop.close()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=_WAIT)

    def __enter__(self) -> FaultyServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<FaultyServer {self.host}:{self.port}>"

    # -- observations ------------------------------------------------------------------

    @property
    def messages(self) -> list[Attempt]:
        """Return the DATA attempts the server stored, in order."""
        with self._changed:
            return [a for a in self.attempts if a.stored]

    @property
    def connections(self) -> int:
        """Return the number of TCP connections accepted so far."""
        with self._changed:
            return len(self.sessions)

    def wait_until(self, predicate: Callable[[FaultyServer], bool], timeout: float = 5.0) -> None:
        """Wait until ``predicate(self)`` holds, checked on every change; fail after ``timeout``."""
        with self._changed:
            if not self._changed.wait_for(lambda: predicate(self), timeout):
                raise AssertionError(f"{self!r}: condition not met within {timeout}s")

    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()

    # -- one session -------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        with self._changed:
            session = Session(id=len(self.sessions) + 1)
            self.sessions.append(session)
            self._changed.notify_all()
        try:
            await _Conversation(self, session, reader, writer).run()
            session.ended = session.ended or "closed"
            writer.close()
        except _Close:
            session.ended = session.ended or "closed"
            writer.close()
        except _Drop as drop:
            session.ended = f"dropped: {drop}"
            writer.transport.abort()
        except TimeoutError:
            session.ended = "timeout"
            writer.transport.abort()
        except (OSError, ssl.SSLError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as e:
            session.ended = f"error: {type(e).__name__}: {e}"
            writer.transport.abort()
        except asyncio.CancelledError:
            session.ended = session.ended or "cancelled"
            writer.transport.abort()
        finally:
            self._tasks.discard(task)
            self._notify()

    def _chance(self, point: DropPoint) -> bool:
        """Return True when a random drop is due at ``point``."""
        f = self.faults
        return f.random_drop > 0 and point in f.drop_points and self._rng.random() < f.random_drop

    def _next_number(self) -> int:
        with self._changed:
            self._numbers += 1
            return self._numbers

    def _greylist(self, *key: str) -> bool:
        """Return True when this key must still be refused (counting the refusal)."""
        seen = self._greylisted.get(key, 0)
        if seen < self.faults.greylist:
            self._greylisted[key] = seen + 1
            return True
        return False

    def _record(self, attempt: Attempt) -> None:
        with self._changed:
            self.attempts.append(attempt)
            self._changed.notify_all()


class _Conversation:
    """The command loop of one session."""

    def __init__(
        self,
        server: FaultyServer,
        session: Session,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.server = server
        self.faults = server.faults
        self.session = session
        self.reader = reader
        self.writer = writer
        self.greeted = False
        self.authenticated = False
        self.mail_from: str | None = None
        self.mail_options: list[str] = []
        self.rcpt_tos: list[str] = []
        self.rcpt_count = 0
        self.messages_here = 0
        self.errors = 0  # 4xx/5xx replies since the last delivered message

    async def reply(self, *lines: str) -> None:
        """Write a (multi-line) reply: each line is ``"ccc text"``."""
        out = []
        for index, line in enumerate(lines):
            sep = " " if index == len(lines) - 1 else "-"
            out.append(f"{line[:3]}{sep}{line[4:]}\r\n")
        if lines and lines[-1][:1] in ("4", "5"):
            self.errors += 1
        self.writer.write("".join(out).encode("utf-8"))
        await self.writer.drain()

    async def readline(self) -> bytes:
        """Return the next line (up to LF); an idle connection may be closed here."""
        f = self.faults
        idle = f.idle_close if f.idle_close is not None and self.greeted else None
        limit = f.read_timeout if idle is None else min(idle, f.read_timeout)
        try:
            line = await asyncio.wait_for(self.reader.readuntil(b"\n"), limit)
        except TimeoutError:
            if idle is not None and limit == idle:
                self.session.ended = "idle timeout"
                if not f.idle_close_silently:
                    await self.reply("421 4.4.2 Idle for too long, closing connection")
                raise _Close from None
            raise
        return line

    async def run(self) -> None:
        f = self.faults
        if self.session.id <= f.refuse_connections:
            await self.reply("421 4.3.2 Service not available, try again later")
            raise _Close
        if f.greeting_stall:
            await asyncio.sleep(f.greeting_stall)
        greeting = (f.greeting + "\r\n").encode()
        if f.greeting_trickle:
            for byte in greeting:
                self.writer.write(bytes([byte]))
                await self.writer.drain()
                await asyncio.sleep(f.greeting_trickle)
        else:
            self.writer.write(greeting)
            await self.writer.drain()
        self.greeted = True
        while True:
            raw = await self.readline()
            line = raw.rstrip(b"\r\n").decode("utf-8", "replace")
            self.session.commands.append(Command(line, self.session.tls))
            self.server._notify()
            if line[:10].upper() == "MAIL FROM:":
                verb, arg = "MAIL_FROM", line[10:]
            elif line[:8].upper() == "RCPT TO:":
                verb, arg = "RCPT_TO", line[8:]
            else:
                verb, _, arg = line.partition(" ")
            limit = f.hard_error_limit
            if limit is not None and self.errors >= limit:
                # What Postfix's smtpd does once a client made too many errors.
                self.session.ended = "too many errors"
                await self.reply(f"421 4.7.0 {HOSTNAME} Error: too many errors")
                raise _Close
            handler = getattr(self, "smtp_" + verb.upper(), None)
            stall = f.stall_before.get(verb.upper().replace("_", " "))
            if stall:
                await asyncio.sleep(stall)
            if handler is None:
                await self.reply("500 5.5.2 Command not recognized")
                continue
            await handler(arg.strip())

    # -- commands ----------------------------------------------------------------------

    async def smtp_EHLO(self, arg: str) -> None:
        f = self.faults
        self.reset()
        lines = [f"250 {HOSTNAME} greets {arg or 'you'}"]
        if f.pipelining:
            lines.append("250 PIPELINING")
        if f.size is not None:
            lines.append(f"250 SIZE {f.size}")
        if f.eightbitmime:
            lines.append("250 8BITMIME")
        if f.smtputf8:
            lines.append("250 SMTPUTF8")
        if f.starttls != "none" and not self.session.tls:
            lines.append("250 STARTTLS")
        if f.auth is not None:
            lines.append("250 AUTH PLAIN LOGIN")
        await self.reply(*lines)

    async def smtp_HELO(self, arg: str) -> None:
        self.reset()
        await self.reply(f"250 {HOSTNAME}")

    async def smtp_NOOP(self, arg: str) -> None:
        await self.reply("250 2.0.0 OK")

    async def smtp_RSET(self, arg: str) -> None:
        self.reset()
        await self.reply("250 2.0.0 OK")

    async def smtp_QUIT(self, arg: str) -> None:
        self.session.ended = "quit"
        await self.reply("221 2.0.0 Bye")
        raise _Close

    async def smtp_STARTTLS(self, arg: str) -> None:
        f = self.faults
        if f.starttls == "none" or self.session.tls:
            await self.reply("502 5.5.1 STARTTLS not offered")
            return
        if f.starttls_reply is not None:
            await self.reply(f.starttls_reply)
            return
        await self.reply("220 2.0.0 Ready to start TLS")
        if f.starttls_handshake_fails:
            self.writer.write(b"this is not a TLS handshake\r\n" * 4)
            await self.writer.drain()
            raise _Drop("STARTTLS handshake sabotaged")
        assert f.tls_context is not None, "starttls needs Faults.tls_context"
        # Anything the client sent before the handshake must not count after it.
        if self.reader._buffer:  # type: ignore[attr-defined]
            raise _Drop("plain text after STARTTLS (injection attempt)")
        await self.writer.start_tls(f.tls_context, ssl_handshake_timeout=_WAIT)
        self.session.tls = True
        self.reset()

    async def smtp_AUTH(self, arg: str) -> None:
        f = self.faults
        if f.auth is None:
            await self.reply("502 5.5.1 AUTH not offered")
            return
        mechanism, _, initial = arg.partition(" ")
        try:
            if mechanism.upper() == "PLAIN":
                if not initial:
                    await self.reply("334 ")
                    initial = (await self.readline()).strip().decode()
                _, user, password = base64.b64decode(initial).decode().split("\0")
            elif mechanism.upper() == "LOGIN":
                if initial:
                    user = base64.b64decode(initial).decode()
                else:
                    await self.reply("334 VXNlcm5hbWU6")
                    user = base64.b64decode((await self.readline()).strip()).decode()
                await self.reply("334 UGFzc3dvcmQ6")
                password = base64.b64decode((await self.readline()).strip()).decode()
            else:
                await self.reply("504 5.5.4 Unrecognized authentication type")
                return
        except (ValueError, binascii.Error):
            await self.reply("501 5.5.2 Cannot decode response")
            return
        with self.server._changed:
            self.server.auth_attempts.append((user, self.session.tls))
        if f.auth.get(user) == password:
            self.authenticated = True
            self.session.auth_user = user
            await self.reply("235 2.7.0 Authentication successful")
        else:
            await self.reply("535 5.7.8 Authentication credentials invalid")

    def refusal(self) -> str | None:
        """Return the reply refusing MAIL/RCPT/DATA before TLS or AUTH, if one is due."""
        if self.faults.starttls == "require" and not self.session.tls:
            return "530 5.7.0 Must issue a STARTTLS command first"
        if self.faults.auth is not None and not self.authenticated:
            return "530 5.7.0 Authentication required"
        return None

    async def smtp_MAIL_FROM(self, arg: str) -> None:
        f = self.faults
        if self.server._chance("command"):
            raise _Drop("random drop at MAIL")
        if f.drop_after_messages is not None and self.messages_here >= f.drop_after_messages:
            raise _Drop(f"after {self.messages_here} messages")
        refusal = self.refusal()
        if refusal is not None:
            await self.reply(refusal)
            return
        if self.mail_from is not None:
            await self.reply("503 5.5.1 Nested MAIL command")
            return
        address, params = _split_path(arg)
        if address is None:
            await self.reply("501 5.1.7 Bad sender address syntax")
            return
        if f.mail_reply is not None:
            await self.reply(f.mail_reply)
            return
        upper = [p.upper() for p in params]
        if not address.isascii() and "SMTPUTF8" not in upper:
            await self.reply("553 5.6.7 Non-ASCII address needs SMTPUTF8")
            return
        declared = next((int(p[5:]) for p in upper if p.startswith("SIZE=")), None)
        if f.size is not None and declared is not None and declared > f.size:
            await self.reply("552 5.3.4 Message size exceeds fixed limit")
            return
        if f.greylist_at == "mail" and self.server._greylist("mail", address):
            await self.reply(f.greylist_reply)
            return
        self.mail_from, self.mail_options = address, upper
        await self.reply("250 2.1.0 Sender OK")

    async def smtp_RCPT_TO(self, arg: str) -> None:
        f = self.faults
        refusal = self.refusal()
        if refusal is not None:
            await self.reply(refusal)
            return
        if self.mail_from is None:
            await self.reply("503 5.5.1 Need MAIL before RCPT")
            return
        address, _ = _split_path(arg)
        if not address:
            await self.reply("501 5.1.3 Bad recipient address syntax")
            return
        if not address.isascii() and "SMTPUTF8" not in self.mail_options:
            await self.reply("553 5.6.7 Non-ASCII address needs SMTPUTF8")
            return
        self.rcpt_count += 1
        if f.rcpt_limit is not None and self.rcpt_count > f.rcpt_limit:
            await self.reply("452 4.5.3 Too many recipients")
            return
        reply = f.rcpt_replies.get(address.lower())
        if reply is not None:
            await self.reply(reply)
            return
        if f.greylist_at == "rcpt" and self.server._greylist("rcpt", self.mail_from, address):
            await self.reply(f.greylist_reply)
            return
        self.rcpt_tos.append(address)
        await self.reply("250 2.1.5 Recipient OK")

    async def smtp_DATA(self, arg: str) -> None:
        f = self.faults
        refusal = self.refusal()
        if refusal is not None:
            await self.reply(refusal)
            return
        if self.mail_from is None:
            await self.reply("503 5.5.1 Need MAIL before DATA")
            return
        if not self.rcpt_tos:
            await self.reply("554 5.5.1 No valid recipients")
            return
        key = ("data", self.mail_from, *sorted(self.rcpt_tos))
        if f.greylist_at == "data" and self.server._greylist(*key):
            await self.reply(f.greylist_reply)
            self.reset()
            return
        number = self.server._next_number()
        await self.reply("354 End data with <CR><LF>.<CR><LF>")
        attempt = Attempt(
            number=number,
            session_id=self.session.id,
            mail_from=self.mail_from,
            mail_options=self.mail_options,
            rcpt_tos=list(self.rcpt_tos),
            raw=b"",
            data=b"",
            tls=self.session.tls,
        )
        self.reset()
        raw = bytearray()
        while not (b"\r\n" + raw).endswith(b"\r\n.\r\n"):
            line = await self.readline()
            raw += line
            if line == b"\r\n" and (number in f.drop_mid_data or self.server._chance("mid_data")):
                # The headers are in, the body is not.
                attempt.raw, attempt.data = bytes(raw), unstuff(bytes(raw))
                attempt.outcome = "lost_mid_data"
                self.server._record(attempt)
                raise _Drop(f"in the middle of message {number}'s data")
        attempt.raw, attempt.data = bytes(raw), unstuff(bytes(raw))
        if f.stall_after_data:
            await asyncio.sleep(f.stall_after_data)
        if number in f.hold_after_data:
            attempt.outcome = "dropped_before_reply"
            self.server._record(attempt)
            await self.reader.read()  # until the client's end closes (its process ended)
            raise _Drop(f"the client went away while message {number}'s reply was held")
        if number in f.drop_before_reply or self.server._chance("before_reply"):
            # A random drop here is as likely to lose the message as to keep it.
            if number in f.drop_before_reply or self.server._rng.random() < 0.5:
                attempt.outcome = "dropped_before_reply"
            else:
                attempt.outcome = "lost_mid_data"
            self.server._record(attempt)
            raise _Drop(f"after message {number}'s data, before the reply")
        if number in f.reply_421_after_data:
            attempt.outcome = "closed_421"
            self.server._record(attempt)
            await self.reply("421 4.3.0 Shutting down, try again later")
            raise _Close
        if f.data_reply is not None:
            attempt.outcome = "refused"
            self.server._record(attempt)
            await self.reply(f.data_reply)
            return
        if f.size is not None and len(attempt.data) > f.size:
            attempt.outcome = "refused"
            self.server._record(attempt)
            await self.reply("552 5.3.4 Message size exceeds fixed limit")
            return
        self.server._record(attempt)
        self.messages_here += 1
        self.errors = 0
        await self.reply(f"250 2.0.0 Ok: queued as {number}")
        if f.close_after_each_message:
            raise _Close
        if self.server._chance("after_reply"):
            raise _Drop("random drop after the reply")

    def reset(self) -> None:
        self.mail_from = None
        self.mail_options = []
        self.rcpt_tos = []
        self.rcpt_count = 0


def _split_path(arg: str) -> tuple[str | None, list[str]]:
    """Split ``<addr> PARAM ...`` into the address and the parameters."""
    match = re.fullmatch(r"\s*<([^<>]*)>\s*(.*)", arg)
    if match is None:
        return None, []
    return match.group(1), match.group(2).split()
