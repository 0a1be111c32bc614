"""The SMTP mail transaction as pure logic, shared by the sync and async backends.

:func:`prepare_envelope` turns a message into what SMTP needs (sender,
recipients, rendered bytes). :func:`transaction` is a generator that yields
:class:`Step` objects (bytes to write, and how many replies to read) and is
sent the replies; it returns the message's :class:`SendStatus`. A backend only
moves bytes: the sync one through :mod:`smtplib`'s socket, the async one
through :mod:`aiosmtplib`'s transport.

With PIPELINING (RFC 2920) MAIL, every RCPT and DATA go out in one write;
without it, one command at a time, stopping as soon as the outcome is known.
Recipients refused with 452 (too many recipients) get a further transaction.
"""

from __future__ import annotations

import re
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field

from .message import EmailMessage
from .mime import render_chunks
from .status import (
    INVALID,
    REJECTED,
    SendStatus,
    SMTPCode,
    SMTPReply,
    status_from_transaction,
)

__all__ = ["Envelope", "Step", "dot_stuff", "prepare_envelope", "transaction"]

_BARE_LINE_BREAK = re.compile(rb"\r\n|\r|\n")
DATA_END = b".\r\n"


@dataclass(frozen=True, slots=True)
class Envelope:
    """What one SMTP transaction carries for one message."""

    sender: str
    #: (status key: the address as written, envelope form) for each recipient, once.
    recipients: tuple[tuple[str, str], ...]
    #: The rendered message, as CRLF-terminated chunks (not yet dot-stuffed).
    chunks: list[bytes] = field(repr=False)
    smtputf8: bool = False

    @property
    def size(self) -> int:
        """Return the size of the rendered message in octets."""
        return sum(len(c) for c in self.chunks)

    @property
    def keys(self) -> list[str]:
        """Return the status keys of all recipients."""
        return [key for key, _ in self.recipients]


@dataclass(frozen=True, slots=True)
class Step:
    """Bytes for the backend to write, then ``replies`` replies to read."""

    payload: list[bytes]
    replies: int
    #: True for the step that hands the message content to the server: a
    #: failure after it leaves the message's fate unknown.
    is_data: bool = False


def prepare_envelope(message: EmailMessage) -> Envelope:
    """Validate and render ``message`` and return its envelope.

    Raises :class:`~amsdal_mail.InvalidMessageError` for a bad message.
    """
    valid = message.validate()
    return Envelope(
        sender=valid.from_address.envelope,
        recipients=tuple((a.addr_spec, a.envelope) for a in valid.recipients),
        chunks=render_chunks(valid),
        smtputf8=valid.needs_smtputf8,
    )


def normalize_line_endings(data: bytes) -> bytes:
    """Return ``data`` with every CR, LF and CRLF turned into CRLF."""
    return _BARE_LINE_BREAK.sub(b"\r\n", data)


def dot_stuff(chunks: list[bytes]) -> list[bytes]:
    """Return the DATA payload: chunks dot-stuffed, ending with ``.\\r\\n`` once.

    Each chunk must be CRLF-only and end with CRLF (as the renderer makes
    them), so a chunk always starts at the start of a line. Chunks holding
    no dot at a line start are passed through without copying.
    """
    out: list[bytes] = []
    for chunk in chunks:
        if chunk.startswith(b".") or b"\n." in chunk:
            chunk = chunk.replace(b"\r\n.", b"\r\n..")
            if chunk.startswith(b"."):
                chunk = b"." + chunk
        out.append(chunk)
    if out and not out[-1].endswith(b"\r\n"):
        out.append(b"\r\n")
    out.append(DATA_END)
    return out


def _mail_command(envelope: Envelope, features: Mapping[str, str]) -> bytes:
    params = ""
    if "size" in features:
        params += f" SIZE={envelope.size}"
    if envelope.smtputf8:
        params += " SMTPUTF8"
        if "8bitmime" in features:
            params += " BODY=8BITMIME"
    return f"MAIL FROM:<{envelope.sender}>{params}\r\n".encode()


def _size_limit(features: Mapping[str, str]) -> int:
    try:
        return int(features.get("size", "0").split()[0] or 0)
    except (ValueError, IndexError):
        return 0


