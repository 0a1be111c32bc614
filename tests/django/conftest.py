"""Fixtures for the Django app's tests.

Django is configured by pytest-django from ``tests/django_settings.py`` (see
``pyproject.toml``). Modules that only make sense on some Django versions are
left out of collection on the others (``collect_ignore``), so no test is ever
skipped.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import django
import pytest
from django.dispatch import Signal

from tests.smtpd import RecordingServer, ServerFactory

#: Test modules for MAILERS, which only Django 6.1+ has.
collect_ignore = [] if django.VERSION >= (6, 1) else ["test_mailers.py"]

BACKEND = "django_amsdal_mail.backend.EmailBackend"


@pytest.fixture(autouse=True)
def _no_amsdal_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start every test without AMSDAL_EMAIL_* variables from the outside environment."""
    for name in list(os.environ):
        if name.startswith("AMSDAL_EMAIL_"):
            monkeypatch.delenv(name)


@pytest.fixture
def server(smtp_server: ServerFactory) -> RecordingServer:
    """A plain SMTP server on 127.0.0.1 that records what it receives."""
    return smtp_server()


#: The ways a project can select our backend on the installed Django.
CONFIGURATIONS = ["EMAIL_BACKEND", *(["MAILERS"] if django.VERSION >= (6, 1) else [])]


@pytest.fixture(params=CONFIGURATIONS)
def configured(request: pytest.FixtureRequest, settings: Any, server: RecordingServer) -> Any:
    """Route Django's mail API to ``server`` through our backend.

    Tests using it run once per configuration: ``EMAIL_BACKEND`` (Django 5.2+)
    and ``MAILERS`` (Django 6.1+).
    """
    if request.param == "MAILERS":
        settings.MAILERS = {
            "default": {"BACKEND": BACKEND, "OPTIONS": {"host": server.host, "port": server.port}}
        }
    else:
        settings.EMAIL_BACKEND = BACKEND
        settings.EMAIL_HOST = server.host
        settings.EMAIL_PORT = server.port
    return settings


Receiver = Callable[..., Any]


@pytest.fixture
def connect() -> Iterator[Callable[[Signal, Receiver], Receiver]]:
    """Connect signal receivers (strongly); every one is disconnected after the test."""
    connected: list[tuple[Signal, Receiver]] = []

    def connect(signal: Signal, receiver: Receiver) -> Receiver:
        signal.connect(receiver, weak=False)
        connected.append((signal, receiver))
        return receiver

    yield connect
    for signal, receiver in connected:
        signal.disconnect(receiver)


class Twin:
    """Drive EmailBackend through its sync or its async twin (the ``twin`` fixture)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode

    async def send(self, backend: Any, messages: list[Any]) -> int:
        """Send with send_messages() or asend_messages()."""
        if self.mode == "async":
            sent: int = await backend.asend_messages(messages)
            return sent
        count: int = backend.send_messages(messages)
        return count

    @contextlib.asynccontextmanager
    async def connected(self, backend: Any) -> AsyncIterator[Any]:
        """Hold one connection open: ``with backend`` or ``async with backend``."""
        if self.mode == "async":
            async with backend:
                yield backend
        else:
            with backend:
                yield backend

    def __repr__(self) -> str:
        return self.mode


@pytest.fixture(params=["sync", "async"])
def twin(request: pytest.FixtureRequest) -> Twin:
    """The sync or the async sending path; tests using it run once with each."""
    return Twin(request.param)
