"""README.md, followed literally: its examples, error texts and commands are true.

Every Python example of the library runs as a script, as written, in a fresh
namespace (no name supplied by the test, no top-level ``await``), against an
in-process STARTTLS + AUTH server configured through the ``AMSDAL_EMAIL_*``
variables of the README's Gmail example. Its certificate comes from a test CA
trusted through ``SSL_CERT_FILE``, except for the example that shows the
per-connection ``ssl_context``, which must work without it. The files the
examples read (``invoice-1234.pdf``, ``header.png``, ``private-ca.pem``) are in
the current directory, as the README says.

The error texts the README quotes are produced by the library against real
servers; the shell commands name things that exist.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from amsdal_mail import ConfigurationError, EmailMessage, InvalidAddressError, get_connection
from amsdal_mail import config as config_module
from amsdal_mail.backends.base import BaseBackend
from amsdal_mail.backends.smtp import SMTPBackend
from demo.samples import tiny_pdf, tiny_png
from tests.smtpd import RecordingServer, free_port

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
TEXT = README.read_text(encoding="utf-8")
BLOCKS: list[str] = re.findall(r"```python\n(.*?)```", TEXT, re.S)
# The examples that only talk to Django are run by the Django tests.
LIBRARY_BLOCKS = [b for b in BLOCKS if "django" not in b.lower()]
PER_CONNECTION_CA = "cafile="


def _section(title: str) -> str:
    """Return the text of the README section ``title`` (``## Title``), up to the next one."""
    return TEXT.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def _block(marker: str) -> str:
    (source,) = [b for b in LIBRARY_BLOCKS if marker in b]
    return source


def _quote(section: str, start: str) -> str:
    """Return the backticked text of ``section`` that starts with ``start``, on one line."""
    quotes = [" ".join(q.split()) for q in re.findall(r"`([^`]+)`", section)]
    (quoted,) = [q for q in quotes if q.startswith(start)]
    return quoted


def _run(source: str) -> dict[str, Any]:
    """Run ``source`` as a script would run; return its module namespace."""
    # Compiled without PyCF_ALLOW_TOP_LEVEL_AWAIT: a bare await is a SyntaxError here.
    code = compile(source, "README.md", "exec")
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(code, namespace)  # noqa: S102 - executing our own documentation
    return namespace


@pytest.fixture
def readme_server(
    smtp_server: Any, ca_file: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> RecordingServer:
    """The README's server, configured by environment; the examples' files in the cwd."""
    server: RecordingServer = smtp_server(
        tls="starttls",
        auth={"you@gmail.com": "your-app-password"},
        rcpt_replies={
            "nobody@example.com": "550 5.1.1 No such user",
            "busy@example.com": "450 4.2.1 Mailbox busy, try again later",
        },
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
    (tmp_path / "invoice-1234.pdf").write_bytes(tiny_pdf())
    (tmp_path / "header.png").write_bytes(tiny_png())
    shutil.copy(ca_file, tmp_path / "private-ca.pem")
    monkeypatch.chdir(tmp_path)
    return server


def test_readme_has_the_examples() -> None:
    """The README keeps its library examples (so this suite cannot pass vacuously)."""
    assert len(LIBRARY_BLOCKS) >= 10


@pytest.mark.parametrize("index", range(len(LIBRARY_BLOCKS)))
def test_readme_example_runs(
    index: int, readme_server: RecordingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each README example runs as a script and what it sends reaches the server."""
    source = LIBRARY_BLOCKS[index]
    if PER_CONNECTION_CA in source:
        # The per-connection context must be enough on its own.
        monkeypatch.delenv("SSL_CERT_FILE")
    before = len(readme_server.messages)
    namespace = _run(source)
    if "host='smtp.gmail.com'" in source:
        # Builds a connection for Gmail; nothing is sent.
        conn = namespace["conn"]
        assert conn.settings.host == "smtp.gmail.com" and conn.settings.use_tls
        assert "your-app-password" not in repr(conn)
        return
    assert source.count("send_mail(") + source.count("send_messages("), "sends nothing"
    assert len(readme_server.messages) > before
    status = namespace.get("status")
    if status is not None:
        assert status.get_successful_recipients()
    for received in readme_server.messages[before:]:
        assert received.auth_user == "you@gmail.com"
        assert received.tls
    for filename in re.findall(r"Path\('([\w.-]+)'\)\.read_bytes\(\)", source):
        # The file the example reads arrives byte for byte, under its name.
        (received,) = readme_server.messages[before:]
        parts = {part.get_filename(): part for part in received.message.iter_attachments()}
        assert parts[filename].get_content() == Path(filename).read_bytes()


def test_per_connection_ca_is_needed(
    readme_server: RecordingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without SSL_CERT_FILE or the example's context, the test CA is not trusted."""
    monkeypatch.delenv("SSL_CERT_FILE")
    source = _block(PER_CONNECTION_CA).replace(", ssl_context=context", "")
    with pytest.raises(ssl.SSLError, match="certificate verify failed"):
        _run(source)
    assert readme_server.messages == []


def test_status_example_retries_only_temporary_refusals(readme_server: RecordingServer) -> None:
    """The status example's retry list holds the 4xx refusal, not the 5xx one."""
    namespace = _run(_block("retry_later"))
    assert namespace["retry_later"] == ["busy@example.com"]
    recipients = namespace["status"].recipients
    seen = {a: (r.status, r.code, r.command) for a, r in recipients.items()}
    assert seen == {
        "alice@example.com": ("sent", 250, "DATA"),
        "nobody@example.com": ("rejected", 550, "RCPT"),
        "busy@example.com": ("failed", 450, "RCPT"),
    }


def test_fail_silently_example_shows_the_cause(
    readme_server: RecordingServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With a wrong password, the fail_silently example prints the server's refusal."""
    monkeypatch.setenv("AMSDAL_EMAIL_PASSWORD", "wrong")
    namespace = _run(_block("fail_silently=True"))
    (result,) = namespace["status"].recipients.values()
    assert (result.status, result.code, result.command) == ("failed", None, None)
    printed = capsys.readouterr().out
    assert printed.startswith("could not talk to the server: not sent: 535 ")
    assert readme_server.messages == []


# -- configuration --------------------------------------------------------------------


def _bool_words() -> set[str]:
    sentence = _section("Configuration").split("Booleans accept", 1)[1].split("in any case")[0]
    return set(re.findall(r"`([^`]+)`", sentence))


def test_the_boolean_spellings_listed_are_all_there_are() -> None:
    """The README lists every spelling config.py accepts, and each is accepted."""
    listed = _bool_words()
    assert listed == (config_module._TRUE | config_module._FALSE) - {""}
    for word in listed:
        for spelling in (word, word.upper(), f" {word} "):
            expected = word in config_module._TRUE
            assert config_module.parse_bool(spelling, "X") is expected


def _empty_rule(kind: str) -> list[str]:
    """The variable suffixes the README's empty-value bullet ``kind`` names."""
    rules = _section("Configuration").split("**Empty variables.**", 1)[1].split("\n\n", 2)[1]
    (bullet,) = [b for b in rules.split("\n- ") if b.lstrip("- ").startswith(kind)]
    names = bullet.split("(", 1)[1].split(")", 1)[0]
    return re.findall(r"`([A-Z_]+)`", names)


@pytest.fixture
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No AMSDAL_EMAIL_* variable set."""
    for name in [n for n in os.environ if n.startswith("AMSDAL_EMAIL_")]:
        monkeypatch.delenv(name)
    return monkeypatch


def test_empty_boolean_or_number_is_the_error_the_readme_quotes(
    clean_environ: pytest.MonkeyPatch,
) -> None:
    """Each empty boolean or numeric variable the README names is refused, named."""
    quoted = _quote(_section("Configuration"), "ConfigurationError: AMSDAL_EMAIL_USE_TLS")
    names = _empty_rule("an error")
    assert "USE_TLS" in names and "PORT" in names
    for name in names:
        clean_environ.setenv(f"AMSDAL_EMAIL_{name}", "")
        with pytest.raises(ConfigurationError) as info:
            get_connection("smtp")
        clean_environ.delenv(f"AMSDAL_EMAIL_{name}")
        text = f"ConfigurationError: {info.value}"
        assert text == quoted.replace("USE_TLS", name)


def _smtp_settings() -> object:
    connection = get_connection("smtp")
    assert isinstance(connection, SMTPBackend)
    return connection.settings


def test_empty_string_variable_counts_as_unset(clean_environ: pytest.MonkeyPatch) -> None:
    """Each empty string variable the README names behaves as if it were not set."""
    names = _empty_rule("unset")
    unset = _smtp_settings()
    for name in names:
        clean_environ.setenv(f"AMSDAL_EMAIL_{name}", "")
        if name == "BACKEND":
            assert type(get_connection()) is SMTPBackend
        elif name == "FILE_PATH":
            with pytest.raises(ConfigurationError, match="needs a directory"):
                get_connection("file")
        else:
            assert _smtp_settings() == unset
        clean_environ.delenv(f"AMSDAL_EMAIL_{name}")
    rows = [line for line in _section("Configuration").splitlines() if line.startswith("|")]
    table = set(re.findall(r"`AMSDAL_EMAIL_([A-Z_]+)`", "\n".join(rows)))
    assert set(names) | set(_empty_rule("an error")) == table


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


def test_password_over_plain_text_is_the_error_quoted(clean_environ: pytest.MonkeyPatch) -> None:
    """A password without TLS to a remote host: the README's ConfigurationError."""
    quoted = _quote(_section("Troubleshooting"), "ConfigurationError: refusing")
    with pytest.raises(ConfigurationError) as info:
        get_connection("smtp", host="smtp.example.com", port=25, username="you", password="pw")
    assert f"ConfigurationError: {info.value}".startswith(quoted)


def test_address_texts_of_the_guarantees() -> None:
    """The invalid-address text the README quotes is the library's; a quoted local part is kept."""
    quoted = _quote(_section("Guarantees"), "Invalid address in to:")
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
    """Every ``make`` target and repository path the README names exists."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    for target in set(re.findall(r"`make ([\w-]+)", TEXT)):
        assert re.search(rf"^{target}:", makefile, re.M), target
    roots = "tests|docs|demo|benchmarks|example_project|amsdal_mail|django_amsdal_mail|\\.ci"
    paths = set(re.findall(rf"\b((?:{roots})/[\w./-]*)", TEXT)) - {"example_project/db.sqlite3"}
    assert "tests/test_faults.py" in paths
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
