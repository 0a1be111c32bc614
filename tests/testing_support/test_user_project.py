"""A user's project runs its own test suite with our test support, in a subprocess.

A throwaway Django project (``shop``, with an app ``signup`` whose ``post_send``
receiver flags refused addresses, connected for ``EmailBackend``) is written to
a temporary directory, with two test suites of its own:

* ``tests/`` for pytest with pytest-django, using the plugin's fixtures. The
  plugin comes from the installed package's ``pytest11`` entry point (the
  project's configuration does not name it);
* ``signup/tests.py`` for ``manage.py test``, with ``use_test_backend()``.

Each suite has a test that fails on purpose; the outcome of every test is
asserted, so a suite that passes by not running is caught. A third run hides
Django and aiosmtpd from a plain-Python project to show the plugin still loads
and that the fixtures needing them fail with the message naming the extra.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

TIMEOUT = 120

SETTINGS = """
import django

SECRET_KEY = "not secret"
INSTALLED_APPS = ["django_amsdal_mail", "signup"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
USE_TZ = True
DEFAULT_FROM_EMAIL = "shop@example.com"
REAL = "django_amsdal_mail.backend.EmailBackend"
# Production sends through amsdal_mail; the test runners replace this with locmem.
if django.VERSION >= (6, 1):
    MAILERS = {"default": {"BACKEND": REAL, "OPTIONS": {"host": "smtp.invalid"}}}
else:
    EMAIL_BACKEND = REAL
    EMAIL_HOST = "smtp.invalid"
"""

APP = """
from django.apps import AppConfig


class SignupConfig(AppConfig):
    name = "signup"

    def ready(self):
        from . import receivers  # noqa: F401
"""

RECEIVERS = """
from django.dispatch import receiver

from django_amsdal_mail.backend import EmailBackend
from django_amsdal_mail.signals import post_send

#: Addresses the mail server refused, as a real project would store them.
flagged = []


@receiver(post_send, sender=EmailBackend)
def flag_refused(sender, message, status, **kwargs):
    flagged.extend(status.get_failed_recipients())
"""

MAIL = '''
from django.core.mail import EmailMessage


def welcome(address):
    """Send the welcome message; return how many were sent (refusals do not raise)."""
    return EmailMessage("Welcome", "Hello!", None, [address]).send(fail_silently=True)
'''

MANAGE = """
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
"""

PYTEST_INI = """
[pytest]
DJANGO_SETTINGS_MODULE = shop.settings
testpaths = tests
addopts = -p no:cacheprovider
"""

PYTEST_TESTS = """
import django
import pytest
from django.core import mail

import amsdal_mail
from amsdal_mail import get_connection
from django_amsdal_mail.testing import TestEmailBackend, script_replies
from signup import receivers
from signup.mail import welcome


@pytest.fixture(autouse=True)
def _fresh_flags():
    receivers.flagged.clear()


def test_locmem_alone_runs_no_receiver(mailoutbox):
    assert welcome("gone@example.com") == 1
    assert len(mailoutbox) == 1
    assert receivers.flagged == []
    assert not hasattr(mailoutbox[0], "amsdal_status")


def test_refusal_is_flagged(amsdal_test_backend):
    amsdal_test_backend.script({"gone@example.com": (550, "5.1.1 No such user")})
    assert welcome("gone@example.com") == 0
    assert receivers.flagged == ["gone@example.com"]
    (message,) = amsdal_test_backend.outbox
    assert message.amsdal_status.recipients["gone@example.com"].status == "rejected"
    assert isinstance(mail.get_connection(), TestEmailBackend)


def test_unscripted_address_is_sent(amsdal_test_backend):
    assert welcome("ok@example.com") == 1
    assert receivers.flagged == []
    assert mail.outbox[0].amsdal_status.status == {"sent"}


@script_replies({"busy@example.com": (451, "4.3.0 Try later")})
def test_decorated_test_sees_a_temporary_failure(amsdal_test_backend):
    assert welcome("busy@example.com") == 0
    status = amsdal_test_backend.outbox[0].amsdal_status
    assert status.recipients["busy@example.com"].status == "failed"


def test_amsdal_outbox_takes_library_mail(amsdal_outbox):
    status = amsdal_mail.send_mail("Hi", "Hello", "me@example.com", ["you@example.com"])
    assert status.is_success
    assert [m.subject for m in amsdal_outbox] == ["Hi"]


def test_smtp_server_receives_and_refuses(smtp_server):
    smtp_server.script({"gone@example.com": (550, "5.1.1 No such user")})
    status = amsdal_mail.send_mail(
        "Hi", "Hello", "me@example.com", ["you@example.com", "gone@example.com"],
        connection=get_connection("smtp", **smtp_server.options),
    )
    assert status.recipients["gone@example.com"].status == "rejected"
    (received,) = smtp_server.messages
    assert received.rcpt_tos == ["you@example.com"]
    assert received.message["Subject"] == "Hi"


def test_django_through_the_real_backend_to_smtp_server(smtp_server, settings):
    options = {"host": smtp_server.host, "port": smtp_server.port}
    if django.VERSION >= (6, 1):
        settings.MAILERS = {"default": {"BACKEND": settings.REAL, "OPTIONS": options}}
    else:
        settings.EMAIL_BACKEND = settings.REAL
        settings.EMAIL_HOST, settings.EMAIL_PORT = options["host"], options["port"]
    smtp_server.script({"gone@example.com": (550, "5.1.1 No such user")})
    assert welcome("gone@example.com") == 0
    assert welcome("ok@example.com") == 1
    assert receivers.flagged == ["gone@example.com"]
    assert [m.rcpt_tos for m in smtp_server.messages] == [["ok@example.com"]]


def test_deliberately_failing(amsdal_test_backend):
    amsdal_test_backend.script({"gone@example.com": (550, "5.1.1 No such user")})
    welcome("gone@example.com")
    assert amsdal_test_backend.outbox[0].amsdal_status.status == {"sent"}, "DELIBERATE"
"""

PYTEST_OUTCOMES = {
    "test_locmem_alone_runs_no_receiver": "passed",
    "test_refusal_is_flagged": "passed",
    "test_unscripted_address_is_sent": "passed",
    "test_decorated_test_sees_a_temporary_failure": "passed",
    "test_amsdal_outbox_takes_library_mail": "passed",
    "test_smtp_server_receives_and_refuses": "passed",
    "test_django_through_the_real_backend_to_smtp_server": "passed",
    "test_deliberately_failing": "failed",
}

DJANGO_TESTS = """
from django.core import mail
from django.test import SimpleTestCase

from django_amsdal_mail.testing import script_replies, use_test_backend
from signup import receivers
from signup.mail import welcome


@use_test_backend()
class WelcomeTests(SimpleTestCase):
    def setUp(self):
        receivers.flagged.clear()

    def test_refusal_is_flagged(self):
        with script_replies({"gone@example.com": (550, "5.1.1 No such user")}):
            self.assertEqual(welcome("gone@example.com"), 0)
        self.assertEqual(receivers.flagged, ["gone@example.com"])
        self.assertEqual(mail.outbox[0].amsdal_status.status, {"rejected"})

    @script_replies({"busy@example.com": (451, "4.3.0 Try later")})
    def test_decorated_method_sees_a_temporary_failure(self):
        self.assertEqual(welcome("busy@example.com"), 0)
        self.assertEqual(mail.outbox[0].amsdal_status.status, {"failed"})

    def test_unscripted_address_is_sent(self):
        self.assertEqual(welcome("ok@example.com"), 1)
        self.assertEqual(len(mail.outbox), 1)  # emptied between tests by the runner
        self.assertEqual(receivers.flagged, [])

    def test_deliberately_failing(self):
        with script_replies({"gone@example.com": (550, "5.1.1 No such user")}):
            welcome("gone@example.com")
        self.assertEqual(receivers.flagged, [], "DELIBERATE")


class LocmemTests(SimpleTestCase):
    def test_without_the_test_backend_no_receiver_runs(self):
        self.assertEqual(welcome("gone@example.com"), 1)
        self.assertEqual(receivers.flagged, [])
"""

DJANGO_OUTCOMES = {
    "test_refusal_is_flagged": "ok",
    "test_decorated_method_sees_a_temporary_failure": "ok",
    "test_unscripted_address_is_sent": "ok",
    "test_deliberately_failing": "FAIL",
    "test_without_the_test_backend_no_receiver_runs": "ok",
}

PLAIN_TESTS = """
import amsdal_mail


def test_amsdal_outbox_without_django(amsdal_outbox):
    amsdal_mail.send_mail("Hi", "Hello", "me@example.com", ["you@example.com"])
    assert len(amsdal_outbox) == 1


def test_smtp_server_without_aiosmtpd(smtp_server):
    pass


def test_test_backend_without_django(amsdal_test_backend):
    pass
"""

#: A package that fails to import as an absent one does: Django and aiosmtpd are
#: installed in the shared environments and cannot be removed for one test.
HIDDEN = 'raise ImportError("No module named {name!r} (hidden for this test)")\n'


def write(root: Path, files: dict[str, str]) -> None:
    """Write ``files`` (path relative to ``root`` -> text) under ``root``."""
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The throwaway Django project, with both test suites."""
    root = tmp_path / "shop"
    write(
        root,
        {
            "manage.py": MANAGE,
            "pytest.ini": PYTEST_INI,
            "shop/__init__.py": "",
            "shop/settings.py": SETTINGS,
            "signup/__init__.py": "",
            "signup/apps.py": APP,
            "signup/receivers.py": RECEIVERS,
            "signup/mail.py": MAIL,
            "signup/tests.py": DJANGO_TESTS,
            "tests/test_welcome.py": PYTEST_TESTS,
        },
    )
    return root


def environment(**extra: str) -> dict[str, str]:
    """The environment of a user's shell: none of our suite's settings leak in."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AMSDAL_EMAIL_", "PYTEST_", "DJANGO_"))
        and name not in {"PYTHONPATH", "COV_CORE_SOURCE"}
    }
    env.update(extra)
    return env


def run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run ``python args`` in ``cwd``; return it finished (never hangs past TIMEOUT)."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def junit_outcomes(report: Path) -> dict[str, str]:
    """Return each test's outcome (passed, failed, error, skipped) from a JUnit XML report."""
    outcomes: dict[str, str] = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        outcome = "passed"
        for child in case:
            if child.tag in {"failure", "error", "skipped"}:
                outcome = child.tag.replace("failure", "failed")
        outcomes[case.attrib["name"]] = outcome
    return outcomes


def test_pytest_with_pytest_django_and_the_entry_point(project: Path) -> None:
    report = project / "report.xml"
    done = run(["-m", "pytest", "-rA", f"--junitxml={report}"], project, environment())
    output = done.stdout + done.stderr
    assert done.returncode == 1, output  # 1: tests ran and some failed
    assert junit_outcomes(report) == PYTEST_OUTCOMES, output
    (plugins,) = [line for line in done.stdout.splitlines() if line.startswith("plugins:")]
    assert "amsdal-mail" in plugins and "django" in plugins, plugins
    assert "DELIBERATE" in output


def test_the_plugin_can_be_disabled(project: Path) -> None:
    done = run(
        ["-m", "pytest", "-p", "no:amsdal_mail", "tests/test_welcome.py::test_refusal_is_flagged"],
        project,
        environment(),
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "fixture 'amsdal_test_backend' not found" in done.stdout


def test_manage_py_test_with_the_test_backend(project: Path) -> None:
    done = run(["manage.py", "test", "signup", "-v", "2"], project, environment())
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    outcomes = dict(
        re.findall(r"^(test_\w+) \(.*?\)(?:\n.*?)? \.\.\. (ok|FAIL|ERROR)$", output, re.M)
    )
    assert outcomes == DJANGO_OUTCOMES, output
    assert "Ran 5 tests" in output and "FAILED (failures=1)" in output, output
    assert "DELIBERATE" in output


def test_a_project_without_django_or_aiosmtpd(tmp_path: Path) -> None:
    root = tmp_path / "plain"
    write(
        root,
        {
            "pytest.ini": "[pytest]\naddopts = -p no:cacheprovider -p no:django\n",
            "test_plain.py": PLAIN_TESTS,
            "hidden/django/__init__.py": HIDDEN.format(name="django"),
            "hidden/aiosmtpd/__init__.py": HIDDEN.format(name="aiosmtpd"),
        },
    )
    report = root / "report.xml"
    done = run(
        ["-m", "pytest", "-rA", f"--junitxml={report}"],
        root,
        environment(PYTHONPATH=str(root / "hidden")),
    )
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert junit_outcomes(report) == {
        "test_amsdal_outbox_without_django": "passed",
        "test_smtp_server_without_aiosmtpd": "error",
        "test_test_backend_without_django": "error",
    }, output
    assert "the smtp_server fixture: amsdal_mail.testing.SMTPServer needs aiosmtpd: " in output
    assert "pip install 'amsdal-mail[testing]'" in output
    assert "the amsdal_test_backend fixture needs Django: pip install 'amsdal-mail[django]'" in (
        output
    )
