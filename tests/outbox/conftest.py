"""Fixtures for the outbox's tests: settings pointing at a test server, a fixed clock."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import django
import pytest
from django.dispatch import Signal

#: MAILERS exists only on Django 6.1+ (the module is left out elsewhere, never skipped).
collect_ignore = [] if django.VERSION >= (6, 1) else ["test_mailers.py"]

#: The time the tests start their clock at (every worker call takes ``now``).
T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


_BOUNDARY = re.compile(rb"={15}[0-9a-f]{24}")


def same_bytes(data: bytes) -> bytes:
    """Return ``data`` with each MIME boundary renamed by order of appearance.

    The renderer draws boundaries at random for every rendering (each attempt
    has its own); everything else must be byte for byte the same.
    """
    names: dict[bytes, bytes] = {}
    return _BOUNDARY.sub(lambda m: names.setdefault(m.group(), b"BOUNDARY-%d" % len(names)), data)


def at(seconds: float) -> datetime:
    """Return ``T0`` plus ``seconds``."""
    return T0 + timedelta(seconds=seconds)


@pytest.fixture(autouse=True)
def _no_amsdal_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start every test without AMSDAL_EMAIL_* variables from the outside environment."""
    for name in list(os.environ):
        if name.startswith("AMSDAL_EMAIL_"):
            monkeypatch.delenv(name)


@pytest.fixture
def outbox(settings: Any) -> Callable[..., Any]:
    """Configure the outbox: ``outbox(host, port, **AMSDAL_EMAIL_OUTBOX keys)``.

    The engine is ``immediate`` unless given; the EMAIL_* settings point at
    ``host:port`` through django_amsdal_mail's backend (what the worker sends with).
    """

    def configure(host: str, port: int, **options: Any) -> Any:
        settings.EMAIL_BACKEND = "django_amsdal_mail.backend.EmailBackend"
        settings.EMAIL_HOST = host
        settings.EMAIL_PORT = port
        settings.EMAIL_TIMEOUT = 5
        settings.AMSDAL_EMAIL_OUTBOX = {"ENGINE": "immediate", **options}
        return settings

    return configure


@pytest.fixture
def connect() -> Iterator[Callable[[Signal, Callable[..., Any]], Callable[..., Any]]]:
    """Connect signal receivers (strongly); every one is disconnected after the test."""
    connected: list[tuple[Signal, Callable[..., Any]]] = []

    def connect(signal: Signal, receiver: Callable[..., Any]) -> Callable[..., Any]:
        signal.connect(receiver, weak=False)
        connected.append((signal, receiver))
        return receiver

    yield connect
    for signal, receiver in connected:
        signal.disconnect(receiver)
