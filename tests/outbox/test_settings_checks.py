"""AMSDAL_EMAIL_OUTBOX: defaults, parsing, and a system check for every bad value."""

from __future__ import annotations

from typing import Any

import pytest
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from django_amsdal_mail.outbox.checks import check_outbox_settings
from django_amsdal_mail.outbox.conf import OutboxSettings, outbox_settings


def test_defaults_are_designs(settings: Any) -> None:
    """Without the setting every key has DESIGN's default (and MAX_MESSAGE_SIZE 25 MiB)."""
    if hasattr(settings, "AMSDAL_EMAIL_OUTBOX"):
        del settings.AMSDAL_EMAIL_OUTBOX
    assert outbox_settings() == OutboxSettings(
        engine="tasks",
        task_backend="default",
        queue="email",
        mailer="default",
        max_attempts=6,
        retry_backoff=60.0,
        max_retry_delay=3600.0,
        max_age=86400.0,
        on_unknown="report",
        lease=60.0,
        max_message_size=25 * 1024 * 1024,
    )


def test_parsed_once_and_again_when_overridden(settings: Any) -> None:
    """The value is parsed once (the same object), and afresh after override_settings."""
    settings.AMSDAL_EMAIL_OUTBOX = {"ENGINE": "immediate", "MAX_ATTEMPTS": 3, "LEASE": 5}
    first = outbox_settings()
    assert first is outbox_settings()
    assert (first.engine, first.max_attempts, first.lease) == ("immediate", 3, 5.0)
    settings.AMSDAL_EMAIL_OUTBOX = {"ON_UNKNOWN": "resend"}
    assert outbox_settings().on_unknown == "resend"


def test_good_settings_pass_the_checks(settings: Any) -> None:
    """Every key with a good value: no check message."""
    settings.AMSDAL_EMAIL_OUTBOX = {
        "ENGINE": "immediate",
        "TASK_BACKEND": "mail",
        "QUEUE": "outgoing",
        "MAILER": "default",
        "MAX_ATTEMPTS": 2,
        "RETRY_BACKOFF": 0.5,
        "MAX_RETRY_DELAY": 10,
        "MAX_AGE": 100,
        "ON_UNKNOWN": "resend",
        "LEASE": 30,
        "MAX_MESSAGE_SIZE": 1000,
    }
    assert check_outbox_settings() == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            ["ENGINE"],
            checks.Error(
                "AMSDAL_EMAIL_OUTBOX must be a dict, not list.",
                hint="Set AMSDAL_EMAIL_OUTBOX = {...} with keys among ['ENGINE', 'LEASE', "
                "'MAILER', 'MAX_AGE', 'MAX_ATTEMPTS', 'MAX_MESSAGE_SIZE', 'MAX_RETRY_DELAY', "
                "'ON_UNKNOWN', 'QUEUE', 'RETRY_BACKOFF', 'TASK_BACKEND'].",
                id="amsdal_mail.outbox.E001",
            ),
        ),
        (
            {"RETRIES": 3},
            checks.Error(
                "AMSDAL_EMAIL_OUTBOX has an unknown key 'RETRIES'.",
                hint="The keys are ['ENGINE', 'LEASE', 'MAILER', 'MAX_AGE', 'MAX_ATTEMPTS', "
                "'MAX_MESSAGE_SIZE', 'MAX_RETRY_DELAY', 'ON_UNKNOWN', 'QUEUE', 'RETRY_BACKOFF', "
                "'TASK_BACKEND'].",
                id="amsdal_mail.outbox.E002",
            ),
        ),
        (
            {"ENGINE": "rq"},
            checks.Error(
                "AMSDAL_EMAIL_OUTBOX['ENGINE'] is 'rq'.",
                hint="Use one of ['tasks', 'celery', 'immediate'].",
                id="amsdal_mail.outbox.E003",
            ),
        ),
        (
            {"MAX_ATTEMPTS": 0},
            checks.Error(
                "AMSDAL_EMAIL_OUTBOX['MAX_ATTEMPTS'] is 0.",
                hint="Use a whole number >= 1.",
                id="amsdal_mail.outbox.E004",
            ),
        ),
        (
            {"MAX_MESSAGE_SIZE": 2.5},
            checks.Error(
                "AMSDAL_EMAIL_OUTBOX['MAX_MESSAGE_SIZE'] is 2.5.",
                hint="Use a whole number >= 1.",
                id="amsdal_mail.outbox.E004",
            ),
        ),
        (
            {"RETRY_BACKOFF": -1},
            checks.Error(
                "AMSDAL_EMAIL_OUTBOX['RETRY_BACKOFF'] is -1.",
                hint="Use a positive number of seconds.",
                id="amsdal_mail.outbox.E004",
            ),
        ),
        (
            {"LEASE": True},
            checks.Error(
                "AMSDAL_EMAIL_OUTBOX['LEASE'] is True.",
                hint="Use a positive number of seconds.",
                id="amsdal_mail.outbox.E004",
            ),
        ),
        (
            {"MAX_AGE": "1d"},
            checks.Error(
                "AMSDAL_EMAIL_OUTBOX['MAX_AGE'] is '1d'.",
                hint="Use a positive number of seconds.",
                id="amsdal_mail.outbox.E004",
            ),
        ),
        (
            {"ON_UNKNOWN": "retry"},
            checks.Error(
                "AMSDAL_EMAIL_OUTBOX['ON_UNKNOWN'] is 'retry'.",
                hint="Use one of ['report', 'resend'].",
                id="amsdal_mail.outbox.E005",
            ),
        ),
        (
            {"QUEUE": ""},
            checks.Error(
                "AMSDAL_EMAIL_OUTBOX['QUEUE'] is ''.",
                hint="Use a non-empty string.",
                id="amsdal_mail.outbox.E006",
            ),
        ),
    ],
    ids=lambda value: repr(value)[:40],
)
def test_each_bad_value_is_one_check_message(
    settings: Any, value: Any, expected: checks.CheckMessage
) -> None:
    """Each bad value gives exactly its check message (and, if an error, raises when used)."""
    settings.AMSDAL_EMAIL_OUTBOX = value
    assert check_outbox_settings() == [expected]
    if isinstance(expected, checks.Error):
        with pytest.raises(ImproperlyConfigured, match="AMSDAL_EMAIL_OUTBOX"):
            outbox_settings()


def test_every_problem_is_reported(settings: Any) -> None:
    """Several bad keys: one message each."""
    settings.AMSDAL_EMAIL_OUTBOX = {"ENGINE": "x", "LEASE": 0, "SPEED": 1}
    ids = [message.id for message in check_outbox_settings()]
    assert ids == ["amsdal_mail.outbox.E003", "amsdal_mail.outbox.E004", "amsdal_mail.outbox.E002"]


def test_the_app_registers_its_checks(settings: Any) -> None:
    """``manage.py check`` runs the outbox checks (the app's ready() registered them)."""
    settings.AMSDAL_EMAIL_OUTBOX = {"ENGINE": "x"}
    tag = getattr(checks.Tags, "mail", "mail")
    ids = [message.id for message in checks.run_checks(tags=[tag])]
    assert "amsdal_mail.outbox.E003" in ids
