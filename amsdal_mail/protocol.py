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

import logging
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from .exceptions import (
    AuthenticationError,
    NotSupportedError,
    ProtocolError,
    ServerDisconnectedError,
    TLSError,
    TransportError,
)
from .message import EmailMessage
from .mime import render_chunks
from .status import (
    FAILED,
    INVALID,
    REJECTED,
    UNKNOWN,
    RecipientStatus,
    SendStatus,
    SMTPCode,
    SMTPReply,
    status_from_transaction,
)

__all__ = [
    "Connect",
    "Envelope",
    "RetryPolicy",
    "advance",
    "connect_flow",
    "Sleep",
    "Step",
    "dot_stuff",
    "prepare_envelope",
    "send_flow",
]

logger = logging.getLogger("amsdal_mail.smtp")
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
    """Write ``payload``, then read ``replies`` replies; the flow is sent the replies."""

    payload: list[bytes]
    replies: int


@dataclass(frozen=True, slots=True)
class Connect:
    """Make sure a connection is ready; the flow is sent a :class:`Connection`.

    With ``fresh`` the current connection (if any) is dropped and a new one made.
    """

    fresh: bool = False


@dataclass(frozen=True, slots=True)
class Connection:
    """What the backend tells the flow about the connection it is using."""

    #: The server's EHLO keywords, lower case, with their parameters.
    features: Mapping[str, str]
    #: True when the connection served an earlier message (it may have gone stale).
    reused: bool


@dataclass(frozen=True, slots=True)
class Sleep:
    """Wait ``seconds`` before going on (backoff before a retry); the flow is sent None."""

    seconds: float
    reason: str = ""


