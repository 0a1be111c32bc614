"""SMTP backend: sync through :mod:`smtplib`, async through :mod:`aiosmtplib`.

Both twins run the same pure steps of :mod:`amsdal_mail.smtp` (envelope,
transaction, retry flow, handshake policy, reply parser, error tables); the
drivers in :mod:`amsdal_mail.smtp.sync` and :mod:`amsdal_mail.smtp.aio` only
connect, move bytes and wrap TLS.
"""

from __future__ import annotations

import asyncio
import atexit
import ipaddress
import logging
import threading
import time
from collections.abc import Generator
from typing import Any

from ..config import SMTPSettings, env_var, resolve_smtp_settings
from ..exceptions import ConfigurationError, TransportError
from ..message import DSN, EmailMessage, ValidatedMessage
from ..message.addresses import Address, parse_address
from ..mime.dkim import signer_from_settings
from ..smtp.aio import AsyncDriver, quit_reader
from ..smtp.batch import Batch
from ..smtp.flow import Action, RetryPolicy, connect_flow, send_flow
from ..smtp.limits import RateBudget
from ..smtp.pool import Idle, Pool, async_pool, sync_pool, sync_pools
from ..smtp.sync import SyncDriver, quit_link
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

    With ``pool=True`` a call (or a ``with`` block) that ends puts its
    logged-in connection back into the process's pool instead of saying
    QUIT, and the next call of any backend with the same server and login
    takes it (at most ``pool_size`` idle connections per server and login,
    each closed after ``pool_idle_timeout`` idle seconds, one idle for a few
    seconds checked with NOOP before use, one the server closed replaced;
    async connections are pooled per event loop; a child process after
    ``fork()`` never uses its parent's; the pools are closed at exit).
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
        """Connect, STARTTLS and log in if needed; return True if this call connected.

        With ``pool=True`` a pooled connection is taken first, when there is one.
        """
        with self._lock:
            if self._driver.is_connected():
                return False
            if not self._from_pool():
                self._driver.run(connect_flow(self._policy))
            return True

    def close(self) -> None:
        """Send QUIT and close (with ``pool=True``: put the connection back into the pool)."""
        with self._lock:
            detached = self._driver.detach() if self.settings.pool else None
            if detached is None:
                self._driver.quit()
                return
            for extra in sync_pool(self.settings).give(Idle(*detached, time.monotonic())):
                quit_link(extra.link)

    def _from_pool(self) -> bool:
        """With ``pool=True``, attach a live pooled connection; return True if one was."""
        if not self.settings.pool:
            return False
        pool: Pool[Any] = sync_pool(self.settings)
        while True:
            now = time.monotonic()
            entry, expired = pool.take(now)
            for old in expired:
                quit_link(old.link)
            if entry is None:
                return False
            if pool.needs_check(entry, now) and not self._driver.check(entry.link):
                entry.link.close()  # the server closed it while it rested
                continue
            self._driver.attach(entry.link, entry.features, entry.served)
            return True

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
            if not self._driver.is_connected():
                self._from_pool()
            statuses = [
                self._driver.run(self._flow(part), message=True)
                for part in split_by_sender(envelope)
            ]
        return _logged(envelope, _merged(envelope, statuses))

    def _send_batch(self, batch: list[Checked]) -> None:
        """Several messages in flight on the one connection where the server pipelines.

        Each message's status is the one it would have alone; only the
        round trips are shared. Without ``rate_limit`` and
        ``max_messages_per_connection`` (which pace or count messages one by one).
        """
        if not self._overlaps(batch):
            super()._send_batch(batch)
            return
        planned = _Planned(self, batch)
        with self._lock:
            if not self._driver.is_connected():
                self._from_pool()
            self._driver.run_batch(planned.flows)
        self._settle(planned)

    def _overlaps(self, batch: list[Checked]) -> bool:
        """Return True when ``batch`` may keep several messages in flight on a connection.

        Not with ``rate_limit`` or ``max_messages_per_connection``, which pace
        or count messages one by one.
        """
        s = self.settings
        return len(batch) > 1 and s.rate_limit is None and not s.max_messages_per_connection

    def _settle(self, planned: _Planned) -> None:
        """Give each message of a batch run the status its flows returned.

        Raises the first TransportError a flow gave up with (its message
        marked failed); the messages never started stay without status.
        """
        outcomes = iter(planned.flows.results)
        error: tuple[EmailMessage, ValidatedMessage, TransportError] | None = None
        for (message, valid), envelope, message_parts in zip(
            planned.batch, planned.envelopes, planned.parts, strict=True
        ):
            results = [next(outcomes) for _ in message_parts]
            failed = next((r for r in results if isinstance(r, TransportError)), None)
            if failed is not None:
                error = error or (message, valid, failed)
            elif all(isinstance(r, SendStatus) for r in results):
                statuses = [r for r in results if isinstance(r, SendStatus)]
                message.status = _logged(envelope, _merged(envelope, statuses))
        if error is not None:
            self._finish(*error)  # marks it failed and raises; the rest stay without status

    def _flow(self, envelope: Envelope) -> Generator[Action, object, SendStatus]:
        """Return the flow that delivers ``envelope`` with this backend's policy and budget."""
        return send_flow(envelope, self._policy, throttle=self.budget is not None)

    # --- async -----------------------------------------------------------------

    async def aopen(self) -> bool:
        """Async twin of :meth:`open`."""
        driver = self._shared_driver()
        if driver.is_connected():
            return False
        if not await self._afrom_pool(driver):
            await driver.run(connect_flow(self._policy))
        return True

    async def aclose(self) -> None:
        """Async twin of :meth:`close`."""
        driver, self._adriver = self._adriver, None
        if driver is not None:
            await self._arelease(driver)

    async def _afrom_pool(self, driver: AsyncDriver) -> bool:
        """Async twin of :meth:`_from_pool`, for ``driver`` (the running loop's pool)."""
        if not self.settings.pool:
            return False
        pool: Pool[Any] = async_pool(self.settings)
        while True:
            now = time.monotonic()
            entry, expired = pool.take(now)
            for old in expired:
                await quit_reader(old.link, self.settings.timeout)
            if entry is None:
                return False
            if pool.needs_check(entry, now) and not await driver.check(entry.link):
                entry.link.abort()
                continue
            driver.attach(entry.link, entry.features, entry.served)
            return True

    async def _arelease(self, driver: AsyncDriver) -> None:
        """Put ``driver``'s connection into the pool (``pool=True``), else QUIT it."""
        detached = driver.detach() if self.settings.pool else None
        if detached is None:
            await driver.quit()
            return
        for extra in async_pool(self.settings).give(Idle(*detached, time.monotonic())):
            await quit_reader(extra.link, self.settings.timeout)

    def _shared_driver(self) -> AsyncDriver:
        """Return the async connection that outlives a call (made on demand)."""
        if self._adriver is None:
            self._adriver = AsyncDriver(self.settings, self.budget)
        return self._adriver

    async def _adeliver(self, message: EmailMessage, valid: ValidatedMessage) -> SendStatus:
        return await self._adeliver_on(self._shared_driver(), valid)

    async def _adeliver_on(self, driver: AsyncDriver, valid: ValidatedMessage) -> SendStatus:
        envelope = self._envelope(valid)
        if not driver.is_connected():
            await self._afrom_pool(driver)
        statuses = [
            await driver.run(self._flow(part), message=True) for part in split_by_sender(envelope)
        ]
        return _logged(envelope, _merged(envelope, statuses))

    async def _asend_batch(self, batch: list[Checked], concurrency: int) -> None:
        """Spread the batch over up to ``concurrency`` connections.

        The first lane uses the connection an ``async with`` holds; the
        others, or all when none is held, use connections of their own that
        are closed at the end of the batch. Each connection takes the next
        message not started; where the server pipelines, several are in
        flight on each (as on the sync path).
        """
        shared = (
            self._adriver if self._adriver is not None and self._adriver.is_connected() else None
        )
        drivers = [
            shared if i == 0 and shared is not None else AsyncDriver(self.settings, self.budget)
            for i in range(min(concurrency, len(batch)))
        ]
        planned = _Planned(self, batch) if self._overlaps(batch) else None
        if planned is not None:
            flows = planned.flows

            async def run(driver: AsyncDriver) -> None:
                if not driver.is_connected():
                    await self._afrom_pool(driver)
                await driver.run_batch(flows)

        else:
            queue = list(reversed(batch))

            async def run(driver: AsyncDriver) -> None:
                await self._asend_lane(queue, lambda _, valid: self._adeliver_on(driver, valid))

        async def lane(driver: AsyncDriver) -> None:
            try:
                await run(driver)
            finally:
                if driver is not shared:
                    await self._arelease(driver)

        results = await asyncio.gather(*(lane(d) for d in drivers), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        if planned is not None:
            self._settle(planned)


class _Planned:
    """A batch made ready for :func:`~amsdal_mail.smtp.batch.schedule`: one flow per
    transaction (a message with several envelope senders has several)."""

    def __init__(self, backend: SMTPBackend, batch: list[Checked]) -> None:
        self.batch = batch
        self.envelopes = [backend._envelope(valid) for _, valid in batch]
        self.parts = [split_by_sender(envelope) for envelope in self.envelopes]
        self.flows = Batch(
            [backend._flow(part) for message_parts in self.parts for part in message_parts]
        )


def _close_pools() -> None:
    """Say QUIT on every pooled sync connection of this process (at exit)."""
    for pool in sync_pools():
        for entry in pool.drain():
            quit_link(entry.link)


atexit.register(_close_pools)


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
