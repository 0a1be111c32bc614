"""Fixtures for the ``amsdal-mail`` command line tests.

Every test starts with no ``AMSDAL_EMAIL_*`` variable and no CA bundle from
the environment, so only what a test sets applies. :func:`run` calls
:func:`amsdal_mail.cli.main` in-process and returns the exit status with what
it printed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import django
import pytest

from amsdal_mail.cli import main

#: MAILERS (``--mailer``) is Django 6.1+; elsewhere the module is not collected.
collect_ignore = [] if django.VERSION >= (6, 1) else ["test_mailcheck_mailers.py"]


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith("AMSDAL_EMAIL_"):
            monkeypatch.delenv(name)
    for name in ("SSL_CERT_FILE", "SSL_CERT_DIR"):
        monkeypatch.delenv(name, raising=False)
    yield


@dataclass
class Result:
    """What one run of the command printed, and its exit status."""

    code: int
    out: str
    err: str


class Runner:
    """Run ``amsdal-mail`` in-process, capturing its output."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def __call__(self, *argv: str) -> Result:
        self.capsys.readouterr()  # drop anything printed before
        code = main(list(argv))
        captured = self.capsys.readouterr()
        return Result(code, captured.out, captured.err)


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Runner:
    """Run ``amsdal-mail ARGS...`` in-process; returns :class:`Result`."""
    return Runner(capsys)


def at(server: object, *extra: str) -> list[str]:
    """Return the flags to reach ``server`` (anything with ``host`` and ``port``)."""
    host, port = getattr(server, "host"), getattr(server, "port")  # noqa: B009
    return ["--host", host, "--port", str(port), "--timeout", "5", *extra]
