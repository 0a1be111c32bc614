"""System checks (``manage.py check``) for ``AMSDAL_EMAIL_OUTBOX``.

* ``amsdal_mail.outbox.E001`` -- the setting is not a dict;
* ``amsdal_mail.outbox.E002`` -- an unknown key;
* ``amsdal_mail.outbox.E003`` -- ``ENGINE`` is not ``tasks``, ``celery`` or ``immediate``;
* ``amsdal_mail.outbox.E004`` -- a count or a number of seconds that is not positive;
* ``amsdal_mail.outbox.E005`` -- ``ON_UNKNOWN`` is not ``report`` or ``resend``;
* ``amsdal_mail.outbox.E006`` -- ``TASK_BACKEND``, ``QUEUE`` or ``MAILER`` not a non-empty string;
* ``amsdal_mail.outbox.E010`` -- ``ENGINE`` is ``celery`` but the ``celery`` package is missing;
* ``amsdal_mail.outbox.E007`` -- ``ENGINE`` is ``tasks`` but no task framework is installed
  (Django < 6.0 without the ``django-tasks`` backport);
* ``amsdal_mail.outbox.E008`` -- ``ENGINE`` is ``tasks`` and ``TASK_BACKEND`` is not an alias
  of ``TASKS`` (or that backend cannot be loaded);
* ``amsdal_mail.outbox.E009`` -- ``ENGINE`` is ``tasks`` and that backend's ``QUEUES`` leave
  out ``QUEUE``;
* ``amsdal_mail.outbox.W001`` -- ``ENGINE`` names an engine this version cannot use yet;
* ``amsdal_mail.outbox.W002`` -- ``ENGINE`` is ``tasks`` and the backend cannot defer tasks
  (retries are not scheduled).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from django.apps import AppConfig
from django.conf import settings
from django.core import checks

from .conf import SETTING, inspect_outbox_settings
from .engines import AVAILABLE, celery_installed

__all__ = ["E_CELERY_MISSING", "W_ENGINE_UNAVAILABLE", "check_outbox_settings"]

W_ENGINE_UNAVAILABLE: Final = "amsdal_mail.outbox.W001"
E_CELERY_MISSING: Final = "amsdal_mail.outbox.E010"


def check_outbox_settings(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """Return an error for each bad value in ``AMSDAL_EMAIL_OUTBOX``."""
    parsed, problems = inspect_outbox_settings(getattr(settings, SETTING, None))
    messages: list[checks.CheckMessage] = [
        checks.Error(p.message, hint=p.hint, id=p.id) for p in problems
    ]
    if parsed is not None and parsed.engine == "celery" and not celery_installed():
        messages.append(
            checks.Error(
                f"{SETTING}['ENGINE'] is 'celery', but the celery package is not installed.",
                hint='Install it (pip install "celery[redis]") or choose another ENGINE.',
                id=E_CELERY_MISSING,
            )
        )
    if parsed is not None and parsed.engine == "tasks":
        from .tasks import inspect_task_engine

        for problem in inspect_task_engine(parsed):
            kind = checks.Warning if ".W" in problem.id else checks.Error
            messages.append(kind(problem.message, hint=problem.hint, id=problem.id))
    if parsed is not None and parsed.engine not in AVAILABLE:
        messages.append(
            checks.Warning(
                f"{SETTING}['ENGINE'] is {parsed.engine!r}, which this version of "
                "django_amsdal_mail.outbox does not provide yet: enqueue() refuses.",
                hint=f"Use one of {sorted(AVAILABLE)}.",
                id=W_ENGINE_UNAVAILABLE,
            )
        )
    return messages
