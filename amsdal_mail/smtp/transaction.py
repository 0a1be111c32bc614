"""One message's SMTP transactions as pure logic: commands out, replies in, status back.

:func:`prepare_envelope` turns a validated message into what SMTP needs
(sender, recipients, rendered bytes). :func:`transaction` is a generator
that yields :class:`Step` objects (bytes to write, how many replies to read)
and is sent the replies; it returns the message's
:class:`~amsdal_mail.SendStatus`. With PIPELINING (RFC 2920) MAIL, every RCPT
and DATA go out in one write; with CHUNKING (RFC 3030) the data goes as one
``BDAT <size> LAST``, not dot-stuffed, pipelined with MAIL and RCPT when
PIPELINING is offered too (one round trip per message); without PIPELINING,
one command at a time, stopping as soon as the outcome is known. A pipelined
BDAT carries the data before any reply came: if the replies are then lost,
the message's fate is unknown and it is not resent. Recipients refused with 452 (too many
recipients) get a further transaction.

When the server offers DSN (RFC 3461) and the message asks for notifications
(its own :class:`~amsdal_mail.DSN` or the backend's ``dsn_notify`` /
``dsn_ret``), MAIL FROM carries ``RET`` and ``ENVID`` and every RCPT TO
``NOTIFY`` and ``ORCPT``, xtext-encoded. ORCPT is ``rfc822;`` and the
address, or, for a non-ASCII local part (SMTPUTF8), RFC 6533's ``utf-8;``
type in its all-ASCII ``utf-8-addr-xtext`` form (``\\x{E9}``), which a server
accepts with or without SMTPUTF8. Without DSN on offer nothing is added.

A 421 reply anywhere means the server is closing the connection (RFC 5321
3.8): nothing more is written on it, not even RSET, and the commands it left
unanswered count as answered with that 421.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from dataclasses import dataclass, field, replace

from ..exceptions import ProtocolError, ServerDisconnectedError
from ..message import ValidatedMessage
from ..message.addresses import Address
from ..message.dsn import DSN, RET_WORDS, merge_dsn, utf8_addr_xtext, xtext
from ..mime import Base64Slice, lazy_chunks, make_message_id, render_chunks
from ..mime.dkim import DKIMSigner
from ..status import (
    RecipientStatus,
    SendStatus,
    SMTPCode,
    SMTPReply,
    recipient_status_from_reply,
    status_from_transaction,
)
from ..tracking.verp import encode_verp, message_key

__all__ = [
    "Envelope",
    "Progress",
    "Step",
    "bdat_payload",
    "dot_stuff",
    "mail_command",
    "prepare_envelope",
    "rcpt_command",
    "split_by_sender",
    "transaction",
]

DATA_END = b".\r\n"
_CLOSING = int(SMTPCode.SERVICE_UNAVAILABLE)


@dataclass(frozen=True, slots=True)
class Envelope:
    """What one SMTP transaction carries for one message."""

    sender: str
    #: (status key: the address as written, envelope form) for each recipient, once.
    recipients: tuple[tuple[str, str], ...]
    #: The rendered message, as CRLF-terminated chunks (not yet dot-stuffed).
    chunks: list[bytes] = field(repr=False)
    smtputf8: bool = False
    #: The data holds bytes over 127 (8bit text parts), so BODY=8BITMIME is declared.
    eight_bit: bool = False
    #: The DSN request (RFC 3461), with its ENVID filled in; None for none.
    dsn: DSN | None = None
    #: The Message-ID the message is sent with (set when DSN or VERP needs it).
    message_id: str | None = None
    #: With VERP: the envelope sender of each recipient, in the order of ``recipients``
    #: (see :func:`split_by_sender`); None without VERP.
    senders: tuple[str, ...] | None = None

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
    """Write ``payload``, then read ``replies`` replies; the flow is sent the replies.

    A driver stops reading early after a 421 (the server closes the connection
    then); the flow treats the replies it did not get as that 421.
    """

    payload: list[bytes]
    replies: int
    #: The replies to a message's data on a pipelining server (a BDAT transaction, or
    #: the reply to DATA's final dot): the next transactions may go out before they
    #: are read (RFC 2920, RFC 3030).
    after_data: bool = False
    #: Replies ``payload`` calls for that a later step reads (a message's data, its
    #: commands pipelined with it): a driver that drops replies nobody awaits counts
    #: them as owed from the moment the bytes go out, as they may come before the
    #: last byte is written.
    owes: int = 0


class Progress:
    """How far the current attempt got (to tell a safe retry from an unknown fate)."""

    __slots__ = ("closing", "current", "data_sent", "finished", "replies", "reused", "settled")

    def __init__(self, reused: bool = False) -> None:
        #: The data of the transaction under way is with the server (its reply may not come).
        self.data_sent = False
        #: A transaction of this attempt ended (452 sends the rest in a further one).
        self.finished = False
        self.replies = 0
        self.reused = reused
        #: A 421 came: the server is closing the connection, nothing more may be written.
        self.closing = False
        #: The recipient keys of the transaction under way.
        self.current: list[str] = []
        #: Recipients whose fate this attempt already knows whatever happens next: those
        #: refused at RCPT before the data went out, those of a finished transaction.
        self.settled: dict[str, RecipientStatus] = {}

    def settle_refused(self, rcpt_replies: list[SMTPReply]) -> None:
        """Record the recipients of the current transaction that RCPT refused."""
        for key, reply in zip(self.current, rcpt_replies, strict=False):
            if not reply.is_positive:
                self.settled[key] = recipient_status_from_reply(reply)


def prepare_envelope(
    valid: ValidatedMessage,
    *,
    dsn: DSN | None = None,
    signer: DKIMSigner | None = None,
    return_path: Address | None = None,
    verp_secret: str | None = None,
) -> Envelope:
    """Render the validated message ``valid`` and return its envelope.

    ``dsn`` is the backend's DSN request (``dsn_notify`` / ``dsn_ret``); the
    message's own :class:`~amsdal_mail.DSN` fields win over it, and ENVID
    defaults to the message's Message-ID. With ``signer`` the message gets a
    DKIM-Signature over exactly the bytes that are sent.

    The envelope sender is the message's own ``return_path``, else the
    backend's ``return_path``, else the From address. With ``verp_secret``
    (VERP on) each recipient gets its own sender, that address tagged with a
    token naming the message's key and the recipient (:mod:`amsdal_mail.tracking`).
    """
    message_id = None
    if dsn is not None or valid.dsn is not None or verp_secret is not None:
        given = [value for name, value in valid.headers if name.lower() == "message-id"]
        message_id = given[0] if given else make_message_id(valid.from_address.ascii_domain)
    if signer is not None:
        # The signature covers the whole message: it is rendered whole for it.
        chunks = signer.sign(render_chunks(valid, message_id=message_id))
    else:
        # A large attachment stays unencoded until each slice of it is written.
        chunks = lazy_chunks(valid, message_id=message_id)
    sender = valid.return_path or return_path or valid.from_address
    senders = None
    if verp_secret is not None:
        assert message_id is not None
        key = message_key(message_id)
        senders = tuple(
            encode_verp(sender.envelope, key, a.addr_spec, verp_secret) for a in valid.recipients
        )
    return Envelope(
        sender=sender.envelope,
        recipients=tuple((a.addr_spec, a.envelope) for a in valid.recipients),
        chunks=chunks,
        smtputf8=valid.needs_smtputf8,
        eight_bit=not all(chunk.isascii() for chunk in chunks),
        dsn=merge_dsn(valid.dsn, dsn, message_id),
        message_id=message_id,
        senders=senders,
    )


def split_by_sender(envelope: Envelope) -> list[Envelope]:
    """Return the envelopes to send: ``envelope`` itself, or with VERP one per recipient.

    Each VERP envelope has one recipient and that recipient's sender; the
    rendered data is shared. Without VERP the message keeps one transaction.
    """
    if envelope.senders is None:
        return [envelope]
    return [
        replace(envelope, sender=sender, recipients=(recipient,), senders=None)
        for sender, recipient in zip(envelope.senders, envelope.recipients, strict=True)
    ]


def dot_stuff(chunks: list[bytes]) -> list[bytes]:
    """Return the DATA payload: chunks dot-stuffed, ending with ``CRLF.CRLF`` once.

    The chunks joined must be CRLF-only, with no CRLF split between two
    chunks; a chunk may end mid-line (a text part's last line has no line
    break of its own). A CRLF is added when the data does not end with one,
    as smtplib does, since the CRLF before the final dot ends the last line.
    Chunks holding no dot at a line start are passed through without copying.
    """
    out: list[bytes] = []
    line_start = True
    for chunk in chunks:
        if not chunk:
            continue
        if isinstance(chunk, Base64Slice):  # no dot in base64; it ends with CRLF
            if not line_start:  # pragma: no cover - a slice always follows a line break
                raise ValueError("a base64 slice must start a line")
            out.append(chunk)
            continue
        if b"\n." in chunk:
            chunk = chunk.replace(b"\r\n.", b"\r\n..")
        if line_start and chunk.startswith(b"."):
            chunk = b"." + chunk
        out.append(chunk)
        line_start = chunk.endswith(b"\n")
    if not line_start:
        out.append(b"\r\n")
    out.append(DATA_END)
    return out


def bdat_payload(chunks: list[bytes]) -> list[bytes]:
    """Return ``BDAT <size> LAST`` and the data as one chunk (RFC 3030): no dot-stuffing.

    The data is sent as it is, ending with a CRLF (one is added when it does
    not, as for DATA); ``size`` counts exactly the octets that follow.
    """
    out = [c for c in chunks if c]
    if not out or not out[-1].endswith(b"\n"):
        out.append(b"\r\n")
    size = sum(len(c) for c in out)
    return [f"BDAT {size} LAST\r\n".encode("ascii"), *out]


def mail_command(envelope: Envelope, features: Mapping[str, str]) -> bytes:
    """Return the MAIL FROM command, with the parameters the server's features allow."""
    params = ""
    if "size" in features:
        params += f" SIZE={envelope.size}"
    if envelope.smtputf8:
        params += " SMTPUTF8"
    if (envelope.eight_bit or envelope.smtputf8) and "8bitmime" in features:
        # Without 8BITMIME on offer the data goes as it is, as smtplib and Django send it.
        params += " BODY=8BITMIME"
    dsn = envelope.dsn
    if dsn is not None and "dsn" in features:
        if dsn.ret is not None:
            params += f" RET={RET_WORDS[dsn.ret]}"
        if dsn.envid is not None:
            params += f" ENVID={xtext(dsn.envid)}"
    return f"MAIL FROM:<{envelope.sender}>{params}\r\n".encode()


