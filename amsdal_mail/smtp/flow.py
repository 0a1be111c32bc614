"""Delivering a message, as pure logic: connect, transact, retry what is temporary.

:func:`send_flow` and :func:`connect_flow` are generators. They yield
actions (:class:`Connect`, :class:`Sleep`, and the transaction's
:class:`~amsdal_mail.smtp.transaction.Step`) and are sent each action's
result, or have the :class:`~amsdal_mail.TransportError` it raised thrown
in. A driver (:mod:`.sync`, :mod:`.aio`, through :class:`.driver.FlowRun`)
carries the actions out; every decision is made here.
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Mapping
from dataclasses import dataclass

from ..exceptions import (
    AuthenticationError,
    NotSupportedError,
    ProtocolError,
    TLSError,
    TransportError,
)
from ..status import FAILED, INVALID, REJECTED, UNKNOWN, RecipientStatus, SendStatus, SMTPCode
from .handshake import TokenRefusedError
from .transaction import Envelope, Progress, Step, transaction

__all__ = [
    "Action",
    "Connect",
    "Connection",
    "RetryPolicy",
    "Sleep",
    "Throttle",
    "connect_flow",
    "send_flow",
]

logger = logging.getLogger("amsdal_mail.smtp")


@dataclass(frozen=True, slots=True)
class Connect:
    """Make sure a connection is ready; the flow is sent a :class:`Connection`.

    With ``fresh`` the current connection (if any) is dropped and a new one made.
    With ``refresh_token`` (only with ``fresh``) an OAuth2 login asks the token
    provider with ``force_refresh=True``: the server refused the token before.
    """

    fresh: bool = False
    refresh_token: bool = False


@dataclass(frozen=True, slots=True)
class Connection:
    """What the driver tells the flow about the connection it is using."""

    #: The server's EHLO keywords, lower case, with their parameters.
    features: Mapping[str, str]
    #: True when the connection served an earlier message (it may have gone stale).
    reused: bool


@dataclass(frozen=True, slots=True)
class Sleep:
    """Wait ``seconds`` before going on (backoff before a retry); the flow is sent None."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Throttle:
    """Wait until the backend's ``rate_limit`` lets a message start; the flow is sent None."""


Action = Step | Connect | Sleep | Throttle


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


def _connection(result: object) -> Connection:
    assert isinstance(result, Connection), f"Connect must be answered with a Connection: {result!r}"
    return result


def _refresh(error: TransportError, refreshed: bool) -> bool:
    """Return True when ``error`` is a refused OAuth2 token worth one refresh."""
    if isinstance(error, TokenRefusedError) and not refreshed:
        logger.info(
            "the server refused the OAuth2 token; asking the provider for a new one "
            "(force_refresh=True) on a new connection"
        )
        return True
    return False


def send_flow(
    envelope: Envelope, policy: RetryPolicy, *, throttle: bool = False
) -> Generator[Action, object, SendStatus]:
    """Deliver one message: connect, transact, retry what is temporary; return its status.

    With ``throttle`` (a ``rate_limit`` is set) each transaction waits for
    :class:`Throttle` first. The flow decides, after an action raised or the
    replies came:

    * the message data was sent but its reply never came: ``unknown``, never resent;
    * otherwise a retryable error (connection lost, timeout, 4xx at connect) is
      retried on a new connection, up to ``policy.max_retries`` times with
      backoff; a reused connection that turns out dead is replaced once for free;
    * recipients refused with 4xx (on MAIL, RCPT or DATA) are retried, only
      they, in a new transaction (on a new connection after a 421); 5xx is final;
    * an OAuth2 token the server refused is fetched again once, with
      ``force_refresh=True``, on a new connection;
    * anything else is raised to the caller.
    """
    keys = envelope.keys
    final: dict[str, RecipientStatus] = {}
    esp_response: str | None = None
    pending = list(envelope.recipients)
    attempt = 0
    fresh = refresh = refreshed = False
    free_reconnect = True
    while True:
        progress = Progress()
        try:
            connection = _connection((yield Connect(fresh, refresh)))
            fresh = refresh = False
            progress.reused = connection.reused
            refused = _unsendable(envelope, connection.features)
            if refused is not None:
                return refused
            if throttle:
                yield Throttle()
            status = yield from transaction(envelope, pending, connection.features, progress)
        except TransportError as error:
            if progress.data_sent or progress.finished:
                # Not resent: the message may be with the server. Those refused at RCPT,
                # or answered in an earlier transaction of the attempt, keep their answer.
                rest = _unknown(error) if progress.data_sent else _lost(error)
                final.update({k: progress.settled.get(k, rest) for k, _ in pending})
                return _ordered(keys, final, esp_response)
            if _refresh(error, refreshed):
                fresh = refresh = refreshed = True
                continue
            refresh = False
            if not _retryable(error):
                raise
            fresh = True
            if progress.reused and free_reconnect and not progress.replies:
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
        yield Sleep(delay)
        # A 421 means the server is closing the connection.
        fresh = any(final[key].code == SMTPCode.SERVICE_UNAVAILABLE for key, _ in transient)
        pending = transient


def connect_flow(policy: RetryPolicy) -> Generator[Action, object, Connection]:
    """Open a connection, retrying what is temporary as :func:`send_flow` does.

    For ``open()`` / ``aopen()``: a 421 greeting, a refused or timed-out
    connect or a dropped connection is retried up to ``policy.max_retries``
    times with backoff; TLS, AUTH and configuration problems are raised at once,
    except a refused OAuth2 token, fetched again once as :func:`send_flow` does.
    """
    attempt = 0
    refresh = refreshed = False
    while True:
        try:
            return _connection((yield Connect(attempt > 0 or refresh, refresh)))
        except TransportError as error:
            if _refresh(error, refreshed):
                refresh = refreshed = True
                continue
            refresh = False
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
    return Sleep(delay)


def _unknown(error: TransportError) -> RecipientStatus:
    return RecipientStatus(
        status=UNKNOWN,
        response="connection lost after the message data was sent; the server may or "
        f"may not have accepted it, so it is not resent: {error}",
    )


def _lost(error: TransportError) -> RecipientStatus:
    return RecipientStatus(
        status=FAILED,
        response="connection lost before the message data was sent to this recipient; "
        f"not delivered (it is not resent at once: others of the message have it): {error}",
    )


def _ordered(
    keys: list[str], recipients: dict[str, RecipientStatus], esp_response: str | None
) -> SendStatus:
    return SendStatus(recipients={k: recipients[k] for k in keys}, esp_response=esp_response)
