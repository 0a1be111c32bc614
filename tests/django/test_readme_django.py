"""The Django examples in README.md run as written against a real SMTP server.

The outbox's (README's "Outbox (background sending)" and docs/outbox.md, the same
tests for both) run too: the setup block names real apps and valid settings, the
``enqueue()`` example sends through the ``immediate`` engine once committed, the
settings table is conf.py's keys and defaults, the worker commands name the queue.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import re
from pathlib import Path
from typing import Any

import pytest
from django.core import mail
from django.core.mail import EmailMessage

from django_amsdal_mail.signals import post_send, pre_send
from tests.smtpd import RecordingServer

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = README.read_text(encoding="utf-8").split("## Django\n", 1)[1].split("\n## ", 1)[0]
BLOCKS = re.findall(r"```python\n(.*?)```", SECTION, re.S)


def _block(marker: str) -> str:
    (source,) = [b for b in BLOCKS if marker in b]
    return source


def test_backend_path_in_the_readme_is_importable() -> None:
    """The EMAIL_BACKEND line of the README names the real backend class."""
    path = re.search(r'EMAIL_BACKEND = "([\w.]+)"', _block("EMAIL_BACKEND")).group(1)  # type: ignore[union-attr]
    module, _, name = path.rpartition(".")
    assert getattr(importlib.import_module(module), name).__name__ == "EmailBackend"


def test_mailers_example_builds_each_mailer() -> None:
    """Each MAILERS entry of the README builds a backend with its OPTIONS."""
    namespace: dict[str, Any] = {}
    exec(_block("MAILERS = {"), namespace)  # noqa: S102 - our own documentation
    from django_amsdal_mail.backend import EmailBackend

    hosts = {}
    for alias, config in namespace["MAILERS"].items():
        assert config["BACKEND"] == "django_amsdal_mail.backend.EmailBackend"
        hosts[alias] = EmailBackend(**config["OPTIONS"]).host
    assert hosts == {"default": "smtp.example.com", "bulk": "bulk-relay.internal"}


def test_signal_example_cancels_and_records(configured: Any, server: RecordingServer) -> None:
    """The README's receivers cancel a test address and see each recipient's status."""
    namespace: dict[str, Any] = {}
    exec(_block("@receiver(post_send)"), namespace)  # noqa: S102 - our own documentation
    try:
        sent = mail.get_connection().send_messages(
            [
                EmailMessage("a", "b", "from@example.com", ["x@test.invalid"]),
                EmailMessage("c", "d", "from@example.com", ["real@example.com"]),
            ]
        )
    finally:
        pre_send.disconnect(namespace["stop_test_addresses"])
        post_send.disconnect(namespace["record"])
    assert sent == 1
    assert [m.rcpt_tos for m in server.messages] == [["real@example.com"]]


def test_async_example_sends(configured: Any, server: RecordingServer) -> None:
    """The README's async view sends its message."""
    namespace: dict[str, Any] = {}
    exec(_block("asend_mail"), namespace)  # noqa: S102 - our own documentation
    asyncio.run(namespace["view"](None))
    assert [m.rcpt_tos for m in server.messages] == [["to@example.com"]]


def test_every_system_check_is_listed() -> None:
    """The README's list of system checks names every check id the app defines."""
    import django_amsdal_mail

    # The app's own modules (its sub-apps have checks of their own).
    modules = Path(django_amsdal_mail.__file__).parent.glob("*.py")
    source = "".join(module.read_text(encoding="utf-8") for module in modules)
    ids = set(re.findall(r'"amsdal_mail\.([EW]\d{3})"', source))
    assert {"E001", "W001", "W002"} <= ids
    listed = SECTION.split("**System checks**", 1)[1].split("\n\n", 1)[0]
    assert ids <= set(re.findall(r"\b([EW]\d{3})\b", listed))


# -- the outbox: README's "Outbox (background sending)" and docs/outbox.md ----------------

ROOT = README.parent
OUTBOX_SECTION = (
    README.read_text(encoding="utf-8")
    .split("## Outbox (background sending)\n", 1)[1]
    .split("\n## ", 1)[0]
)
OUTBOX_DOCS = (ROOT / "docs" / "outbox.md").read_text(encoding="utf-8")
#: Where each outbox text lives, for the tests that read both.
OUTBOX_TEXTS = {"README": OUTBOX_SECTION, "docs/outbox.md": OUTBOX_DOCS}


def _outbox_block(text: str, marker: str) -> str:
    (source,) = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if marker in b]
    return source