def rcpt_command(envelope: Envelope, address: str, features: Mapping[str, str]) -> bytes:
    """Return the RCPT TO command for ``address``, with NOTIFY and ORCPT when DSN applies."""
    params = ""
    dsn = envelope.dsn
    if dsn is not None and "dsn" in features:
        if dsn.notify_words:
            params += " NOTIFY=" + ",".join(word.upper() for word in dsn.notify_words)
        if address.isascii():
            params += f" ORCPT=rfc822;{xtext(address)}"
        else:
            params += f" ORCPT=utf-8;{utf8_addr_xtext(address)}"
    encoding = "utf-8" if envelope.smtputf8 else "ascii"
    return f"RCPT TO:<{address}>{params}\r\n".encode(encoding)


def transaction(
    envelope: Envelope,
    recipients: list[tuple[str, str]],
    features: Mapping[str, str],
    progress: Progress,
) -> Generator[Step, object, SendStatus]:
    """Run SMTP transactions for ``recipients`` until each has a final answer.

    Recipients refused with 452 (too many recipients) go in a further
    transaction, as long as the previous one made progress and the server
    is not closing the connection.
    """
    statuses: list[SendStatus] = []
    pending = recipients
    while pending:
        status = yield from _one_transaction(envelope, pending, features, progress)
        progress.settled.update(status.recipients)
        progress.finished = True
        statuses.append(status)
        retry = [
            (key, addr)
            for key, addr in pending
            if status.recipients[key].code == SMTPCode.INSUFFICIENT_STORAGE
        ]
        if progress.closing or not retry or len(retry) == len(pending):
            break
        pending = retry
    if len(statuses) == 1:
        return statuses[0]
    result = SendStatus(esp_response=statuses[-1].esp_response)
    for key, _ in recipients:
        # A later transaction's answer supersedes an earlier 452.
        for st in reversed(statuses):
            if key in st.recipients:
                result.recipients[key] = st.recipients[key]
                break
    return result


