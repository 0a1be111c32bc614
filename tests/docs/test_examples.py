"""The site's code examples, run: every ```python block of the pages this suite owns.

Library pages: each block runs as a script, as written, in a fresh namespace,
against a real STARTTLS + AUTH server (``tests/smtpd.py``) that the
``AMSDAL_EMAIL_*`` variables point at (as the quickstart tells a reader to set
them); it refuses ``nobody@example.com`` (550) and ``busy@example.com`` (450), and
takes the OAuth2 token of the "your own provider" example. The files examples read
(``private-ca.pem``, ``dkim-private.pem``, ``service-account.json``) are in the
current directory.

Django pages: a block made only of UPPERCASE assignments is a settings fragment:
it must run (``...`` stands for the project's own entries), every amsdal_mail dotted
path it names must import, and its ``AMSDAL_EMAIL_OUTBOX`` must pass the outbox's
settings checks. Every other block runs with the Django test settings sending to the
server, and what it claims (its printed values in comments) is checked.
"""

from __future__ import annotations

import ast
import asyncio
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from django.core.mail import EmailMessage
from django.utils.module_loading import import_string

from amsdal_mail.tracking import parse_report
from tests.smtpd import RecordingServer
from tests.test_readme import _dkim_key, _write_service_account_key

DOCS = Path(__file__).resolve().parents[2] / "docs"
LIBRARY_PAGES = ["index.md", "quickstart.md", "configuration.md", "oauth2.md", "troubleshooting.md"]
DJANGO_PAGES = [
    "django.md",
    "tracking.md",
    "migrating/django-smtp.md",
    "migrating/django-celery-email.md",
    "migrating/django-mailer.md",
]
OUR_PACKAGES = ("amsdal_mail.", "django_amsdal_mail.")
TOKEN = "token-from-the-vault"


