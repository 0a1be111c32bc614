"""Every Python example in README.md runs, as written, against a real SMTP server.

The environment points the examples at an in-process STARTTLS + AUTH server
whose certificate comes from a test CA trusted through ``SSL_CERT_FILE``, the
way the README tells users to trust a private CA.
"""

from __future__ import annotations

import ast
import asyncio
import re
import types
from pathlib import Path
from typing import Any

import pytest

from demo.samples import tiny_pdf, tiny_png
from tests.smtpd import RecordingServer

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
# The examples that only talk to Django are run by the Django tests.
LIBRARY_BLOCKS = [b for b in BLOCKS if "django" not in b.lower()]


def _namespace() -> dict[str, Any]:
    users = [
        types.SimpleNamespace(name=name, email=f"{name.lower()}@example.com")
        for name in ("Ann", "Bob", "Cid")
    ]
    return {
        "pdf_bytes": tiny_pdf(),
        "header_bytes": tiny_png(),
        "users": users,
        "msg": None,
        "__name__": "readme_example",
    }


def _run(source: str, namespace: dict[str, Any]) -> None:
    code = compile(source, "README.md", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    result = eval(code, namespace)  # noqa: S307 - executing our own documentation
    if asyncio.iscoroutine(result):
        asyncio.run(result)


@pytest.fixture
def readme_server(
    smtp_server: Any, ca_file: str, monkeypatch: pytest.MonkeyPatch
) -> RecordingServer:
    server: RecordingServer = smtp_server(
        tls="starttls",
        auth={"you@gmail.com": "your-app-password"},
        rcpt_replies={"nobody@example.com": "550 5.1.1 No such user"},
    )
    for name, value in {
        "AMSDAL_EMAIL_BACKEND": "smtp",
        "AMSDAL_EMAIL_HOST": server.host,
        "AMSDAL_EMAIL_PORT": str(server.port),
        "AMSDAL_EMAIL_USER": "you@gmail.com",
        "AMSDAL_EMAIL_PASSWORD": "your-app-password",
        "AMSDAL_EMAIL_USE_TLS": "true",
        "SSL_CERT_FILE": ca_file,
    }.items():
        monkeypatch.setenv(name, value)
    return server


def test_readme_has_the_examples() -> None:
    """The README keeps its library examples (so this suite cannot pass vacuously)."""
    assert len(LIBRARY_BLOCKS) >= 8


@pytest.mark.parametrize("index", range(len(LIBRARY_BLOCKS)))
def test_readme_example_runs(index: int, readme_server: RecordingServer) -> None:
    """Each README example runs as written and what it sends reaches the server."""
    source = LIBRARY_BLOCKS[index]
    namespace = _namespace()
    if "[msg]" in source and "msg = EmailMessage" not in source:
        # The "EmailMessage directly" example continues the previous one.
        from amsdal_mail import EmailMessage

        namespace["msg"] = EmailMessage("Hi", "Body", "noreply@example.com", ["user@example.com"])
    before = len(readme_server.messages)
    _run(source, namespace)
    sends = source.count("send_mail(") + source.count("send_messages(")
    if "get_connection(\n    'smtp',\n    host='smtp.gmail.com'" in source:
        # Builds a connection for Gmail; nothing is sent.
        conn = namespace["conn"]
        assert conn.settings.host == "smtp.gmail.com" and conn.settings.use_tls
        assert "your-app-password" not in repr(conn)
        return
    assert sends, "an example that sends nothing should be handled above"
    assert len(readme_server.messages) > before
    status = namespace.get("status")
    if status is not None:
        assert status.get_successful_recipients()
    for received in readme_server.messages[before:]:
        assert received.auth_user == "you@gmail.com"
        assert received.tls
