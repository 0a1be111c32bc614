"""The Django app configuration of django_amsdal_mail."""

from __future__ import annotations

from django.apps import AppConfig
from django.core import checks


class AmsdalMailConfig(AppConfig):
    """Register the system checks of the amsdal_mail email backend.

    Nothing happens at import time; the checks are registered in :meth:`ready`.
    """

    name = "django_amsdal_mail"
    verbose_name = "amsdal mail"

    def ready(self) -> None:
        """Register the checks (``manage.py check``) for the backend's settings."""
        from .checks import check_mail_settings

        checks.register(check_mail_settings, getattr(checks.Tags, "mail", "mail"))