def transaction(
    envelope: Envelope,
    features: Mapping[str, str],
    *,
    pipelining: bool,
) -> Generator[Step, list[SMTPReply], SendStatus]:
    """Run one message's SMTP transaction(s); return its status.

    ``features`` are the server's EHLO keywords (lower case) and their
    parameters. A message that cannot be sent to this server at all (too
    large for its SIZE, SMTPUTF8 needed but not offered) is reported without
    sending anything.
    """
    keys = envelope.keys
    limit = _size_limit(features)
    if limit and envelope.size > limit:
        return SendStatus.uniform(
            keys,
            REJECTED,
            code=SMTPCode.EXCEEDED_STORAGE,
            response=f"message is {envelope.size} bytes, larger than the {limit} bytes the "
            "server accepts (ESMTP SIZE); not sent",
        )
    if envelope.smtputf8 and "smtputf8" not in features:
        return SendStatus.uniform(
            keys,
            INVALID,
            response="an address has a non-ASCII local part, which needs SMTPUTF8, "
            "and the server does not offer it; not sent",
        )
    pipelining = pipelining and "pipelining" in features
    statuses: list[SendStatus] = []
    pending = list(envelope.recipients)
    while pending:
        status = yield from _one_transaction(envelope, pending, features, pipelining)
        statuses.append(status)
        # 452 "too many recipients": the rest go in a further transaction, as
        # long as this one made progress (otherwise the refusal stands).
        retry = [
            (key, addr)
            for key, addr in pending
            if status.recipients[key].code == SMTPCode.INSUFFICIENT_STORAGE
        ]
        if not retry or len(retry) == len(pending):
            break
        pending = retry
    return _combine(keys, statuses)


def _combine(keys: list[str], statuses: list[SendStatus]) -> SendStatus:
    if len(statuses) == 1:
        return statuses[0]
    result = SendStatus(esp_response=statuses[-1].esp_response)
    for key in keys:
        # A later transaction's answer supersedes an earlier 452.
        for st in reversed(statuses):
            if key in st.recipients:
                result.recipients[key] = st.recipients[key]
                break
    return result


def _one_transaction(
    envelope: Envelope,
    recipients: list[tuple[str, str]],
    features: Mapping[str, str],
    pipelining: bool,
) -> Generator[Step, list[SMTPReply], SendStatus]:
    encoding = "utf-8" if envelope.smtputf8 else "ascii"
    mail = _mail_command(envelope, features)
    rcpts = [f"RCPT TO:<{addr}>\r\n".encode(encoding) for _, addr in recipients]
    keys = [key for key, _ in recipients]
    data_reply: SMTPReply | None
    if pipelining:
        replies = yield Step([mail, *rcpts, b"DATA\r\n"], len(rcpts) + 2)
        mail_reply, rcpt_replies, data_reply = replies[0], replies[1:-1], replies[-1]
        accepted = mail_reply.is_positive and any(r.is_positive for r in rcpt_replies)
        if data_reply.code == SMTPCode.START_INPUT:
            if accepted:
                (data_reply,) = yield Step(dot_stuff(envelope.chunks), 1, is_data=True)
            else:
                # RFC 2920: DATA was accepted with no valid recipient; send an
                # empty message so the server discards the transaction.
                yield Step([DATA_END], 1)
                data_reply = None
        elif not accepted:
            data_reply = None
        if data_reply is None or not data_reply.is_positive:
            yield Step([b"RSET\r\n"], 1)
    else:
        (mail_reply,) = yield Step([mail], 1)
        if not mail_reply.is_positive:
            yield Step([b"RSET\r\n"], 1)
            return status_from_transaction(
                keys, mail_reply=mail_reply, rcpt_replies={}, data_reply=None
            )
        rcpt_replies = []
        for command in rcpts:
            (reply,) = yield Step([command], 1)
            rcpt_replies.append(reply)
        data_reply = None
        if any(r.is_positive for r in rcpt_replies):
            (data_reply,) = yield Step([b"DATA\r\n"], 1)
            if data_reply.code == SMTPCode.START_INPUT:
                (data_reply,) = yield Step(dot_stuff(envelope.chunks), 1, is_data=True)
        if data_reply is None or not data_reply.is_positive:
            yield Step([b"RSET\r\n"], 1)
    return status_from_transaction(
        keys,
        mail_reply=mail_reply,
        rcpt_replies=dict(zip(keys, rcpt_replies, strict=True)),
        data_reply=data_reply,
    )
