"""The Django examples in README.md run as written against a real SMTP server."""

from __future__ import annotations

import asyncio
import importlib
import re
from pathlib import Path
from typing import Any

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
