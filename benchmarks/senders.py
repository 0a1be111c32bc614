"""Every sender the benchmark compares, each timed around its own send calls.

A :class:`Sender` builds its messages (not timed), then ``run`` sends them
to the sink and returns the seconds the sending took, from before the
connection is opened to after it is closed. Each run checks afterwards that
every message was accepted, so a failure can never pass for speed.
"""

from __future__ import annotations

import asyncio
import smtplib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from . import profiles
from .profiles import Content
from .raw_sender import RawMessage, prepare, run_raw

LOCAL_HOSTNAME = "bench.localhost"
TIMEOUT = 30.0


@dataclass(frozen=True)
class Target:
    """Where and how to send: the sink's address and the connection count K."""

    host: str
    port: int
    concurrency: int


@dataclass(frozen=True)
class Sender:
    """One way of sending mail that the benchmark times."""

    name: str
    label: str
    ours: bool
    build: Callable[[Content], Any]
    run: Callable[[Sequence[Any], Target], float]
    bulk: bool = False  # uses K connections


class SendFailed(RuntimeError):
    """A benchmark run did not get every message accepted."""


def _check(ok: bool, what: str) -> None:
    if not ok:
        raise SendFailed(what)


# --- ours ------------------------------------------------------------------------


def _ours_backend(target: Target) -> Any:
    from amsdal_mail.backends.smtp import SMTPBackend

    return SMTPBackend(host=target.host, port=target.port, timeout=TIMEOUT)


def _expect_ours(messages: Sequence[Any], status: Any) -> None:
    _check(status.is_success, f"amsdal_mail reported failures: {status!r}")
    _check(all(m.status is not None and m.status.is_success for m in messages), "a message failed")


def run_ours_sync(messages: Sequence[Any], target: Target) -> float:
    backend = _ours_backend(target)
    start = time.perf_counter()
    status = backend.send_messages(messages)
    elapsed = time.perf_counter() - start
    _expect_ours(messages, status)
    return elapsed


def _run_ours_async(concurrency: int) -> Callable[[Sequence[Any], Target], float]:
    def run(messages: Sequence[Any], target: Target) -> float:
        backend = _ours_backend(target)
        k = concurrency or target.concurrency

        async def go() -> tuple[float, Any]:
            start = time.perf_counter()
            status = await backend.asend_messages(messages, concurrency=k)
            return time.perf_counter() - start, status

        elapsed, status = asyncio.run(go())
        _expect_ours(messages, status)
        return elapsed

    return run


def _run_django_backend(path: str) -> Callable[[Sequence[Any], Target], float]:
    def run(messages: Sequence[Any], target: Target) -> float:
        from django.utils.module_loading import import_string

        backend = import_string(path)(host=target.host, port=target.port, timeout=TIMEOUT)
        start = time.perf_counter()
        sent = backend.send_messages(messages)
        elapsed = time.perf_counter() - start
        _check(sent == len(messages), f"{path} sent {sent} of {len(messages)}")
        return elapsed

    return run


# --- peers -----------------------------------------------------------------------


def _prerendered(c: Content) -> tuple[str, list[str], bytes]:
    """Return (sender, recipients, bytes) rendered before the timer starts."""
    data = profiles.django(c).message().as_bytes(linesep="\r\n")
    return profiles.SENDER_ADDR, c.recipients, data


def run_smtplib(messages: Sequence[Any], target: Target) -> float:
    start = time.perf_counter()
    client = smtplib.SMTP(target.host, target.port, local_hostname=LOCAL_HOSTNAME, timeout=TIMEOUT)
    refused: list[dict[str, Any]] = []
    try:
        for sender, recipients, data in messages:
            refused.append(client.sendmail(sender, recipients, data))
    finally:
        client.quit()
    elapsed = time.perf_counter() - start
    _check(not any(refused), f"smtplib: refused recipients {refused[:1]}")
    return elapsed


def _run_aiosmtplib(bulk: bool) -> Callable[[Sequence[Any], Target], float]:
    def run(messages: Sequence[Any], target: Target) -> float:
        import aiosmtplib

        async def worker(queue: list[Any], errors: list[Any]) -> None:
            client = aiosmtplib.SMTP(
                hostname=target.host,
                port=target.port,
                local_hostname=LOCAL_HOSTNAME,
                timeout=TIMEOUT,
                use_tls=False,
                start_tls=False,
            )
            await client.connect()
            try:
                while queue:
                    refused, _ = await client.send_message(queue.pop())
                    errors.append(refused)
            finally:
                await client.quit()

        async def go() -> tuple[float, list[Any]]:
            queue = list(reversed(messages))
            errors: list[Any] = []
            k = min(target.concurrency, len(messages)) if bulk else 1
            start = time.perf_counter()
            await asyncio.gather(*(worker(queue, errors) for _ in range(k)))
            return time.perf_counter() - start, errors

        elapsed, errors = asyncio.run(go())
        _check(len(errors) == len(messages) and not any(errors), "aiosmtplib: refused")
        return elapsed

    return run


def _raw(c: Content) -> RawMessage:
    return prepare(*_prerendered(c))


def run_raw_bulk(messages: Sequence[Any], target: Target) -> float:
    start = time.perf_counter()
    sent = asyncio.run(run_raw(messages, target.host, target.port, target.concurrency))
    elapsed = time.perf_counter() - start
    _check(sent == len(messages), f"raw sender: {sent} of {len(messages)} accepted")
    return elapsed


def all_senders(*, concurrency: int, with_amsdal_django: bool) -> list[Sender]:
    """Return every sender, ours first; the Django backend only when importable."""
    k = concurrency
    senders = [
        Sender("ours-sync", "amsdal_mail sync, 1 connection", True, profiles.ours, run_ours_sync),
        Sender(
            "ours-async",
            "amsdal_mail async, 1 connection",
            True,
            profiles.ours,
            _run_ours_async(1),
        ),
        Sender(
            "ours-async-bulk",
            f"amsdal_mail async, {k} connections",
            True,
            profiles.ours,
            _run_ours_async(0),
            bulk=True,
        ),
    ]
    if with_amsdal_django:
        senders.append(
            Sender(
                "ours-django",
                "django_amsdal_mail backend",
                True,
                profiles.django,
                _run_django_backend("django_amsdal_mail.backend.EmailBackend"),
            )
        )
    senders += [
        Sender(
            "django",
            "Django SMTP backend",
            False,
            profiles.django,
            _run_django_backend("django.core.mail.backends.smtp.EmailBackend"),
        ),
        Sender(
            "smtplib",
            "smtplib, pre-rendered bytes",
            False,
            _prerendered,
            run_smtplib,
        ),
        Sender(
            "aiosmtplib",
            "aiosmtplib, 1 connection",
            False,
            profiles.stdlib,
            _run_aiosmtplib(False),
        ),
        Sender(
            "aiosmtplib-bulk",
            f"aiosmtplib, {k} connections",
            False,
            profiles.stdlib,
            _run_aiosmtplib(True),
            bulk=True,
        ),
        Sender(
            "raw-bulk",
            f"raw pipelined bytes (the floor), {k} connections",
            False,
            _raw,
            run_raw_bulk,
            bulk=True,
        ),
    ]
    return senders
