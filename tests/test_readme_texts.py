"""README.md, followed literally: the error texts it quotes and the commands it gives.

The errors are produced by the library against real servers started here (a
Postfix-like server that offers AUTH only after STARTTLS among them) and
compared with the text the README quotes, with its example host and port
replaced by the server's. The shell commands name extras, targets and paths
that exist, and the local SMTP server command really starts one.
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from amsdal_mail import ConfigurationError, EmailMessage, InvalidAddressError, get_connection
from amsdal_mail.backends.base import BaseBackend
from tests.smtpd import free_port
from tests.test_readme import GUARANTEES, ROOT, TEXT, _quote, _section

# -- troubleshooting: the error texts quoted are the library's --------------------------


@pytest.fixture
def auth_after_starttls(server_ssl_context: ssl.SSLContext) -> Iterator[tuple[str, int]]:
    """A server that offers AUTH only after STARTTLS, as Postfix does on port 587."""

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            return "250 OK"

    port = free_port()
    controller = Controller(
        Handler(),
        hostname="127.0.0.1",
        port=port,
        tls_context=server_ssl_context,
        require_starttls=True,
        auth_require_tls=True,
        authenticator=lambda *args: AuthResult(success=True),
    )
    controller.start()
    try:
        yield "127.0.0.1", port
    finally:
        controller.stop()


def _failure(connection: BaseBackend, mode: str) -> str:
    """Send one message over ``connection``; return the error as the README quotes it."""
    message = EmailMessage("Hi", "Body", "you@example.com", ["recipient@example.com"])
    with pytest.raises(OSError) as info:
        if mode == "async":
            asyncio.run(connection.asend_messages([message]))
        else:
            connection.send_messages([message])
    return f"{type(info.value).__name__}: {info.value}"


def _expect(quote: str, host: str, port: int, timeout: str = "30.0") -> str:
    for example in ("smtp.example.com:465", "smtp.example.com:587", "smtp.example.com:25"):
        quote = quote.replace(example, f"{host}:{port}")
    return quote.replace("30.0s", f"{timeout}s").removesuffix(" ...")


# The two TLS-mode mix-ups: (server, the option set by mistake, the quote, the fix).
MIXUPS = [
    ("ssl", "use_tls", "MailTimeoutError: timed out", "use_ssl=True"),
    ("starttls", "use_ssl", "TLSError: TLS with", "use_tls=True"),
]


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize(("tls", "option", "start", "fix"), MIXUPS)
def test_tls_mode_mixups_fail_as_quoted(
    mode: str,
    tls: str,
    option: str,
    start: str,
    fix: str,
    smtp_server: Any,
    client_ssl_context: ssl.SSLContext,
) -> None:
    """use_tls against port 465, use_ssl against 587: the errors the README quotes, its fix."""
    server = smtp_server(tls=tls)
    options: dict[str, Any] = {option: True, "timeout": 0.5, "ssl_context": client_ssl_context}
    connection = get_connection("smtp", host=server.host, port=server.port, **options)
    quoted = _quote(_section("Troubleshooting"), start)
    expected = _expect(quoted, server.host, server.port, "0.5")
    assert _failure(connection, mode).startswith(expected)
    advice = _section("Troubleshooting").split(quoted, 1)[1].split("\n  - ")[0]
    assert f"Use `{fix}`" in " ".join(advice.split())


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_no_auth_before_starttls_is_the_error_quoted(
    mode: str, auth_after_starttls: tuple[str, int], client_ssl_context: ssl.SSLContext
) -> None:
    """Credentials without use_tls on a 587-like server: the README's error, and its fix."""
    host, port = auth_after_starttls
    options: dict[str, Any] = {"username": "you", "password": "secret"}
    connection = get_connection(
        "smtp", host=host, port=port, ssl_context=client_ssl_context, **options
    )
    quoted = _quote(_section("Troubleshooting"), "NotSupportedError: SMTP AUTH")
    assert _failure(connection, mode).startswith(_expect(quoted, host, port))
    # The fix the README gives: use_tls=True.
    fixed = get_connection(
        "smtp", host=host, port=port, use_tls=True, ssl_context=client_ssl_context, **options
    )
    message = EmailMessage("Hi", "Body", "you@example.com", ["recipient@example.com"])
    assert fixed.send_messages([message]).is_success


