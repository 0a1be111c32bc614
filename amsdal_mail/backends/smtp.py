"""SMTP backend: sync through :mod:`smtplib`, async through :mod:`aiosmtplib`.

Both twins run the same pure steps (settings, envelope, rendering, the
transaction in :mod:`amsdal_mail.protocol`, reply-to-status mapping); they
differ only in how they connect and how they write bytes and read replies.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import smtplib
import socket
import ssl
import threading
from collections.abc import Generator, Mapping
from typing import TYPE_CHECKING, Any

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
from ..protocol import Step, prepare_envelope, transaction
from ..status import UNKNOWN, SendStatus, SMTPReply
from .base import BaseBackend

if TYPE_CHECKING:
    import aiosmtplib

__all__ = ["SMTPBackend"]

logger = logging.getLogger("amsdal_mail.smtp")


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
        self._connection: smtplib.SMTP | None = None
        self._lock = threading.RLock()
        self._aconnection: aiosmtplib.SMTP | None = None
        self._aconnection_features: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.settings!r}>"

    # --- errors --------------------------------------------------------------

    def _where(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    def _translate(self, exc: BaseException) -> TransportError:
        """Return the amsdal_mail error for an smtplib/aiosmtplib/socket error."""
        if isinstance(exc, TransportError):
            return exc
        where = self._where()
        cause: BaseException | None = exc
        while cause is not None:
            if isinstance(cause, ssl.SSLError):
                return TLSError(f"TLS with {where} failed: {cause}")
            cause = cause.__cause__
        name = type(exc).__name__
        code = getattr(exc, "smtp_code", None) or getattr(exc, "code", None)
        text = getattr(exc, "smtp_error", None) or getattr(exc, "message", None) or str(exc)
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        if "Authentication" in name:
            return AuthenticationError(code or 535, text)
        if "NotSupported" in name:
            return NotSupportedError(f"{where}: {text}")
        if isinstance(exc, TimeoutError) or "Timeout" in name:
            return MailTimeoutError(
                f"timed out after {self.settings.timeout}s talking to {where}: {exc}"
            )
        if "Disconnected" in name:
            return ServerDisconnectedError(f"{where} closed the connection: {text}")
        if isinstance(code, int) and code > 0:
            return ProtocolError(code, f"{text} (from {where})")
        return ConnectError(f"could not talk to {where}: {exc}")

    # --- sync connection -----------------------------------------------------

    def open(self) -> bool:
        """Connect, STARTTLS and log in if needed; return True if this call connected."""
        with self._lock:
            if self._connection is not None:
                return False
            s = self.settings
            context = s.make_ssl_context() if s.is_encrypted else None
            local = s.local_hostname or _local_hostname()
            timeout: Any = s.timeout
            conn: smtplib.SMTP | None = None
            try:
                if s.use_ssl:
                    conn = smtplib.SMTP_SSL(
                        s.host, s.port, local_hostname=local, timeout=timeout, context=context
                    )
                else:
                    conn = smtplib.SMTP(s.host, s.port, local_hostname=local, timeout=timeout)
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
                    conn.login(s.username, s.password or "")
            except (OSError, smtplib.SMTPException) as exc:
                if conn is not None:
                    conn.close()
                raise self._translate(exc) from None
            # Publish the connection only once TLS and AUTH succeeded.
            self._connection = conn
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

    def _run(self, conn: smtplib.SMTP, flow: _DataWatch) -> SendStatus:
        """Drive a transaction over an smtplib connection."""
        try:
            step = next(flow)
            while True:
                for chunk in step.payload:
                    conn.send(chunk)
                replies = []
                for _ in range(step.replies):
                    code, text = conn.getreply()
                    replies.append(SMTPReply(code, text.decode("utf-8", "replace")))
                step = flow.send(replies)
        except StopIteration as stop:
            result: SendStatus = stop.value
            return result

    def _send(self, message: EmailMessage) -> SendStatus:
        envelope = prepare_envelope(message)
        with self._lock:
            conn = self._connection
            if conn is None:
                raise ConnectError("not connected; call open() first")
            features = _features(conn.esmtp_features)
            watched = _DataWatch(transaction(envelope, features, pipelining=True))
            try:
                status = self._run(conn, watched)
            except (OSError, smtplib.SMTPException) as exc:
                self._connection = None
                conn.close()
                error = self._translate(exc)
                if watched.data_sent:
                    message.status = _unknown_status(envelope.keys, error)
                raise error from None
        _log_status(envelope.keys, status)
        return status

    # --- async connection ----------------------------------------------------

    async def _aconnect(self) -> tuple[aiosmtplib.SMTP, dict[str, str]]:
        aiosmtplib = _import_aiosmtplib()
        s = self.settings
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
                        f"{self._where()} does not offer STARTTLS, and use_tls is set; "
                        "not falling back to an unencrypted connection"
                    )
                await client.starttls(tls_context=context)
                await client.ehlo()
            if s.username:
                await client.login(s.username, s.password or "")
        except (OSError, aiosmtplib.SMTPException) as exc:
            client.close()
            raise self._translate(exc) from None
        return client, _features(client.esmtp_extensions)

    async def aopen(self) -> bool:
        """Async twin of :meth:`open`."""
        if self._aconnection is not None:
            return False
        self._aconnection, self._aconnection_features = await self._aconnect()
        return True

    async def aclose(self) -> None:
        """Async twin of :meth:`close`."""
        client, self._aconnection = self._aconnection, None
        if client is not None:
            await _aquit(client)

    async def _arun(self, client: aiosmtplib.SMTP, flow: _DataWatch) -> SendStatus:
        protocol = client.protocol
        if protocol is None:
            raise ServerDisconnectedError(f"{self._where()}: not connected")
        timeout = self.settings.timeout
        try:
            step = next(flow)
            while True:
                replies = []
                # aiosmtplib's protocol keeps one reply at a time, so steps are
                # never pipelined here (the flow is built with pipelining=False).
                for chunk in step.payload:
                    protocol.write(chunk)
                for _ in range(step.replies):
                    response = await protocol.read_response(timeout=timeout)
                    replies.append(SMTPReply(response.code, response.message))
                step = flow.send(replies)
        except StopIteration as stop:
            result: SendStatus = stop.value
            return result

    async def _asend_on(
        self, client: aiosmtplib.SMTP, features: dict[str, str], message: EmailMessage
    ) -> SendStatus:
        aiosmtplib = _import_aiosmtplib()
        envelope = prepare_envelope(message)
        watched = _DataWatch(transaction(envelope, features, pipelining=False))
        try:
            status = await self._arun(client, watched)
        except (OSError, aiosmtplib.SMTPException) as exc:
            client.close()
            error = self._translate(exc)
            if watched.data_sent:
                message.status = _unknown_status(envelope.keys, error)
            raise error from None
        _log_status(envelope.keys, status)
        return status

    async def _asend_batch(self, batch: list[EmailMessage], concurrency: int) -> None:
        for message in batch:
            message.status = None
        queue = list(reversed(batch))
        shared = self._aconnection
        workers = min(concurrency, len(batch))

        async def worker(index: int) -> None:
            own = index > 0 or shared is None
            if own:
                client, features = await self._aconnect()
            else:
                assert shared is not None
                client, features = shared, self._aconnection_features
            try:
                while queue:
                    message = queue.pop()
                    try:
                        message.status = await self._asend_on(client, features, message)
                    except TransportError as exc:
                        self._failed(message, exc)
                        raise
            finally:
                if own:
                    await _aquit(client)
                elif not client.is_connected:
                    self._aconnection = None

        results = await asyncio.gather(*(worker(i) for i in range(workers)), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result


class _DataWatch:
    """Wrap a transaction flow and remember whether the data step was reached."""

    def __init__(self, flow: Generator[Step, list[SMTPReply], SendStatus]) -> None:
        self._flow = flow
        self.data_sent = False

    def __iter__(self) -> _DataWatch:
        return self

    def __next__(self) -> Step:
        return self._note(next(self._flow))

    def send(self, replies: list[SMTPReply]) -> Step:
        return self._note(self._flow.send(replies))

    def _note(self, step: Step) -> Step:
        if step.is_data:
            self.data_sent = True
        return step


def _unknown_status(keys: list[str], error: TransportError) -> SendStatus:
    """Return the status of a message whose data was sent but never answered."""
    return SendStatus.uniform(
        keys,
        UNKNOWN,
        response="connection lost after the message data was sent; the server may or "
        f"may not have accepted it, so it is not resent: {error}",
    )


async def _aquit(client: aiosmtplib.SMTP) -> None:
    try:
        if client.is_connected:
            await client.quit()
    except Exception:  # noqa: BLE001 - QUIT on a dying connection is not an error
        client.close()


def _log_status(keys: list[str], status: SendStatus) -> None:
    if logger.isEnabledFor(logging.DEBUG):
        for key in keys:
            rs = status.recipients[key]
            logger.debug("%s: %s (%s %s)", key, rs.status, rs.code, rs.response)
