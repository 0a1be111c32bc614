"""Bytes on the wire: the one reply parser and the one write planner.

Both SMTP drivers (:mod:`.sync` and :mod:`.aio`) feed every byte they
receive to a :class:`ReplyParser` and write every payload as
:func:`plan_writes` groups it, so the security limits and the write pattern
are the same for both.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

from ..status import SMTPReply

__all__ = ["COALESCE", "MAX_LINE", "MAX_REPLY", "ReplyLimitError", "ReplyParser", "plan_writes"]

#: Longest reply line accepted, line break included (smtplib's ``_MAXLINE``).
MAX_LINE = 8192
#: Most reply data held at once: unparsed bytes plus the lines of an unfinished reply.
MAX_REPLY = 1 << 20
#: Chunks smaller than this are joined into one write, up to this size.
COALESCE = 64 * 1024


class ReplyLimitError(ValueError):
    """The server sent what no SMTP server sends (a line or a reply over the limits).

    ``code`` is 500 and ``text`` smtplib's wording, so the drivers raise it as
    smtplib would (``SMTPResponseException(500, "Line too long.")``).
    """

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.code = 500
        self.text = text


class ReplyParser:
    """Turn received bytes into :class:`~amsdal_mail.status.SMTPReply` objects.

    Feed it whatever arrives (any split: a byte at a time, several replies in
    one segment); complete replies queue up in order and :meth:`pop` hands
    them out. A multi-line reply (``250-...`` lines, then ``250 ...``) is one
    reply, its lines' texts joined by ``\\n``. A line whose code is not three
    digits ends its reply with code -1, as in :mod:`smtplib`.

    Limits: a line longer than :data:`MAX_LINE` (with its line break), or more
    than :data:`MAX_REPLY` bytes of unfinished reply data, raise
    :class:`ReplyLimitError`; the parser is then unusable.
    """

    __slots__ = ("_buffer", "_lines", "_size", "replies")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._lines: list[bytes] = []  # texts of the unfinished reply's lines
        self._size = 0  # bytes held in _lines
        #: Complete replies not yet taken, oldest first.
        self.replies: deque[SMTPReply] = deque()

    def feed(self, data: bytes) -> None:
        """Parse ``data`` (appended to what came before); queue every complete reply.

        Raises :class:`ReplyLimitError` when a limit is exceeded.
        """
        buffer = self._buffer
        if not buffer and data.endswith(b"\n"):
            # The usual case: whole lines, nothing held back. No copy into the buffer.
            lines = data.split(b"\n")
        else:
            buffer += data
            end = buffer.rfind(b"\n") + 1
            # Split once per segment, not once per line: replies often come in bulk.
            lines = bytes(buffer[:end]).split(b"\n") if end else [b""]
            del buffer[:end]
        lines.pop()  # the empty text after the last line break
        replies = self.replies
        for line in lines:
            if len(line) >= MAX_LINE:  # over MAX_LINE with its line break
                raise ReplyLimitError("Line too long.")
            text = line[4:].strip(b" \t\r\n")
            try:
                code = int(line[:3])
            except ValueError:
                code = -1  # not a reply line: it ends the reply, as in smtplib
            else:
                if line[3:4] == b"-":
                    self._lines.append(text)  # a multi-line reply goes on
                    self._size += len(line) + 1
                    continue
            if self._lines:
                self._lines.append(text)
                text = b"\n".join(self._lines)
                self._lines, self._size = [], 0
            replies.append(SMTPReply(code, text.decode("utf-8", "replace")))
        if len(buffer) >= MAX_LINE:
            raise ReplyLimitError("Line too long.")
        if len(buffer) + self._size > MAX_REPLY:
            raise ReplyLimitError("Reply too long.")

    def pop(self) -> SMTPReply | None:
        """Return the oldest complete reply not yet taken, or None."""
        return self.replies.popleft() if self.replies else None

    def reset(self) -> None:
        """Discard everything received so far, parsed or not.

        Called once TLS is established: nothing the server (or an attacker on
        the path) sent in plain text may pose as a reply under TLS.
        """
        self._buffer.clear()
        self._lines, self._size = [], 0
        self.replies.clear()


def plan_writes(chunks: list[bytes]) -> Iterator[bytes]:
    """Yield the writes for ``chunks``: small ones joined up to :data:`COALESCE`, large ones as is.

    A command, or a message's many small header and line chunks, goes out
    in one write (one TLS record, one segment where it fits); a large
    attachment chunk is passed through without being copied. Empty chunks
    are skipped; the order of the bytes is kept.
    """
    pending: list[bytes] = []
    size = 0
    for chunk in chunks:
        if len(chunk) >= COALESCE:
            if pending:
                yield pending[0] if len(pending) == 1 else b"".join(pending)
                pending, size = [], 0
            # A Base64Slice is encoded here, one at a time, as it is written.
            yield chunk if isinstance(chunk, bytes) else bytes(chunk)
            continue
        if not chunk:
            continue
        pending.append(chunk)
        size += len(chunk)
        if size >= COALESCE:
            yield b"".join(pending)
            pending, size = [], 0
    if pending:
        yield pending[0] if len(pending) == 1 else b"".join(pending)