def _replies(step: Step, progress: Progress) -> Generator[Step, object, list[SMTPReply]]:
    """Yield ``step``; return its replies, a missing one (after a 421) as that 421."""
    replies = yield step
    return _checked(step, replies, progress)


def _idle_close(replies: object, progress: Progress) -> bool:
    """Return True for a 421 before any reply of this transaction on a pooled connection."""
    return (
        isinstance(replies, list)
        and progress.reused
        and not progress.replies
        and bool(replies)
        and replies[0].code == _CLOSING
    )


def _checked(step: Step, replies: object, progress: Progress) -> list[SMTPReply]:
    """Return ``replies``, the answers to ``step``, a missing one (after a 421) as that 421."""
    assert isinstance(replies, list)
    if _idle_close(replies, progress):
        # A 421 before any reply of this transaction on a pooled connection:
        # the server closed it while it sat idle (an idle timeout), so it is
        # a dead connection to replace, not an answer about this message.
        raise ServerDisconnectedError(f"the server closed the idle connection: {replies[0]}")
    progress.replies += len(replies)
    # Drivers stop reading at a 421, so one can only be the last reply.
    if replies and replies[-1].code == _CLOSING:
        progress.closing = True
    if len(replies) < step.replies:
        if not replies or replies[-1].code != _CLOSING:
            raise ServerDisconnectedError(f"{step.replies - len(replies)} replies missing")
        replies = replies + [replies[-1]] * (step.replies - len(replies))
    return replies