@pytest.mark.parametrize("where", OUTBOX_TEXTS)
def test_outbox_setup_names_real_apps_backends_and_valid_settings(where: str) -> None:
    """The setup block's apps import, its backends load, its settings pass the checks' parser."""
    from django.utils.module_loading import import_string

    from django_amsdal_mail.outbox.backend import OutboxBackend
    from django_amsdal_mail.outbox.conf import OutboxSettings, inspect_outbox_settings

    namespace: dict[str, Any] = {}
    exec(_outbox_block(OUTBOX_TEXTS[where], "INSTALLED_APPS"), namespace)  # noqa: S102
    apps = [app for app in namespace["INSTALLED_APPS"] if app is not Ellipsis]
    assert {"django_amsdal_mail.outbox", "django_tasks_db"} <= set(apps)
    for app in apps:
        assert importlib.util.find_spec(app) is not None, app
    assert import_string(namespace["EMAIL_BACKEND"]) is OutboxBackend
    parsed, problems = inspect_outbox_settings(namespace["AMSDAL_EMAIL_OUTBOX"])
    assert problems == [] and parsed is not None and parsed.engine == "tasks"
    (backend,) = namespace["TASKS"].values()
    assert import_string(backend["BACKEND"]).__name__ == "DatabaseBackend"
    assert OutboxSettings().queue in backend["QUEUES"]


