"""pytest plugin of amsdal-mail (entry point ``pytest11``, name ``amsdal_mail``).

Installed with the package, it offers three fixtures:

``amsdal_outbox``
    :data:`amsdal_mail.backends.locmem.outbox`, emptied before and after the
    test; for that test ``AMSDAL_EMAIL_BACKEND`` is ``locmem``, so amsdal_mail's
    ``send_mail()`` without a ``connection`` lands there.
``smtp_server``
    A running :class:`amsdal_mail.testing.SMTPServer` on 127.0.0.1 (a free port),
    stopped after the test. Needs aiosmtpd (``pip install 'amsdal-mail[testing]'``).
``amsdal_test_backend``
    Django mail goes through :class:`django_amsdal_mail.testing.TestEmailBackend`
    for the test (although the test runner switched it to locmem): a
    :class:`django_amsdal_mail.testing.CapturedMail` with ``outbox`` and
    ``script()``. Needs Django with configured settings (pytest-django does that).

Nothing here imports Django or aiosmtpd until a fixture that needs it is
used; a fixture whose dependency is missing fails that test with a message
naming what to install. Disable the plugin with ``-p no:amsdal_mail``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from .exceptions import MissingDependencyError

if TYPE_CHECKING:
    from django_amsdal_mail.testing import CapturedMail

    from .message import EmailMessage
    from .testing import SMTPServer

__all__ = ["amsdal_outbox", "amsdal_test_backend", "smtp_server"]


@pytest.fixture
def amsdal_outbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[EmailMessage]]:
    """amsdal_mail's locmem outbox, empty; ``AMSDAL_EMAIL_BACKEND=locmem`` for the test."""
    from .backends.locmem import outbox

    monkeypatch.setenv("AMSDAL_EMAIL_BACKEND", "locmem")
    outbox.clear()
    yield outbox
    outbox.clear()


@pytest.fixture
def smtp_server() -> Iterator[SMTPServer]:
    """A recording SMTP server on 127.0.0.1, scriptable with ``smtp_server.script({...})``."""
    from .testing import SMTPServer

    try:
        server = SMTPServer()
    except MissingDependencyError as exc:
        pytest.fail(f"the smtp_server fixture: {exc}", pytrace=False)
    with server:
        yield server


@pytest.fixture
def amsdal_test_backend() -> Iterator[CapturedMail]:
    """Django mail through ``TestEmailBackend`` for this test; ``.outbox`` and ``.script()``."""
    try:
        import django
    except ImportError as exc:
        pytest.fail(
            f"the amsdal_test_backend fixture needs Django: pip install 'amsdal-mail[django]' "
            f"({exc})",
            pytrace=False,
        )
    from django.apps import apps
    from django.conf import settings

    if not (settings.configured or os.environ.get("DJANGO_SETTINGS_MODULE")):
        pytest.fail(
            "the amsdal_test_backend fixture needs Django's settings: set "
            "DJANGO_SETTINGS_MODULE (pytest-django also reads its ini option)",
            pytrace=False,
        )
    if not apps.ready:  # without pytest-django nobody has set Django up
        django.setup()
    from django_amsdal_mail.testing import capture_mail

    with capture_mail() as captured:
        yield captured