def _blocks(page: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", (DOCS / page).read_text(encoding="utf-8"), re.S)


def _is_settings(source: str) -> bool:
    """A settings fragment: only assignments to UPPERCASE names."""
    body = ast.parse(source).body
    return bool(body) and all(
        isinstance(node, ast.Assign)
        and all(isinstance(t, ast.Name) and t.id.isupper() for t in node.targets)
        for node in body
    )


def _run(source: str, name: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(compile(source, name, "exec"), namespace)  # noqa: S102 - our own documentation
    return namespace


LIBRARY = [(p, i) for p in LIBRARY_PAGES for i, b in enumerate(_blocks(p)) if not _is_settings(b)]
SETTINGS = [(p, i) for p in [*LIBRARY_PAGES, *DJANGO_PAGES] for i, b in enumerate(_blocks(p))]
SETTINGS = [(p, i) for p, i in SETTINGS if _is_settings(_blocks(p)[i])]
DJANGO_CODE = [
    (p, i) for p in DJANGO_PAGES for i, b in enumerate(_blocks(p)) if not _is_settings(b)
]


def test_the_pages_keep_their_examples() -> None:
    """So that the tests below cannot pass vacuously."""
    assert len(LIBRARY) >= 15
    assert len(SETTINGS) >= 6
    assert len(DJANGO_CODE) >= 6


@pytest.fixture
def docs_server(
    smtp_server: Any, ca_file: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> RecordingServer:
    server: RecordingServer = smtp_server(
        tls="starttls",
        auth={"you@example.com": "app-password"},
        oauth={"app@example.com": TOKEN},
        rcpt_replies={
            "nobody@example.com": "550 5.1.1 No such user",
            "busy@example.com": "450 4.2.1 Mailbox busy, try again later",
        },
    )
    for name, value in {
        "AMSDAL_EMAIL_BACKEND": "smtp",
        "AMSDAL_EMAIL_HOST": server.host,
        "AMSDAL_EMAIL_PORT": str(server.port),
        "AMSDAL_EMAIL_USER": "you@example.com",
        "AMSDAL_EMAIL_PASSWORD": "app-password",
        "AMSDAL_EMAIL_USE_TLS": "true",
        "SSL_CERT_FILE": ca_file,
    }.items():
        monkeypatch.setenv(name, value)
    shutil.copy(ca_file, tmp_path / "private-ca.pem")
    (tmp_path / "dkim-private.pem").write_bytes(_dkim_key())
    _write_service_account_key(tmp_path / "service-account.json")
    monkeypatch.chdir(tmp_path)
    return server


@pytest.mark.parametrize(("page", "index"), LIBRARY, ids=[f"{p}#{i}" for p, i in LIBRARY])
def test_library_example_runs(
    page: str,
    index: int,
    docs_server: RecordingServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Each block runs as a script; what it sends reaches the server; what it prints is so."""
    source = _blocks(page)[index]
    if "cafile=" in source:
        monkeypatch.delenv("SSL_CERT_FILE")  # the example's own context must be enough
    if "oauth2_token=" in source:
        monkeypatch.delenv("AMSDAL_EMAIL_PASSWORD")  # a token, not a password
    before = len(docs_server.messages)
    namespace = _run(source, f"{page}#{index}")
    printed = capsys.readouterr().out
    sends = "send_mail(" in source or "send_messages(" in source
    if "PrintingBackend()" in source:
        assert "would send Hi to ['alice@example.com']" in printed
    elif "use_tls=True, use_ssl=True" in source:
        assert "mutually exclusive" in printed
    elif "oauth2_token=vault_token" in source:
        assert printed.strip() == "True [False]"
        assert docs_server.auth_attempts and docs_server.messages[-1].rcpt_tos
    elif "oauth2_token=" in source or "mail_token = microsoft(" in source:
        from amsdal_mail.oauth import CachedTokenProvider

        conn = namespace.get("conn")
        provider = conn.settings.oauth2_token if conn else namespace["mail_token"]
        assert isinstance(provider, CachedTokenProvider) and provider.fetches == 0
    elif sends:
        assert len(docs_server.messages) > before, "the example sent nothing"
        for received in docs_server.messages[before:]:
            assert received.tls and received.auth_user == "you@example.com"
    else:
        pytest.fail(f"{page} block {index} is neither a sending example nor a known case")
    if "for n in range(12)" in source:
        assert printed.split() == ["True", "12"]
    if "get_successful_recipients())  # ['alice" in source:
        assert "['alice@example.com', 'bob@example.com']" in printed


@pytest.mark.parametrize(("page", "index"), SETTINGS, ids=[f"{p}#{i}" for p, i in SETTINGS])
def test_settings_fragment_is_valid(page: str, index: int) -> None:
    """A settings fragment runs; our dotted paths import; its outbox settings are accepted."""
    from django_amsdal_mail.outbox.conf import inspect_outbox_settings

    values = {k: v for k, v in _run(_blocks(page)[index], page).items() if k.isupper()}
    assert values

    def strings(value: Any) -> list[str]:
        if isinstance(value, str):
            return [value]
        if isinstance(value, dict):
            return [s for v in value.values() for s in strings(v)]
        if isinstance(value, (list, tuple)):
            return [s for v in value for s in strings(v)]
        return []

    for text in strings(values):
        if text.startswith(OUR_PACKAGES) and text.count(".") >= 2:
            import_string(text)
    if "AMSDAL_EMAIL_OUTBOX" in values:
        parsed, problems = inspect_outbox_settings(values["AMSDAL_EMAIL_OUTBOX"])
        assert parsed is not None, problems


@pytest.fixture
def django_server(smtp_server: Any, settings: Any) -> RecordingServer:
    server: RecordingServer = smtp_server(
        rcpt_replies={"nobody@example.com": "550 5.1.1 No such user"}
    )
    settings.EMAIL_BACKEND = "django_amsdal_mail.backend.EmailBackend"
    settings.EMAIL_HOST = server.host
    settings.EMAIL_PORT = server.port
    settings.MAILROOM_RECORD_STATUS = False
    settings.AMSDAL_EMAIL_OUTBOX = {"ENGINE": "immediate"}
    return server


@pytest.mark.django_db
@pytest.mark.parametrize(("page", "index"), DJANGO_CODE, ids=[f"{p}#{i}" for p, i in DJANGO_CODE])
def test_django_example_runs(
    page: str,
    index: int,
    django_server: RecordingServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Each Django block runs in a project sending to the server, and does what it says."""
    from django.core.mail import send_mail

    from django_amsdal_mail.signals import post_send, pre_send

    source = _blocks(page)[index]
    namespace = _run(source, f"{page}#{index}")
    if "@receiver(pre_send)" in source:
        try:
            assert send_mail("Hi", "Body", "a@example.com", ["x@test.invalid"]) == 0
            assert send_mail("Hi", "Body", "a@example.com", ["alice@example.com"]) == 1
        finally:
            pre_send.disconnect(namespace["skip_test_addresses"])
            post_send.disconnect(namespace["log_statuses"])
        assert [m.rcpt_tos for m in django_server.messages] == [["alice@example.com"]]
        assert "alice@example.com sent 250" in capsys.readouterr().out
    elif "async def contact" in source:
        response = asyncio.run(namespace["contact"](None))
        assert response.content == b"1 message sent"
        assert django_server.messages[-1].rcpt_tos == ["visitor@example.com"]
    elif "enqueue(" in source:
        assert capsys.readouterr().out.strip() == "queued ['queued']"
        assert namespace["queued"].priority == 10
    elif "refused = {" in source:
        assert capsys.readouterr().out.strip() == (
            "1 {'nobody@example.com': (550, '5.1.1 No such user')}"
        )
    elif "message.dsn = DSN(" in source:
        assert capsys.readouterr().out.strip() == "sent"
        assert "List-Unsubscribe" in django_server.messages[-1].message
    elif "@receiver(delivery)" in source:
        from django_amsdal_mail.outbox import enqueue
        from django_amsdal_mail.signals import delivery
        from django_amsdal_mail.tracking import record_event
        from tests.tracking.reports import report

        try:
            (row,) = enqueue(EmailMessage("Hi", "Body", "a@example.com", ["gone@example.net"]))
            failed = {"Final-Recipient": "rfc822; gone@example.net", "Action": "failed"}
            (event,) = parse_report(report([{**failed, "Status": "5.1.1"}], envid=row.message_id))
            recipient = record_event(event)
        finally:
            delivery.disconnect(namespace["on_delivery"])
        assert recipient is not None and recipient.delivery == "bounced"
        assert capsys.readouterr().out.strip() == "stop mailing gone@example.net"
    elif "rate_limit=5" in source:
        assert len(django_server.messages) == 3
    else:
        pytest.fail(f"{page} block {index} is not a known Django example")