@pytest.mark.django_db
@pytest.mark.parametrize("where", OUTBOX_TEXTS)
def test_outbox_enqueue_example_sends_on_commit(
    where: str,
    settings: Any,
    server: RecordingServer,
    django_capture_on_commit_callbacks: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The enqueue() example stores the message and, once committed, the worker sends it."""
    from django_amsdal_mail.outbox.models import OutboxMessage

    settings.EMAIL_BACKEND = "django_amsdal_mail.backend.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = server.host, server.port
    settings.AMSDAL_EMAIL_OUTBOX = {"ENGINE": "immediate"}
    namespace: dict[str, Any] = {"__name__": "__main__"}
    with django_capture_on_commit_callbacks(execute=True):
        exec(_outbox_block(OUTBOX_TEXTS[where], "enqueue("), namespace)  # noqa: S102
        assert server.messages == []

    queued = OutboxMessage.objects.get()
    assert (queued.priority, queued.state) == (5, "done")
    (received,) = server.messages
    assert received.rcpt_tos == ["customer@example.com"]
    assert received.message["Subject"] == "Your order"
    assert received.message["Message-ID"] == queued.message_id
    assert str(queued.id) in capsys.readouterr().out


def _table(text: str) -> dict[str, str]:
    """Return the settings table of ``text``: key -> default, as written."""
    return dict(re.findall(r"^\| `([A-Z_]+)` \| `([^`]+)` \|", text, re.M))


@pytest.mark.parametrize("where", OUTBOX_TEXTS)
def test_outbox_settings_table_is_conf(where: str) -> None:
    """Every AMSDAL_EMAIL_OUTBOX key is in the table, with conf.py's true default."""
    import ast
    from dataclasses import fields

    from django_amsdal_mail.outbox.conf import OutboxSettings

    table = _table(OUTBOX_TEXTS[where])
    defaults = OutboxSettings()
    assert set(table) == {f.name.upper() for f in fields(OutboxSettings)}
    for key, written in table.items():
        assert ast.literal_eval(written) == getattr(defaults, key.lower()), key


@pytest.mark.parametrize("where", OUTBOX_TEXTS)
def test_outbox_worker_commands_listen_on_the_outbox_queue(where: str) -> None:
    """The worker commands name the default QUEUE; the Celery block is valid settings."""
    from django_amsdal_mail.outbox.conf import OutboxSettings, inspect_outbox_settings

    text = " ".join(OUTBOX_TEXTS[where].split())
    queue = OutboxSettings().queue
    assert f"db_worker --queue-name {queue}" in text
    assert f"celery -A proj worker -Q {queue}" in text
    assert "django_amsdal_mail.outbox.tasks.deliver" in text
    assert "django_amsdal_mail.outbox.deliver" in text
    if where == "docs/outbox.md":
        namespace: dict[str, Any] = {}
        exec(_outbox_block(OUTBOX_DOCS, "CELERY_BROKER_URL"), namespace)  # noqa: S102
        parsed, problems = inspect_outbox_settings(namespace["AMSDAL_EMAIL_OUTBOX"])
        assert problems == [] and parsed is not None and parsed.engine == "celery"
        timeout = namespace["CELERY_BROKER_TRANSPORT_OPTIONS"]["visibility_timeout"]
        assert timeout > parsed.max_retry_delay


def test_outbox_docs_paths_exist() -> None:
    """Every repository path docs/outbox.md names exists."""
    roots = "tests|docs|demo|example_project|amsdal_mail|django_amsdal_mail"
    paths = set(re.findall(rf"`((?:{roots})/[\w./-]*)`", OUTBOX_DOCS))
    assert {"demo/outbox_part.py", "example_project/mysite/settings.py"} <= paths
    for path in paths:
        assert (ROOT / path).exists(), path


def _outbox_commands(text: str) -> list[str]:
    """Return the arguments of every ``manage.py amsdal_outbox ...`` quoted in ``text``."""
    return [
        " ".join(args.split())
        for args in re.findall(r"manage\.py\s+amsdal_outbox\s+([\w .-]+?)\s*(?:`|#|\n|\()", text)
    ]


@pytest.mark.django_db
@pytest.mark.parametrize("where", OUTBOX_TEXTS)
def test_outbox_commands_run_as_quoted(
    where: str, settings: Any, smtp_server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each quoted ``amsdal_outbox`` command runs; ``retry --failed`` queues the failed again."""
    from django.core.management import call_command

    from django_amsdal_mail.outbox import enqueue
    from django_amsdal_mail.outbox.models import OutboxRecipient

    busy = smtp_server(rcpt_replies={"busy@example.com": "450 4.2.1 Mailbox busy"})
    settings.EMAIL_BACKEND = "django_amsdal_mail.backend.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = busy.host, busy.port
    settings.AMSDAL_EMAIL_OUTBOX = {"ENGINE": "immediate"}
    from django_amsdal_mail.outbox.worker import deliver

    (row,) = enqueue(EmailMessage("s", "b", "from@example.com", ["busy@example.com"]))
    deliver(row.pk)
    recipient = OutboxRecipient.objects.get()
    assert recipient.status == "failed"

    commands = _outbox_commands(OUTBOX_TEXTS[where])
    assert {"status", "retry", "prune"} <= {c.split()[0] for c in commands}
    assert {c.split()[0] for c in commands} <= {"status", "retry", "prune", "deliver"}
    for command in commands:
        call_command("amsdal_outbox", *command.split())
        if command.startswith("retry") and "--unknown" not in command:
            recipient.refresh_from_db()
            assert recipient.status == "queued", command
    output = capsys.readouterr().out
    assert "failed" in output


def test_outbox_docs_list_every_outbox_check() -> None:
    """docs/outbox.md names every check id the outbox defines."""
    import django_amsdal_mail.outbox

    modules = Path(django_amsdal_mail.outbox.__file__).parent.glob("*.py")
    source = "".join(module.read_text(encoding="utf-8") for module in modules)
    ids = set(re.findall(r'"amsdal_mail\.outbox\.([EW]\d{3})"', source))
    assert {"E001", "E007", "W001"} <= ids
    listed = OUTBOX_DOCS.split("**System checks**", 1)[1].split("\n\n", 1)[0]
    assert ids <= set(re.findall(r"`([EW]\d{3})`", listed))


@pytest.mark.django_db
def test_outbox_sweep_command_sends_what_is_due(
    settings: Any, smtp_server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """The sweep quoted in docs/outbox.md sends a retry that fell due, and prints the count."""
    from datetime import timedelta

    from django.core.management import call_command
    from django.utils import timezone

    from django_amsdal_mail.outbox import enqueue
    from django_amsdal_mail.outbox.models import OutboxMessage, OutboxRecipient

    (command,) = re.findall(r"python manage\.py (amsdal_outbox deliver)\n", OUTBOX_DOCS)
    busy = smtp_server(rcpt_replies={"busy@example.com": "450 4.2.1 Mailbox busy"})
    settings.EMAIL_BACKEND = "django_amsdal_mail.backend.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = busy.host, busy.port
    settings.AMSDAL_EMAIL_OUTBOX = {"ENGINE": "immediate"}
    enqueue(
        EmailMessage("s", "b", "from@example.com", ["busy@example.com"]),
        run_after=timezone.now() - timedelta(seconds=1),
    )
    call_command(*command.split())
    assert capsys.readouterr().out == "Attempted 1 message.\n"
    assert OutboxRecipient.objects.get().status == "failed"
    assert busy.messages == []

    # The mailbox is free again and the backoff has passed (the rows say so, not a sleep).
    del busy.rcpt_replies["busy@example.com"]
    OutboxRecipient.objects.update(next_attempt_at=timezone.now())
    OutboxMessage.objects.update(next_attempt_at=timezone.now())
    call_command(*command.split())
    assert capsys.readouterr().out == "Attempted 1 message.\n"
    assert OutboxRecipient.objects.get().status == "sent"
    assert [m.rcpt_tos for m in busy.messages] == [["busy@example.com"]]


def test_readme_links_to_its_own_sections_resolve() -> None:
    """Every ``](#anchor)`` link of README.md names a heading (GitHub's slug) or an id."""
    text = README.read_text(encoding="utf-8")
    headings = re.findall(r"^#{1,6} (.+)$", text, re.M)
    slugs = {re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-") for h in headings}
    slugs |= set(re.findall(r'<a id="([\w-]+)"', text))
    links = set(re.findall(r"\]\(#([\w-]+)\)", text))
    assert "outbox-background-sending" in links
    assert links <= slugs, links - slugs