Action = Step | Connect | Sleep


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How temporary failures are retried: up to ``max_retries`` times, backing off.

    The n-th retry waits ``backoff * 2 ** (n - 1)`` seconds, at most ``max_delay``.
    """

    max_retries: int = 0
    backoff: float = 1.0
    max_delay: float = 60.0

    def delay(self, attempt: int) -> float:
        """Return the wait before retry number ``attempt`` (1-based)."""
        return float(min(self.backoff * 2 ** (attempt - 1), self.max_delay))


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


def _unsendable(envelope: Envelope, features: Mapping[str, str]) -> SendStatus | None:
    """Return the status of a message this server cannot take at all, else None."""
    limit = _size_limit(features)
    if limit and envelope.size > limit:
        return SendStatus.uniform(
            envelope.keys,
            REJECTED,
            code=SMTPCode.EXCEEDED_STORAGE,
            response=f"message is {envelope.size} bytes, larger than the {limit} bytes the "
            "server accepts (ESMTP SIZE); not sent",
        )
    if envelope.smtputf8 and "smtputf8" not in features:
        return SendStatus.uniform(
            envelope.keys,
            INVALID,
            response="an address has a non-ASCII local part, which needs SMTPUTF8, "
            "and the server does not offer it; not sent",
        )
    return None


def _retryable(error: TransportError) -> bool:
    """Return True for errors a new attempt may cure (not TLS, AUTH or config problems)."""
    if isinstance(error, (TLSError, AuthenticationError, NotSupportedError)):
        return False
    if isinstance(error, ProtocolError):
        return 400 <= error.smtp_code < 500
    return True


class _Progress:
    """How far the current transaction got (to tell a safe retry from an unknown fate)."""

    __slots__ = ("data_sent", "replies", "reused")

    def __init__(self) -> None:
        self.data_sent = False
        self.replies = 0
        self.reused = False


def send_flow(
    envelope: Envelope,
    policy: RetryPolicy,
    *,
    pipelining: bool,
) -> Generator[Action, object, SendStatus]:
    """Deliver one message: connect, transact, retry what is temporary; return its status.

    The backend runs the yielded actions and sends back their results, or
    throws the :class:`TransportError` an action raised into the flow. The
    flow then decides:

    * the message data was sent but its reply never came: ``unknown``, never resent;
    * otherwise a retryable error (connection lost, timeout, 4xx at connect) is
      retried on a new connection, up to ``policy.max_retries`` times with
      backoff; a reused connection that turns out dead is replaced once for free;
    * recipients refused with 4xx (on MAIL, RCPT or DATA) are retried, only
      they, in a new transaction; 5xx is final;
    * anything else is raised to the caller.
    """
    keys = envelope.keys
    final: dict[str, RecipientStatus] = {}
    esp_response: str | None = None
    pending = list(envelope.recipients)
    attempt = 0
    fresh = False
    free_reconnect = True
    while True:
        progress = _Progress()
        reused = False
        try:
            connection = yield Connect(fresh)
            assert isinstance(connection, Connection)
            fresh, reused = False, connection.reused
            progress.reused = reused
            refused = _unsendable(envelope, connection.features)
            if refused is not None:
                return refused
            status = yield from _transaction(
                envelope,
                pending,
                connection.features,
                pipelining and "pipelining" in connection.features,
                progress,
            )
        except TransportError as error:
            if progress.data_sent:
                final.update(dict.fromkeys((k for k, _ in pending), _unknown(error)))
                return _ordered(keys, final, esp_response)
            if not _retryable(error):
                raise
            fresh = True
            if reused and free_reconnect and not progress.replies:
                # The pooled connection died while idle: replace it, no backoff.
                free_reconnect = False
                logger.info("connection was closed while idle (%s); reconnecting", error)
                continue
            if attempt >= policy.max_retries:
                raise
            attempt += 1
            yield _backoff(policy, attempt, error)
            continue
        final.update(status.recipients)
        esp_response = status.esp_response
        transient = [
            (key, addr)
            for key, addr in pending
            if final[key].status == FAILED and (final[key].code or 0) < 500
        ]
        if not transient or attempt >= policy.max_retries:
            return _ordered(keys, final, esp_response)
        attempt += 1
        delay = policy.delay(attempt)
        logger.warning(
            "%d recipient(s) temporarily refused (%s); retry %d of %d in %.1fs",
            len(transient),
            final[transient[0][0]].code,
            attempt,
            policy.max_retries,
            delay,
        )
        yield Sleep(delay, "temporary refusal")
        # A 421 means the server is closing the connection.
        fresh = any(final[key].code == SMTPCode.SERVICE_UNAVAILABLE for key, _ in transient)
        pending = transient


def connect_flow(policy: RetryPolicy) -> Generator[Action, object, Connection]:
    """Open a connection, retrying what is temporary as :func:`send_flow` does.

    For ``open()`` / ``aopen()``: a 421 greeting, a refused or timed-out
    connect or a dropped connection is retried up to ``policy.max_retries``
    times with backoff; TLS, AUTH and configuration problems are raised at once.
    """
    attempt = 0
    while True:
        try:
            connection = yield Connect(fresh=attempt > 0)
            assert isinstance(connection, Connection)
            return connection
        except TransportError as error:
            if not _retryable(error) or attempt >= policy.max_retries:
                raise
            attempt += 1
            yield _backoff(policy, attempt, error)


def _backoff(policy: RetryPolicy, attempt: int, error: TransportError) -> Sleep:
    """Log retry number ``attempt`` and return the wait before it."""
    delay = policy.delay(attempt)
    logger.warning(
        "temporary failure (%s); retry %d of %d in %.1fs",
        error,
        attempt,
        policy.max_retries,
        delay,
    )
    return Sleep(delay, str(error))


_R = TypeVar("_R")


def advance(
    flow: Generator[Action, object, _R], result: object = None, error: TransportError | None = None
) -> Action | _R:
    """Resume ``flow`` with an action's result (or its error); return the next action or the result.

    Raises whatever the flow raises (a :class:`TransportError` it gave up on).
    """
    try:
        if error is not None:
            return flow.throw(error)
        return flow.send(result)
    except StopIteration as stop:
        value: _R = stop.value
        return value


def _unknown(error: TransportError) -> RecipientStatus:
    return RecipientStatus(
        status=UNKNOWN,
        response="connection lost after the message data was sent; the server may or "
        f"may not have accepted it, so it is not resent: {error}",
    )


def _ordered(
    keys: list[str], recipients: dict[str, RecipientStatus], esp_response: str | None
) -> SendStatus:
    return SendStatus(recipients={k: recipients[k] for k in keys}, esp_response=esp_response)


def _transaction(
    envelope: Envelope,
    recipients: list[tuple[str, str]],
    features: Mapping[str, str],
    pipelining: bool,
    progress: _Progress,
) -> Generator[Action, object, SendStatus]:
    """Run SMTP transactions for ``recipients`` until each has a final answer.

    Recipients refused with 452 (too many recipients) go in a further
    transaction, as long as the previous one made progress.
    """
    statuses: list[SendStatus] = []
    pending = recipients
    while pending:
        status = yield from _one_transaction(envelope, pending, features, pipelining, progress)
        statuses.append(status)
        retry = [
            (key, addr)
            for key, addr in pending
            if status.recipients[key].code == SMTPCode.INSUFFICIENT_STORAGE
        ]
        if not retry or len(retry) == len(pending):
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


def _replies(step: Step, progress: _Progress) -> Generator[Action, object, list[SMTPReply]]:
    replies = yield step
    assert isinstance(replies, list)
    if (
        progress.reused
        and not progress.replies
        and replies
        and replies[0].code == SMTPCode.SERVICE_UNAVAILABLE
    ):
        # A 421 before any reply of this transaction on a pooled connection:
        # the server closed it while it sat idle (an idle timeout), so it is
        # a dead connection to replace, not an answer about this message.
        raise ServerDisconnectedError(f"the server closed the idle connection: {replies[0]}")
    progress.replies += len(replies)
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


def _one_transaction(
    envelope: Envelope,
    recipients: list[tuple[str, str]],
    features: Mapping[str, str],
    pipelining: bool,
    progress: _Progress,
) -> Generator[Action, object, SendStatus]:
    encoding = "utf-8" if envelope.smtputf8 else "ascii"
    mail = _mail_command(envelope, features)
    rcpts = [f"RCPT TO:<{addr}>\r\n".encode(encoding) for _, addr in recipients]
    keys = [key for key, _ in recipients]

    def send_data() -> Generator[Action, object, SMTPReply]:
        yield Step(dot_stuff(envelope.chunks), 0)
        # Every byte of the message is with the server now: if its reply
        # never comes, the message's fate is unknown and it must not be resent.
        progress.data_sent = True
        (reply,) = yield from _replies(Step([], 1), progress)
        return reply

    data_reply: SMTPReply | None
    if pipelining:
        replies = yield from _replies(Step([mail, *rcpts, b"DATA\r\n"], len(rcpts) + 2), progress)
        mail_reply, rcpt_replies, data_reply = replies[0], replies[1:-1], replies[-1]
        accepted = mail_reply.is_positive and any(r.is_positive for r in rcpt_replies)
        _check_data_reply(data_reply)
        if data_reply.code == SMTPCode.START_INPUT:
            if accepted:
                data_reply = yield from send_data()
            else:
                # RFC 2920: DATA was accepted with no valid recipient; send an
                # empty message so the server discards the transaction.
                yield from _replies(Step([DATA_END], 1), progress)
                data_reply = None
        elif not accepted:
            data_reply = None
    else:
        (mail_reply,) = yield from _replies(Step([mail], 1), progress)
        rcpt_replies = []
        data_reply = None
        if mail_reply.is_positive:
            for command in rcpts:
                (reply,) = yield from _replies(Step([command], 1), progress)
                rcpt_replies.append(reply)
            if any(r.is_positive for r in rcpt_replies):
                (data_reply,) = yield from _replies(Step([b"DATA\r\n"], 1), progress)
                _check_data_reply(data_reply)
                if data_reply.code == SMTPCode.START_INPUT:
                    data_reply = yield from send_data()
    closing = SMTPCode.SERVICE_UNAVAILABLE in {
        mail_reply.code,
        *(r.code for r in rcpt_replies),
        data_reply.code if data_reply else 0,
    }
    if (data_reply is None or not data_reply.is_positive) and not closing:
        # End the failed transaction so the connection can serve the next one.
        yield from _replies(Step([b"RSET\r\n"], 1), progress)
    if not mail_reply.is_positive:
        rcpt_map: dict[str, SMTPReply] = {}
    else:
        rcpt_map = dict(zip(keys, rcpt_replies, strict=True))
    return status_from_transaction(
        keys, mail_reply=mail_reply, rcpt_replies=rcpt_map, data_reply=data_reply
    )
