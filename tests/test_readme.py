"""README.md, followed literally: its examples and configuration rules are true.

Every Python example of the library runs as a script, as written, in a fresh
namespace (no name supplied by the test, no top-level ``await``), against an
in-process STARTTLS + AUTH server configured through the ``AMSDAL_EMAIL_*``
variables of the README's Gmail example. Its certificate comes from a test CA
trusted through ``SSL_CERT_FILE``, except for the example that shows the
per-connection ``ssl_context``, which must work without it. The files the
examples read (``invoice-1234.pdf``, ``header.png``, ``private-ca.pem``) are in
the current directory, as the README says.

The configuration rules it states (boolean spellings, empty variables) are
checked against the library; its quoted error texts and shell commands are
checked in ``tests/test_readme_texts.py``.
"""

from __future__ import annotations

import os
import re
import shutil
import ssl
from pathlib import Path
from typing import Any

import pytest

from amsdal_mail import ConfigurationError, get_connection
from amsdal_mail import config as config_module
from amsdal_mail.backends.smtp import SMTPBackend
from demo.samples import tiny_pdf, tiny_png
from tests.smtpd import RecordingServer

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
TEXT = README.read_text(encoding="utf-8")
GUARANTEES = (ROOT / "docs" / "guarantees.md").read_text(encoding="utf-8")
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


def _dkim_key() -> bytes:
    """Return a new RSA private key in PEM, for the DKIM example."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


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
    (tmp_path / "dkim-private.pem").write_bytes(_dkim_key())
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
    if "oauth2_token=" in source:
        _oauth_recipe(source, monkeypatch)
        return
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


def _oauth_recipe(source: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run an OAuth2 recipe: it builds a connection and fetches nothing (no network here)."""
    from amsdal_mail.oauth import CachedTokenProvider

    # The recipe logs in with a token instead of the environment's password.
    monkeypatch.delenv("AMSDAL_EMAIL_PASSWORD")
    if "service-account.json" in source:
        _write_service_account_key(Path("service-account.json"))
    conn = _run(source)["conn"]
    settings = conn.settings
    assert settings.host in ("smtp.office365.com", "smtp.gmail.com") and settings.use_tls
    assert settings.username and settings.password is None
    provider = settings.oauth2_token
    assert isinstance(provider, CachedTokenProvider) and provider.fetches == 0
    if "rate_limit=" in source:
        assert conn.budget is not None and conn.budget.rate == settings.rate_limit


def _write_service_account_key(path: Path) -> None:
    """Write a service account key file as Google issues them (a fresh RSA key)."""
    import json

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    info = {
        "type": "service_account",
        "project_id": "project",
        "private_key_id": "key-1",
        "private_key": pem,
        "client_email": "mailer@project.iam.gserviceaccount.com",
        "client_id": "1234567890",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    path.write_text(json.dumps(info), encoding="utf-8")


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
