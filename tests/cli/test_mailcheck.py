"""``manage.py amsdal_mailcheck``: the checks of ``amsdal-mail check`` from the Django settings.

Against real servers on 127.0.0.1 (tests/smtpd.py). The settings come from
pytest-django's ``settings`` fixture (``EMAIL_*``; on Django 6.1+ ``MAILERS``
too); one test runs the command in a child process for its real exit status.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from io import StringIO
from pathlib import Path
from typing import Any

import django
import pytest
from django.core.management import call_command

from tests.smtpd import ServerFactory, free_port

ROOT = Path(__file__).resolve().parents[2]
BACKEND = "django_amsdal_mail.backend.EmailBackend"


def mailcheck(*argv: str) -> tuple[int, str]:
    """Run the command in-process; return its exit status and what it printed."""
    out = StringIO()
    try:
        call_command("amsdal_mailcheck", *argv, stdout=out)
    except SystemExit as exit_:
        assert isinstance(exit_.code, int)
        return exit_.code, out.getvalue()
    return 0, out.getvalue()


def test_email_settings_starttls_and_auth(
    settings: Any, smtp_server: ServerFactory, ca_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", ca_file)
    server = smtp_server(tls="starttls", auth={"web@example.com": "s3cret"})
    settings.EMAIL_BACKEND = BACKEND
    settings.EMAIL_HOST, settings.EMAIL_PORT = server.host, server.port
    settings.EMAIL_USE_TLS = True
    settings.EMAIL_HOST_USER, settings.EMAIL_HOST_PASSWORD = "web@example.com", "s3cret"
    settings.DEFAULT_FROM_EMAIL = "noreply@example.com"
    code, out = mailcheck("--rcpt", "bob@example.com")
    assert code == 0, out
    assert f"Checking 127.0.0.1:{server.port} (STARTTLS, login 'web@example.com')" in out
    assert "TLS: TLSv1.3" in out and "certificate issuer:" in out
    assert "AUTH: PLAIN as 'web@example.com' (password): 235" in out
    assert "MAIL FROM:<noreply@example.com>: 250" in out  # DEFAULT_FROM_EMAIL as the sender
    assert "s3cret" not in out
    assert server.messages == []

    settings.EMAIL_HOST_PASSWORD = "wrong"
    code, out = mailcheck("--json")
    assert code == 5
    assert json.loads(out)["error"]["exit_code"] == 5


def test_django_smtp_backend_settings_are_checked_too(
    settings: Any, smtp_server: ServerFactory
) -> None:
    server = smtp_server(rcpt_replies={"nobody@example.com": "550 5.1.1 No such user"})
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = server.host, server.port
    code, out = mailcheck("--rcpt", "nobody@example.com", "--from", "me@example.com")
    assert code == 6
    assert "recipient refused: 550 5.1.1 No such user" in out


def test_untrusted_certificate(
    settings: Any, smtp_server: ServerFactory, untrusted_ssl_context: Any
) -> None:
    server = smtp_server(tls="ssl", server_context=untrusted_ssl_context)
    settings.EMAIL_BACKEND = BACKEND
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_USE_SSL = (
        server.host,
        server.port,
        True,
    )
    code, out = mailcheck()
    assert code == 4
    assert "not trusted by this machine" in out


def test_nothing_listening(settings: Any) -> None:
    port = free_port()
    settings.EMAIL_BACKEND = BACKEND
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
    code, out = mailcheck()
    assert code == 3
    assert f"nothing is listening on 127.0.0.1:{port}" in out


def test_configuration_problems(settings: Any) -> None:
    settings.EMAIL_BACKEND = BACKEND
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = True
    code, out = mailcheck()
    assert code == 2
    assert "EMAIL_USE_TLS/EMAIL_USE_SSL are mutually exclusive" in out

    del settings.EMAIL_USE_SSL
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    code, out = mailcheck()
    assert code == 2
    assert "not an SMTP backend: there is no server to check" in out


def test_mailer_option_before_django_6_1(settings: Any) -> None:
    if django.VERSION >= (6, 1):
        settings.MAILERS = {"default": {"BACKEND": BACKEND, "OPTIONS": {"host": "localhost"}}}
        code, out = mailcheck("--mailer", "bulk")
        assert code == 2
        assert "MAILERS has no alias 'bulk' (aliases: 'default')" in out
    else:
        code, out = mailcheck("--mailer", "bulk")
        assert code == 2
        assert "--mailer needs MAILERS" in out


def test_manage_py_exit_status(smtp_server: ServerFactory) -> None:
    """A child process: the exit status the shell sees (settings from the environment)."""
    server = smtp_server(rcpt_replies={"nobody@example.com": "550 5.1.1 No such user"})
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMSDAL_EMAIL_")}
    env |= {
        "DJANGO_SETTINGS_MODULE": "tests.django_settings",
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "example_project")]),
        "AMSDAL_EMAIL_HOST": server.host,
        "AMSDAL_EMAIL_PORT": str(server.port),
    }
    done = subprocess.run(
        [sys.executable, "-m", "django", "amsdal_mailcheck", "--rcpt", "nobody@example.com"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env,
    )
    assert done.returncode == 6, done.stdout + done.stderr
    assert "Problem: the server refused the recipient nobody@example.com." in done.stdout
