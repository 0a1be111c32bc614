"""The Django app configuration of the outbox sub-app."""

from __future__ import annotations

from django.apps import AppConfig
from django.core import checks


class OutboxConfig(AppConfig):
    """The outbox: durable background sending (``INSTALLED_APPS += [this app]``)."""

    name = "django_amsdal_mail.outbox"
    label = "amsdal_outbox"
    verbose_name = "amsdal mail outbox"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Register the system checks; with the Celery engine, register its task too."""
        from .checks import check_outbox_settings

        checks.register(check_outbox_settings, getattr(checks.Tags, "mail", "mail"))
        self._register_celery_task()

    @staticmethod
    def _register_celery_task() -> None:
        """With ``ENGINE = "celery"`` (and Celery installed), import the task module.

        ``shared_task`` then gives the task to the project's Celery app, so a
        worker started with ``celery -A proj worker`` knows
        ``django_amsdal_mail.outbox.deliver`` without listing it anywhere.
        """
        from django.conf import settings

        from .conf import SETTING, inspect_outbox_settings
        from .engines import celery_installed

        parsed, _ = inspect_outbox_settings(getattr(settings, SETTING, None))
        if parsed is not None and parsed.engine == "celery" and celery_installed():
            from . import celery_tasks  # noqa: F401