def _check_data_reply(reply: SMTPReply) -> None:
    """Refuse a positive reply to DATA other than 354: the body was never sent.

    Counting it as delivery would report ``sent`` for a message the server
    never received; the exchange is out of step, so the connection is dropped.
    """
    if reply.is_positive and reply.code != SMTPCode.START_INPUT:
        raise ProtocolError(
            reply.code,
            f"{reply.text} (unexpected reply to DATA, expected 354; the message was not sent)",
        )


def _send_data(
    envelope: Envelope, progress: Progress, pipelining: bool = False
) -> Generator[Step, object, SMTPReply]:
    """Send the message content after a 354; return the reply to its final dot.

    With PIPELINING the next transaction's commands may follow the dot before
    its reply is read (RFC 2920: the content may be the first command of a
    group), so the reply step is marked ``after_data``.
    """
    yield Step(dot_stuff(envelope.chunks), 0, owes=1)
    # Every byte of the message is with the server now: if its reply never
    # comes, the message's fate is unknown and it must not be resent.
    progress.data_sent = True
    (reply,) = yield from _replies(Step([], 1, after_data=pipelining), progress)
    return reply


def _chunked(
    envelope: Envelope, commands: list[bytes], progress: Progress, pipelining: bool
) -> Generator[Step, object, tuple[SMTPReply, list[SMTPReply], SMTPReply | None]]:
    """CHUNKING: the data as one ``BDAT <size> LAST``; return the replies that decide the status.

    With PIPELINING, MAIL, every RCPT and the BDAT with its data go out in
    one write (one round trip per message); the BDAT is answered even when
    every recipient was refused (5xx/503), and that answer is not the
    status of anyone. Without PIPELINING, MAIL and each RCPT in lock step,
    then the BDAT only when a recipient was accepted.
    """
    bdat = bdat_payload(envelope.chunks)
    if pipelining:
        yield Step([*commands, *bdat], 0, owes=len(commands) + 1)
        # The data went with the commands: from here a lost reply is an unknown fate,
        # unless a pooled connection answers 421 at once (closed while idle: it took nothing).
        progress.data_sent = True
        # All the replies in one step: a driver may drop replies nobody waits for yet.
        step = Step([], len(commands) + 1, after_data=True)
        answer = yield step
        if _idle_close(answer, progress):
            progress.data_sent = False
        replies = _checked(step, answer, progress)
        mail_reply, rcpt_replies, bdat_reply = replies[0], replies[1:-1], replies[-1]
        accepted = mail_reply.is_positive and any(r.is_positive for r in rcpt_replies)
        return mail_reply, rcpt_replies, bdat_reply if accepted else None
    mail_reply, rcpt_replies, closing = yield from _lock_step_envelope(commands, progress)
    if closing is not None or not mail_reply.is_positive:
        return mail_reply, rcpt_replies, closing
    if not any(r.is_positive for r in rcpt_replies):
        return mail_reply, rcpt_replies, None
    progress.settle_refused(rcpt_replies)
    yield Step(bdat, 0, owes=1)
    progress.data_sent = True
    (bdat_reply,) = yield from _replies(Step([], 1), progress)
    return mail_reply, rcpt_replies, bdat_reply


