"""A script that configures Django without SECRET_KEY can still send through the backend.

Django raises ImproperlyConfigured when an empty SECRET_KEY is read; the
backend reads it only as the default VERP secret, so it must not fail
there. Run in a child process: settings.configure() once per process.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.smtpd import ServerFactory

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import sys
import django
from django.conf import settings

settings.configure(
    EMAIL_BACKEND="django_amsdal_mail.backend.EmailBackend",
    EMAIL_HOST="127.0.0.1",
    EMAIL_PORT=int(sys.argv[1]),
)
django.setup()
from django.core.mail import send_mail

print(send_mail("Hi", "Body", "a@example.com", ["b@example.com"]))
"""


def test_send_mail_without_secret_key(smtp_server: ServerFactory) -> None:
    """settings.configure() without SECRET_KEY: send_mail() sends (1), nothing raised."""
    server = smtp_server()
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(server.port)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1"
    assert len(server.messages) == 1
