"""The ``AMSDAL_EMAIL_OUTBOX`` setting, parsed once into :class:`OutboxSettings`.

Every key is optional::

    AMSDAL_EMAIL_OUTBOX = {
        "ENGINE": "tasks",          # "tasks", "celery" or "immediate"
        "TASK_BACKEND": "default",  # Django task backend alias ("tasks" engine)
        "QUEUE": "email",           # queue name given to the engine
        "MAILER": "default",        # which backend options send
        "MAX_ATTEMPTS": 6,
        "RETRY_BACKOFF": 60,        # seconds before the first retry, doubling
        "MAX_RETRY_DELAY": 3600,    # the longest wait between two attempts
        "MAX_AGE": 86400,           # seconds after the first attempt: no attempt later
        "ON_UNKNOWN": "report",     # or "resend" (once)
        "LEASE": 60,                # seconds a worker holds a message
        "MAX_MESSAGE_SIZE": 26214400,  # rendered bytes; larger messages are refused
    }

``ENGINE``: ``"tasks"`` sends with Django's task framework (``django.tasks``
on 6.0+, the ``django-tasks`` backport before; run ``manage.py db_worker
--queue-name <QUEUE>`` of ``django-tasks-db``, see
:mod:`django_amsdal_mail.outbox.tasks`); ``"celery"`` with a Celery worker;
``"immediate"`` in the calling process, on commit (development and tests).

:func:`inspect_outbox_settings` reports every problem without raising (for
the system checks); :func:`outbox_settings` returns the parsed value, or
raises ``ImproperlyConfigured`` naming the first problem.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Final

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

__all__ = [
    "ENGINES",
    "ON_UNKNOWN_CHOICES",
    "SETTING",
    "OutboxSettings",
    "SettingsProblem",
    "inspect_outbox_settings",
    "outbox_settings",
]

#: The name of the Django setting.
SETTING: Final = "AMSDAL_EMAIL_OUTBOX"
#: The engines ``ENGINE`` may name.
ENGINES: Final = ("tasks", "celery", "immediate")
#: The values ``ON_UNKNOWN`` may take.
ON_UNKNOWN_CHOICES: Final = ("report", "resend")

E_NOT_A_DICT: Final = "amsdal_mail.outbox.E001"
E_UNKNOWN_KEY: Final = "amsdal_mail.outbox.E002"
E_ENGINE: Final = "amsdal_mail.outbox.E003"
E_NUMBER: Final = "amsdal_mail.outbox.E004"
E_ON_UNKNOWN: Final = "amsdal_mail.outbox.E005"
E_NAME: Final = "amsdal_mail.outbox.E006"


@dataclass(frozen=True, slots=True)
class OutboxSettings:
    """The outbox's settings, with DESIGN's defaults (attribute ``x`` is key ``X``)."""

    engine: str = "tasks"
    task_backend: str = "default"
    queue: str = "email"
    mailer: str = "default"
    max_attempts: int = 6
    retry_backoff: float = 60.0
    max_retry_delay: float = 3600.0
    max_age: float = 86400.0
    on_unknown: str = "report"
    lease: float = 60.0
    max_message_size: int = 25 * 1024 * 1024


_KEYS: Final = {f.name.upper(): f.name for f in fields(OutboxSettings)}
_WHOLE: Final = frozenset({"MAX_ATTEMPTS", "MAX_MESSAGE_SIZE"})
_SECONDS: Final = frozenset({"RETRY_BACKOFF", "MAX_RETRY_DELAY", "MAX_AGE", "LEASE"})
_NAMES: Final = frozenset({"TASK_BACKEND", "QUEUE", "MAILER"})


@dataclass(frozen=True, slots=True)
class SettingsProblem:
    """One problem in ``AMSDAL_EMAIL_OUTBOX``: its text, a hint and the check id."""

    message: str
    hint: str
    id: str


def inspect_outbox_settings(
    raw: object,
) -> tuple[OutboxSettings | None, list[SettingsProblem]]:
    """Return the parsed settings (None if any problem) and every problem found."""
    if raw is None:
        return OutboxSettings(), []
    if not isinstance(raw, Mapping):
        return None, [
            SettingsProblem(
                f"{SETTING} must be a dict, not {type(raw).__name__}.",
                f"Set {SETTING} = {{...}} with keys among {sorted(_KEYS)}.",
                E_NOT_A_DICT,
            )
        ]
    problems: list[SettingsProblem] = []
    values: dict[str, Any] = {}
    for key, value in raw.items():
        problem = _check(key, value)
        if problem is not None:
            problems.append(problem)
        else:
            values[_KEYS[key]] = float(value) if key in _SECONDS else value
    if problems:
        return None, problems
    return OutboxSettings(**values), []


def _check(key: object, value: object) -> SettingsProblem | None:
    """Return the problem with one key and its value, or None."""
    where = f"{SETTING}[{key!r}]"
    if key not in _KEYS:
        return SettingsProblem(
            f"{SETTING} has an unknown key {key!r}.",
            f"The keys are {sorted(_KEYS)}.",
            E_UNKNOWN_KEY,
        )
    if key == "ENGINE" and value not in ENGINES:
        return SettingsProblem(f"{where} is {value!r}.", f"Use one of {list(ENGINES)}.", E_ENGINE)
    if key == "ON_UNKNOWN" and value not in ON_UNKNOWN_CHOICES:
        return SettingsProblem(
            f"{where} is {value!r}.", f"Use one of {list(ON_UNKNOWN_CHOICES)}.", E_ON_UNKNOWN
        )
    if key in _NAMES and not (isinstance(value, str) and value):
        return SettingsProblem(f"{where} is {value!r}.", "Use a non-empty string.", E_NAME)
    if key in _WHOLE and not (type(value) is int and value > 0):
        return SettingsProblem(f"{where} is {value!r}.", "Use a whole number >= 1.", E_NUMBER)
    if key in _SECONDS and not (
        isinstance(value, (int, float)) and type(value) is not bool and value > 0
    ):
        return SettingsProblem(
            f"{where} is {value!r}.", "Use a positive number of seconds.", E_NUMBER
        )
    return None


@functools.cache
def outbox_settings() -> OutboxSettings:
    """Return the parsed ``AMSDAL_EMAIL_OUTBOX`` (parsed once; again when it is overridden).

    Raises:
        ImproperlyConfigured: the setting has a bad value (the system checks
            name every problem).
    """
    parsed, problems = inspect_outbox_settings(getattr(settings, SETTING, None))
    if parsed is None:
        first = problems[0]
        raise ImproperlyConfigured(f"{first.message} {first.hint}")
    return parsed


@receiver(setting_changed)
def _forget_settings(*, setting: str, **kwargs: Any) -> None:
    """Parse the setting afresh after ``override_settings`` changed it."""
    if setting == SETTING:
        outbox_settings.cache_clear()
