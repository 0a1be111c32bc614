"""``amsdal-mail send``: one message from flags, or a batch from a JSON Lines file.

A batch line is one JSON object with the keys of the ``send`` flags:
``from``, ``to``, ``cc``, ``bcc`` (an address or a list), ``subject``,
``body`` (text), ``html`` (the HTML body itself) and ``attach`` (a path or a
list; a relative path is relative to the batch file's folder). Every line
is read and checked (:func:`read_batch`) before anything is sent: a bad line
is reported with its line number and nothing of it goes out; the good lines
are sent. The outcome is one row per recipient (:class:`ReportRow`: the
line, the recipient, its status word, the SMTP code and response), counted
per status in the summary and written to ``--report`` as JSON Lines.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final, TextIO

from ..backends.smtp import SMTPBackend
from ..exceptions import InvalidMessageError, TransportError
from ..message import Attachment, EmailMessage
from ..status import FAILED, INVALID, SENT, SendStatus

__all__ = [
    "BATCH_KEYS",
    "BadLine",
    "BatchResult",
    "Progress",
    "ReportRow",
    "build_message",
    "read_batch",
    "rows_for",
    "send_batch",
    "summary_lines",
]

#: The keys a batch line may have.
BATCH_KEYS: Final = ("from", "to", "cc", "bcc", "subject", "body", "html", "attach")
_LIST_KEYS: Final = ("to", "cc", "bcc", "attach")


@dataclass(frozen=True, slots=True)
class ReportRow:
    """One recipient's outcome: a line of the ``--report`` file."""

    line: int | None
    recipient: str | None
    status: str
    code: int | None
    response: str | None

    def as_json(self) -> str:
        """Return the row as one line of JSON."""
        return json.dumps(asdict(self), ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class BadLine:
    """A batch line that cannot be sent: where, why, and the recipients it named."""

    line: int
    error: str
    recipients: tuple[str, ...] = ()

    def rows(self) -> list[ReportRow]:
        """Return its report rows: each recipient named, ``invalid``."""
        response = f"not sent: line {self.line}: {self.error}"
        names: Sequence[str | None] = self.recipients or (None,)
        return [ReportRow(self.line, name, INVALID, None, response) for name in names]


def _strings(value: object, key: str) -> list[str]:
    """Return ``value`` (a string or a list of strings) as a list; raise naming ``key``."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return list(value)
    raise ValueError(f"{key!r} must be a string or a list of strings, not {json.dumps(value)}")


def _text(fields: Mapping[str, Any], key: str) -> str | None:
    value = fields.get(key)
    if value is None or isinstance(value, str):
        return value
    raise ValueError(f"{key!r} must be a string, not {json.dumps(value)}")


def build_message(
    fields: Mapping[str, Any], *, base_dir: Path, default_from: str | None = None
) -> EmailMessage:
    """Return the validated message a batch line (or the flags) describe.

    Raises:
        ValueError: an unknown key, a value of the wrong type, an attachment
            that cannot be read, or an invalid message
            (:class:`~amsdal_mail.InvalidMessageError` names the field).
    """
    unknown = sorted(set(fields) - set(BATCH_KEYS))
    if unknown:
        raise ValueError(f"unknown key(s) {unknown}; a line may have {list(BATCH_KEYS)}")
    lists = {key: _strings(fields.get(key), key) for key in _LIST_KEYS}
    sender = _text(fields, "from") or default_from
    if not sender:
        raise ValueError("no sender: give 'from' (or --from for every line)")
    if not (lists["to"] or lists["cc"] or lists["bcc"]):
        raise ValueError("no recipient: give 'to', 'cc' or 'bcc'")
    attachments: list[Attachment] = []
    for name in lists["attach"]:
        path = base_dir / os.path.expanduser(name)
        try:
            attachments.append(Attachment.from_path(path))
        except OSError as exc:
            raise ValueError(f"attachment {name!r} cannot be read: {exc.strerror or exc}") from exc
    message = EmailMessage(
        subject=_text(fields, "subject") or "",
        body=_text(fields, "body") or "",
        from_email=sender,
        to=lists["to"],
        cc=lists["cc"],
        bcc=lists["bcc"],
        attachments=attachments,
        html_body=_text(fields, "html"),
    )
    message.validate()
    return message


def _named_recipients(fields: object) -> tuple[str, ...]:
    """Return the recipients a (possibly bad) line names, as far as they can be read."""
    if not isinstance(fields, dict):
        return ()
    names: list[str] = []
    for key in ("to", "cc", "bcc"):
        try:
            names += _strings(fields.get(key), key)
        except ValueError:
            continue
    return tuple(names)


def read_batch(
    lines: Iterable[str], *, base_dir: Path, default_from: str | None = None
) -> tuple[list[tuple[int, EmailMessage]], list[BadLine]]:
    """Return the messages of a JSON Lines batch (with their line numbers) and its bad lines.

    Blank lines are skipped; line numbers count from 1.
    """
    good: list[tuple[int, EmailMessage]] = []
    bad: list[BadLine] = []
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            fields = json.loads(text)
        except json.JSONDecodeError as exc:
            bad.append(BadLine(number, f"not valid JSON: {exc.msg} (column {exc.colno})"))
            continue
        if not isinstance(fields, dict):
            bad.append(
                BadLine(number, f"a line must be a JSON object, not {type(fields).__name__}")
            )
            continue
        try:
            good.append(
                (number, build_message(fields, base_dir=base_dir, default_from=default_from))
            )
        except (ValueError, InvalidMessageError) as exc:
            bad.append(BadLine(number, str(exc), _named_recipients(fields)))
    return good, bad


def rows_for(line: int | None, status: SendStatus) -> list[ReportRow]:
    """Return the report rows of one sent message's status."""
    return [
        ReportRow(line, recipient, rs.status, rs.code, rs.response)
        for recipient, rs in status.recipients.items()
    ]


def _unsent_rows(line: int, message: EmailMessage, error: BaseException) -> list[ReportRow]:
    """Return the rows of a message the batch gave up on after ``error``."""
    valid = message.validate()
    response = f"not sent: {error}"
    return [ReportRow(line, a.addr_spec, FAILED, None, response) for a in valid.recipients]


class Progress:
    """A progress bar on a terminal (stderr); draws nothing when ``enabled`` is False."""

    WIDTH: Final = 30

    def __init__(self, total: int, stream: TextIO, *, enabled: bool) -> None:
        self.total = total
        self.stream = stream
        self.enabled = enabled and total > 0
        self._last = -1

    def update(self, done: int, counts: Mapping[str, int]) -> None:
        """Redraw the bar for ``done`` messages of :attr:`total` and the status counts."""
        if not self.enabled or done == self._last:
            return
        self._last = done
        filled = self.WIDTH * done // self.total
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        words = "  ".join(f"{word} {n}" for word, n in sorted(counts.items()))
        self.stream.write(f"\r[{bar}] {done}/{self.total} messages  {words}\x1b[K")
        self.stream.flush()

    def finish(self) -> None:
        """End the bar's line."""
        if self.enabled and self._last >= 0:
            self.stream.write("\n")
            self.stream.flush()


@dataclass(slots=True)
class BatchResult:
    """What a batch did: every report row, and the first error that stopped sending."""

    rows: list[ReportRow]
    error: TransportError | None = None

    def counts(self) -> Counter[str]:
        """Return the number of recipients per status word."""
        return Counter(row.status for row in self.rows)


def _status_counts(messages: Iterable[EmailMessage]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for message in messages:
        if message.status is not None:
            counts.update(rs.status for rs in message.status.recipients.values())
    return counts


def send_batch(
    backend: SMTPBackend,
    messages: Sequence[tuple[int, EmailMessage]],
    *,
    concurrency: int = 1,
    progress: Progress | None = None,
) -> BatchResult:
    """Send ``messages``; return a row per recipient.

    With ``concurrency`` 1 the messages go one after another over one
    connection (sync); with more, over up to that many connections at once
    (async, extra ``[smtp]``). A connection-level error (connect, TLS,
    login) stops the sending: the messages not sent by then get ``failed``
    rows saying so, and the error is :attr:`BatchResult.error`.
    """
    if concurrency == 1:
        error = _send_sync(backend, messages, progress)
    else:
        error = asyncio.run(_send_async(backend, messages, concurrency, progress))
    if progress is not None:
        progress.update(len(messages), _status_counts(m for _, m in messages))
        progress.finish()
    rows: list[ReportRow] = []
    for line, message in messages:
        if message.status is not None:
            rows += rows_for(line, message.status)
        else:
            rows += _unsent_rows(line, message, error or RuntimeError("not attempted"))
    return BatchResult(rows, error)


def _send_sync(
    backend: SMTPBackend,
    messages: Sequence[tuple[int, EmailMessage]],
    progress: Progress | None,
) -> TransportError | None:
    counts: Counter[str] = Counter()
    try:
        for done, (_, message) in enumerate(messages):
            if progress is not None:
                progress.update(done, counts)
            message.status = None
            try:
                status = backend.send_message(message)
            except TransportError as exc:
                return exc
            counts.update(rs.status for rs in status.recipients.values())
    finally:
        backend.close()
    return None


async def _send_async(
    backend: SMTPBackend,
    messages: Sequence[tuple[int, EmailMessage]],
    concurrency: int,
    progress: Progress | None,
) -> TransportError | None:
    batch = [message for _, message in messages]
    task = asyncio.ensure_future(backend.asend_messages(batch, concurrency=concurrency))
    if progress is not None and progress.enabled:
        while not task.done():
            done = sum(1 for m in batch if m.status is not None)
            progress.update(done, _status_counts(batch))
            await asyncio.wait({task}, timeout=0.1)
    try:
        await task
    except TransportError as exc:
        # Every message has a status by now: those not sent are marked failed with it.
        return exc
    return None


def summary_lines(result: BatchResult, bad: Sequence[BadLine]) -> list[str]:
    """Return the summary for people: recipients per status, then each one not sent."""
    rows = result.rows + [row for line in bad for row in line.rows()]
    counts = Counter(row.status for row in rows)
    order = [SENT] + sorted(word for word in counts if word != SENT)
    per_status = ", ".join(f"{word} {counts[word]}" for word in order if counts[word])
    lines = [f"{len(rows)} recipient(s): {per_status or 'none'}"]
    for row in sorted(rows, key=lambda r: r.line or 0):
        if row.status != SENT:
            code = f" {row.code}" if row.code is not None else ""
            where = f"line {row.line}: " if row.line is not None else ""
            lines.append(
                f"  {where}{row.recipient or '(no recipient)'} {row.status}{code}: "
                f"{row.response or ''}".rstrip()
            )
    return lines


def write_report(path: str, rows: Iterable[ReportRow]) -> None:
    """Write ``rows`` to ``path`` as JSON Lines (``-``: standard output)."""
    if path == "-":
        for row in rows:
            sys.stdout.write(row.as_json() + "\n")
        return
    with open(path, "w", encoding="utf-8") as out:
        for row in rows:
            out.write(row.as_json() + "\n")
