"""SMTP backend: sync through :mod:`smtplib`, async through :mod:`aiosmtplib`.

Both twins run the same pure steps of :mod:`amsdal_mail.smtp` (envelope,
transaction, retry flow, handshake policy, reply parser, error tables); the
drivers in :mod:`amsdal_mail.smtp.sync` and :mod:`amsdal_mail.smtp.aio` only
connect, move bytes and wrap TLS.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import threading
from collections.abc import Generator
from typing import Any

from ..config import SMTPSettings, env_var, resolve_smtp_settings
from ..exceptions import ConfigurationError
from ..message import DSN, EmailMessage, ValidatedMessage
from ..message.addresses import Address, parse_address
from ..mime.dkim import signer_from_settings
from ..smtp.aio import AsyncDriver
from ..smtp.flow import Action, RetryPolicy, connect_flow, send_flow
from ..smtp.limits import RateBudget
from ..smtp.sync import SyncDriver
from ..smtp.transaction import Envelope, prepare_envelope, split_by_sender
from ..status import SendStatus
from .base import BaseBackend, Checked

__all__ = ["SMTPBackend"]

logger = logging.getLogger("amsdal_mail.smtp")


def _is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class SMTPBackend(BaseBackend):
    """Send through an SMTP server (sync and async).

    Settings (``host``, ``port``, ``username``, ``password``, ``use_tls``,
    ``use_ssl``, ``timeout``, ``ssl_certfile``, ``ssl_keyfile``,
    ``ssl_context``, ``local_hostname``, ``allow_insecure_auth``, ``chunking``,
    ``max_retries``, ``retry_backoff``, ``oauth2_token``,
    ``max_messages_per_connection``, ``rate_limit``) come from the arguments,
    else the ``AMSDAL_EMAIL_*`` environment, else the defaults; see
    :func:`amsdal_mail.config.resolve_smtp_settings`.

    ``dsn_notify`` / ``dsn_ret`` ask every message for delivery status
    notifications where the server offers DSN (a message's own
    :class:`~amsdal_mail.DSN` wins); ``dkim_selector``, ``dkim_domain`` and
    ``dkim_private_key`` (or ``dkim_private_key_file``) sign every message
    (extra ``[dkim]``), the key checked here, at construction.

    Outside a ``with`` block each call opens and closes its own connection;
    inside one, a single connection serves every message (replaced by a new
    one after ``max_messages_per_connection`` messages). ``rate_limit`` is
    one budget for the backend: every connection, sync and async, draws
    from it.

    ``return_path`` is the envelope sender (MAIL FROM) of every message (a
    message's own ``return_path`` wins); with ``verp=True`` each recipient
    gets one transaction of its own, its MAIL FROM the return path tagged
    with a token signed with ``verp_secret`` (:mod:`amsdal_mail.tracking`).
    """

    def __init__(self, *, fail_silently: bool = False, **options: Any) -> None:
        super().__init__(fail_silently=fail_silently)
        self.settings: SMTPSettings = resolve_smtp_settings(options)
        s = self.settings
        if s.username and not s.is_encrypted and not s.allow_insecure_auth:
            if not _is_loopback(s.host):
                secret = "OAuth2 token" if s.oauth2_token is not None else "password"
                raise ConfigurationError(
                    f"refusing to send the {secret} for {s.username!r} unencrypted to "
                    f"{s.host}:{s.port}; set use_tls=True (STARTTLS, port 587) or "
                    "use_ssl=True (port 465), or allow_insecure_auth=True "
                    "(AMSDAL_EMAIL_ALLOW_INSECURE_AUTH) if you really mean it"
                )
        self._policy = RetryPolicy(max_retries=s.max_retries, backoff=s.retry_backoff)
        #: The rate budget every connection of this backend draws from (None: no limit).
        self.budget = RateBudget(s.rate_limit) if s.rate_limit is not None else None
        self._driver = SyncDriver(s, self.budget)
        self._lock = threading.RLock()
        self._adriver: AsyncDriver | None = None
        #: The DSN request of every message (dsn_notify, dsn_ret); None: none.
        self.dsn = DSN(notify=s.dsn_notify, ret=s.dsn_ret) if s.dsn_notify or s.dsn_ret else None
        #: Signs every message when DKIM is configured; None otherwise.
        self.signer = signer_from_settings(s)
        #: The envelope sender of every message without its own (None: its From address).
        self.return_path = _return_path(s.return_path)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.settings!r}>"

    # --- sync ------------------------------------------------------------------

    def open(self) -> bool:
        """Connect, STARTTLS and log in if needed; return True if this call connected."""
        with self._lock:
            if self._driver.is_connected():
                return False
            self._driver.run(connect_flow(self._policy))
            return True

    def close(self) -> None:
        """Send QUIT and close; a dead connection is just dropped."""
        with self._lock:
            self._driver.quit()

    def _is_open(self) -> bool:
        return self._driver.is_connected()

    def _envelope(self, valid: ValidatedMessage) -> Envelope:
        """Render ``valid`` with this backend's DSN request, DKIM signer and return path."""
        s = self.settings
        return prepare_envelope(
            valid,
            dsn=self.dsn,
            signer=self.signer,
            return_path=self.return_path,
            verp_secret=s.verp_secret if s.verp else None,
        )

    def _deliver(self, message: EmailMessage, valid: ValidatedMessage) -> SendStatus:
        envelope = self._envelope(valid)
        with self._lock:
            statuses = [
                self._driver.run(self._flow(part), message=True)
                for part in split_by_sender(envelope)
            ]
        return _logged(envelope, _merged(envelope, statuses))

    def _flow(self, envelope: Envelope) -> Generator[Action, object, SendStatus]:
        """Return the flow that delivers ``envelope`` with this backend's policy and budget."""
        return send_flow(envelope, self._policy, throttle=self.budget is not None)

    # --- async -----------------------------------------------------------------

    async def aopen(self) -> bool:
        """Async twin of :meth:`open`."""
        driver = self._shared_driver()
        if driver.is_connected():
            return False
        await driver.run(connect_flow(self._policy))
        return True

    async def aclose(self) -> None:
        """Async twin of :meth:`close`."""
        driver, self._adriver = self._adriver, None
        if driver is not None:
            await driver.quit()

    def _shared_driver(self) -> AsyncDriver:
        """Return the async connection that outlives a call (made on demand)."""
        if self._adriver is None:
            self._adriver = AsyncDriver(self.settings, self.budget)
        return self._adriver

    async def _adeliver(self, message: EmailMessage, valid: ValidatedMessage) -> SendStatus:
        return await self._adeliver_on(self._shared_driver(), valid)

    async def _adeliver_on(self, driver: AsyncDriver, valid: ValidatedMessage) -> SendStatus:
        envelope = self._envelope(valid)
        statuses = [
            await driver.run(self._flow(part), message=True) for part in split_by_sender(envelope)
        ]
        return _logged(envelope, _merged(envelope, statuses))

    async def _asend_batch(self, batch: list[Checked], concurrency: int) -> None:
        """Spread the batch over up to ``concurrency`` connections.

        The first lane uses the connection an ``async with`` holds; the
        others, or all when none is held, use connections of their own that
        are closed at the end of the batch.
        """
        queue = list(reversed(batch))
        shared = (
            self._adriver if self._adriver is not None and self._adriver.is_connected() else None
        )

        async def lane(driver: AsyncDriver) -> None:
            try:
                await self._asend_lane(queue, lambda _, valid: self._adeliver_on(driver, valid))
            finally:
                if driver is not shared:
                    await driver.quit()

        drivers = [
            shared if i == 0 and shared is not None else AsyncDriver(self.settings, self.budget)
            for i in range(min(concurrency, len(batch)))
        ]
        results = await asyncio.gather(*(lane(d) for d in drivers), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result


def _return_path(value: str | None) -> Address | None:
    """Return the backend's ``return_path`` as an address, refusing one that is not."""
    if value is None:
        return None
    try:
        return parse_address(value, field="return_path")
    except ValueError as exc:
        raise ConfigurationError(
            f"return_path ({env_var('return_path')}) must be an address such as "
            f"bounces@example.com: {exc}"
        ) from None


def _merged(envelope: Envelope, statuses: list[SendStatus]) -> SendStatus:
    """Return one status for the message from the statuses of its transactions."""
    if len(statuses) == 1:
        return statuses[0]
    recipients = {}
    for status in statuses:
        recipients.update(status.recipients)
    return SendStatus(
        recipients={key: recipients[key] for key in envelope.keys},
        esp_response=statuses[-1].esp_response if statuses else None,
    )


def _logged(envelope: Envelope, status: SendStatus) -> SendStatus:
    """Log each recipient's outcome at DEBUG level; return ``status``."""
    if logger.isEnabledFor(logging.DEBUG):
        for key in envelope.keys:
            rs = status.recipients[key]
            logger.debug("%s: %s (%s %s)", key, rs.status, rs.code, rs.response)
    return status
