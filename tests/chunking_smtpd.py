"""A small SMTP server offering CHUNKING (RFC 3030), recording the exact bytes it gets.

:class:`ChunkingServer` listens on 127.0.0.1 (an ephemeral port), one thread
per connection, and offers ``PIPELINING`` (unless ``pipelining=False``),
``CHUNKING``, ``8BITMIME`` and ``SIZE``. ``BDAT <size> [LAST]`` reads exactly
``size`` octets, whatever they are; ``DATA`` is taken too (dot-stuffing
removed). Each message is recorded as a :class:`Received` (how it came,
the declared BDAT sizes, the data) before the final reply is sent.

Addresses choose the replies: a sender containing ``mailfail`` gets 550 at
MAIL, ``bdatfail`` gets 554 for its BDAT (the data is read all the same);
a recipient containing ``refuse`` gets 550 5.1.1, ``later`` 450 4.2.0. A
BDAT with no accepted recipient is answered 503 5.5.1, its data read and
dropped, as RFC 3030 says. Replies are held while more input is waiting and
then sent in one write, as Postfix does. With ``hang_up_at=N`` the server
answers what came before message N, then hangs up as N's data ends (BDAT or DATA).
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType

__all__ = ["ChunkingServer", "Received"]


@dataclass
class Received:
    """One message the server accepted."""

    sender: str
    recipients: list[str]
    #: "BDAT" or "DATA".
    via: str
    #: The data, as received (BDAT) or with dot-stuffing removed (DATA).
    data: bytes
    #: The size of each BDAT chunk as declared.
    sizes: list[int] = field(default_factory=list)


class _Session:
    def __init__(self, server: ChunkingServer, sock: socket.socket) -> None:
        self.server = server
        self.sock = sock
        self.buffer = b""
        self.out: list[bytes] = []
        self.reset()

    def reset(self) -> None:
        self.sender: str | None = None
        self.mail_ok = False
        self.recipients: list[str] = []
        self.chunks: list[bytes] = []
        self.sizes: list[int] = []

    def reply(self, line: str) -> None:
        # Held until the input is used up, then sent in one write, as Postfix
        # does: the replies to a pipelined group arrive together.
        self.server.replies.append(line)
        self.out.append(line.encode() + b"\r\n")

    def flush(self) -> None:
        if self.out:
            if self.server.reply_delay:
                time.sleep(self.server.reply_delay)  # the replies' way back to the client
            self.sock.sendall(b"".join(self.out))
            self.out.clear()

    def _fill(self) -> bool:
        self.flush()
        if self.server.read_pause:
            time.sleep(self.server.read_pause)  # a slow reader: the client's writes back up
        data = self.sock.recv(65536)
        if not data:
            return False
        self.server.reads.append(data)
        self.buffer += data
        return True

    def line(self) -> bytes | None:
        while b"\r\n" not in self.buffer:
            if not self._fill():
                return None
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def exactly(self, size: int) -> bytes | None:
        while len(self.buffer) < size:
            if not self._fill():
                return None
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def run(self) -> None:
        self.reply("220 chunking.test ESMTP")
        while True:
            raw = self.line()
            if raw is None:
                return
            self.server.commands.append(raw)
            verb = raw.split(b" ", 1)[0].upper()
            text = raw.decode("utf-8", "replace")
            if verb in (b"EHLO", b"HELO"):
                offered = ["chunking.test"]
                if self.server.pipelining:
                    offered.append("PIPELINING")
                offered += ["CHUNKING", "8BITMIME", f"SIZE {self.server.max_size}"]
                for word in offered[:-1]:
                    self.reply("250-" + word)
                self.reply("250 " + offered[-1])
            elif verb == b"MAIL":
                self.reset()
                self.sender = text.split("<", 1)[1].split(">", 1)[0]
                self.mail_ok = "mailfail" not in self.sender
                self.reply("250 2.1.0 OK" if self.mail_ok else "550 5.7.1 sender refused")
            elif verb == b"RCPT":
                address = text.split("<", 1)[1].split(">", 1)[0]
                if not self.mail_ok:
                    self.reply("503 5.5.1 MAIL first")
                elif "refuse" in address:
                    self.reply("550 5.1.1 no such user")
                elif "later" in address:
                    self.reply("450 4.2.0 try later")
                else:
                    self.recipients.append(address)
                    self.reply("250 2.1.5 OK")
            elif verb == b"BDAT":
                if not self._bdat(raw):
                    return
            elif verb == b"DATA":
                if not self._data():
                    return
            elif verb == b"RSET":
                self.reset()
                self.reply("250 2.0.0 OK")
            elif verb == b"NOOP":
                self.reply("250 2.0.0 OK")
            elif verb == b"QUIT":
                self.reply("221 2.0.0 bye")
                self.flush()
                return
            else:
                self.reply("502 5.5.2 not implemented")

    def _bdat(self, raw: bytes) -> bool:
        words = raw.split()
        try:
            size = int(words[1])
        except (IndexError, ValueError):
            self.reply("501 5.5.4 BDAT needs a size")
            return True
        last = len(words) > 2 and words[2].upper() == b"LAST"
        data = self.exactly(size)
        if data is None:
            return False
        if not self.mail_ok or not self.recipients:
            self.reset()
            self.reply("503 5.5.1 no valid recipients")
            return True
        self.chunks.append(data)
        self.sizes.append(size)
        if not last:
            self.reply(f"250 2.0.0 {size} octets received")
            return True
        assert self.sender is not None
        self._hang_up_if_due()
        if "bdatfail" in self.sender:
            self.reset()
            self.reply("554 5.6.0 message refused")
            return True
        self.server.messages.append(
            Received(self.sender, self.recipients, "BDAT", b"".join(self.chunks), self.sizes)
        )
        self.reset()
        self.reply("250 2.0.0 queued")
        return True

    def _hang_up_if_due(self) -> None:
        """With ``hang_up_at`` at this message, whose data has just ended: go away.

        The replies to what came before go out, then the end of the stream
        (FIN, not a reset: what follows is read and dropped until the client
        closes); the message is neither stored nor answered.
        """
        if self.server.hang_up_at != len(self.server.messages) + 1:
            return
        self.server.hang_up_at = None
        self.flush()
        self.sock.shutdown(socket.SHUT_WR)
        self.sock.settimeout(10)
        while self.sock.recv(65536):
            pass
        raise OSError("the server hung up")

    def _data(self) -> bool:
        if not self.mail_ok or not self.recipients:
            self.reply("503 5.5.1 no valid recipients")
            return True
        self.reply("354 go ahead")
        lines = []
        while True:
            line = self.line()
            if line is None:
                return False
            if line == b".":
                break
            lines.append(line[1:] if line.startswith(b".") else line)
        assert self.sender is not None
        self._hang_up_if_due()
        data = b"".join(line + b"\r\n" for line in lines)
        if "bdatfail" in self.sender:
            self.reset()
            self.reply("554 5.6.0 message refused")
            return True
        self.server.messages.append(Received(self.sender, self.recipients, "DATA", data))
        self.reset()
        self.reply("250 2.0.0 queued")
        return True


class ChunkingServer:
    """The server, for a ``with`` block: ``host``, ``port``, and what it recorded."""

    def __init__(
        self,
        *,
        pipelining: bool = True,
        hang_up_at: int | None = None,
        reply_delay: float = 0.0,
        read_pause: float = 0.0,
        max_size: int = 10485760,
    ) -> None:
        self.pipelining = pipelining
        #: Seconds before each read, so that a large message fills the client's buffers.
        self.read_pause = read_pause
        #: The SIZE the server offers.
        self.max_size = max_size
        #: Seconds each write of replies waits first, as a distant server's would arrive late.
        self.reply_delay = reply_delay
        #: Hang up when message number ``hang_up_at`` ends (not stored, not answered).
        self.hang_up_at = hang_up_at
        self.host = "127.0.0.1"
        self.messages: list[Received] = []
        #: Every command line, every reply line, and the bytes of each read, in order.
        self.commands: list[bytes] = []
        self.replies: list[str] = []
        self.reads: list[bytes] = []
        self._listener = socket.socket()
        self._listener.bind((self.host, 0))
        self.port: int = self._listener.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._sessions: list[socket.socket] = []
        self._stopping = False

    def __enter__(self) -> ChunkingServer:
        self._listener.listen(8)
        accept = threading.Thread(target=self._accept, name="chunking-smtpd", daemon=True)
        accept.start()
        self._threads.append(accept)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stopping = True
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        except OSError:
            pass
        self._listener.close()
        self.hang_up()
        deadline = time.monotonic() + 5
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    @property
    def connections(self) -> int:
        """The connections accepted so far."""
        return len(self._sessions)

    def hang_up(self) -> None:
        """End every open session without a word (as a server's idle timer or a restart does)."""
        for sock in list(self._sessions):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _accept(self) -> None:
        while not self._stopping:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            self._sessions.append(sock)
            thread = threading.Thread(target=self._serve, args=(sock,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve(self, sock: socket.socket) -> None:
        with sock:
            try:
                _Session(self, sock).run()
            except OSError:
                pass