def _lock_step_envelope(
    commands: list[bytes], progress: Progress
) -> Generator[Step, object, tuple[SMTPReply, list[SMTPReply], SMTPReply | None]]:
    """MAIL, then each RCPT, one at a time; return the replies and a 421 that ended them."""
    (mail_reply,) = yield from _replies(Step([commands[0]], 1), progress)
    rcpt_replies: list[SMTPReply] = []
    if not mail_reply.is_positive:
        return mail_reply, rcpt_replies, None
    for command in commands[1:]:
        (reply,) = yield from _replies(Step([command], 1), progress)
        rcpt_replies.append(reply)
        if reply.code == _CLOSING:
            # The server is going away: the recipients not yet asked for share its
            # answer, and so do those accepted (no data goes on a closing connection).
            rcpt_replies += [reply] * (len(commands) - 1 - len(rcpt_replies))
            accepted = any(r.is_positive for r in rcpt_replies)
            return mail_reply, rcpt_replies, reply if accepted else None
    return mail_reply, rcpt_replies, None


def _pipelined(
    envelope: Envelope, commands: list[bytes], progress: Progress
) -> Generator[Step, object, tuple[SMTPReply, list[SMTPReply], SMTPReply | None]]:
    """MAIL, every RCPT and DATA in one write; return the replies that decide the status."""
    replies = yield from _replies(Step([*commands, b"DATA\r\n"], len(commands) + 1), progress)
    mail_reply, rcpt_replies, data_reply = replies[0], replies[1:-1], replies[-1]
    accepted = mail_reply.is_positive and any(r.is_positive for r in rcpt_replies)
    # A 421 ends the replies (the missing ones count as it), so it is the last one.
    closing = replies[-1] if replies[-1].code == _CLOSING else None
    if closing is not None:
        # No data on a closing connection: the accepted recipients share the 421.
        return mail_reply, rcpt_replies, closing if accepted else None
    _check_data_reply(data_reply)
    if not accepted:
        if data_reply.code == SMTPCode.START_INPUT:
            # RFC 2920: DATA was accepted with no valid recipient; send an
            # empty message so the server discards the transaction.
            yield from _replies(Step([DATA_END], 1), progress)
        return mail_reply, rcpt_replies, None
    if data_reply.code == SMTPCode.START_INPUT:
        progress.settle_refused(rcpt_replies)
        data_reply = yield from _send_data(envelope, progress, pipelining=True)
    return mail_reply, rcpt_replies, data_reply


def _lock_step(
    envelope: Envelope, commands: list[bytes], progress: Progress
) -> Generator[Step, object, tuple[SMTPReply, list[SMTPReply], SMTPReply | None]]:
    """One command at a time, stopping once the outcome is known."""
    mail_reply, rcpt_replies, closing = yield from _lock_step_envelope(commands, progress)
    if closing is not None or not mail_reply.is_positive:
        return mail_reply, rcpt_replies, closing
    if progress.closing:
        return mail_reply, rcpt_replies, None
    if not any(r.is_positive for r in rcpt_replies):
        return mail_reply, rcpt_replies, None
    (data_reply,) = yield from _replies(Step([b"DATA\r\n"], 1), progress)
    _check_data_reply(data_reply)
    if data_reply.code == SMTPCode.START_INPUT:
        progress.settle_refused(rcpt_replies)
        data_reply = yield from _send_data(envelope, progress)
    return mail_reply, rcpt_replies, data_reply


def _one_transaction(
    envelope: Envelope,
    recipients: list[tuple[str, str]],
    features: Mapping[str, str],
    progress: Progress,
) -> Generator[Step, object, SendStatus]:
    """Run one transaction; return the status it gave its recipients."""
    commands = [mail_command(envelope, features)]
    commands += [rcpt_command(envelope, addr, features) for _, addr in recipients]
    progress.current = [key for key, _ in recipients]
    progress.data_sent = False
    for key in progress.current:  # a new answer for them is coming
        progress.settled.pop(key, None)
    pipelining = "pipelining" in features
    if "chunking" in features:
        outcome = yield from _chunked(envelope, commands, progress, pipelining)
    else:
        run = _pipelined if pipelining else _lock_step
        outcome = yield from run(envelope, commands, progress)
    mail_reply, rcpt_replies, data_reply = outcome
    keys = [key for key, _ in recipients]
    rcpt_map = dict(zip(keys, rcpt_replies, strict=True)) if mail_reply.is_positive else {}
    status = status_from_transaction(
        keys, mail_reply=mail_reply, rcpt_replies=rcpt_map, data_reply=data_reply
    )
    if (data_reply is None or not data_reply.is_positive) and not progress.closing:
        # The answers are in: should the connection fail under the RSET, they stand.
        progress.settled.update(status.recipients)
        progress.finished = True
        # End the failed transaction so the connection can serve the next one.
        yield from _replies(Step([b"RSET\r\n"], 1), progress)
    return status