def test_starttls_not_offered_is_the_error_quoted(smtp_server: Any) -> None:
    """use_tls against a server without STARTTLS: the README's NotSupportedError."""
    server = smtp_server()
    connection = get_connection("smtp", host=server.host, port=server.port, use_tls=True)
    quoted = _quote(_section("Troubleshooting"), "NotSupportedError: STARTTLS")
    assert _failure(connection, "sync").startswith(_expect(quoted, server.host, server.port))


def test_password_over_plain_text_is_the_error_quoted() -> None:
    """A password without TLS to a remote host: the README's ConfigurationError."""
    quoted = _quote(_section("Troubleshooting"), "ConfigurationError: refusing")
    with pytest.raises(ConfigurationError) as info:
        get_connection("smtp", host="smtp.example.com", port=25, username="you", password="pw")
    assert f"ConfigurationError: {info.value}".startswith(quoted)


def test_address_texts_of_the_guarantees() -> None:
    """The invalid-address text docs/guarantees.md quotes is the library's; quoted locals kept."""
    quoted = _quote(GUARANTEES, "Invalid address in to:")
    with pytest.raises(InvalidAddressError) as info:
        EmailMessage("Hi", "Body", "you@example.com", ["a@"])
    assert str(info.value) == quoted
    message = EmailMessage("Hi", "Body", "you@example.com", ['"john..doe"@example.com'])
    assert message.to == ['"john..doe"@example.com']


# -- the shell commands -----------------------------------------------------------------


def test_install_from_a_checkout_names_real_extras() -> None:
    """The editable install names extras that pyproject.toml defines."""
    (extras,) = re.findall(r"pip install -e '\.\[([\w,]+)\]'", _section("Install"))
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert set(extras.split(",")) <= set(project["optional-dependencies"])


def test_make_targets_and_paths_exist() -> None:
    """Every ``make`` target and repository path the README and docs/guarantees.md name exists."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    for target in set(re.findall(r"`make ([\w-]+)", TEXT)):
        assert re.search(rf"^{target}:", makefile, re.M), target
    roots = "tests|docs|demo|benchmarks|example_project|amsdal_mail|django_amsdal_mail|\\.ci"
    found = re.findall(rf"\b((?:{roots})/[\w./-]*)", TEXT + GUARANTEES)
    paths = set(found) - {"example_project/db.sqlite3"}
    assert {"tests/test_faults.py", "docs/guarantees.md"} <= paths
    for path in paths:
        assert (ROOT / path.rstrip("./")).exists(), path


def test_example_project_defaults_match_the_readme_server() -> None:
    """The local server of the example-project steps is where the project sends."""
    settings = (ROOT / "example_project" / "mysite" / "settings.py").read_text(encoding="utf-8")
    host = re.search(r'"EXAMPLE_EMAIL_HOST", "([\d.]+)"', settings).group(1)  # type: ignore[union-attr]
    port = re.search(r'"EXAMPLE_EMAIL_PORT", "(\d+)"', settings).group(1)  # type: ignore[union-attr]
    steps = _section("Django").split("### Example project", 1)[1]
    assert f"python -m aiosmtpd -n -l {host}:{port}" in steps
    assert f"`EXAMPLE_EMAIL_PORT` (default `{port}`)" in " ".join(steps.split())


def _wait_until_listening(host: str, port: int, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listening on {host}:{port}")


@pytest.mark.parametrize("section", ["Quick start", "Django"])
def test_the_local_smtp_server_command_works(section: str) -> None:
    """``python -m aiosmtpd -n -l HOST:PORT`` starts a server that prints what it gets."""
    (options,) = re.findall(r"python -m aiosmtpd (-n -l) 127\.0\.0\.1:\d+", _section(section))
    host, port = "127.0.0.1", free_port()
    args = [*options.split(), f"{host}:{port}"]
    process = subprocess.Popen(
        [sys.executable, "-u", "-m", "aiosmtpd", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _wait_until_listening(host, port, process)
        message = EmailMessage("Hello aiosmtpd", "Body", "you@example.com", ["r@example.com"])
        status = get_connection("smtp", host=host, port=port).send_messages([message])
        assert status.is_success
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=10)
    assert "Subject: Hello aiosmtpd" in output
