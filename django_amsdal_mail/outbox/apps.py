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
        """Register the system checks of ``AMSDAL_EMAIL_OUTBOX``."""
        from .checks import check_outbox_settings

        checks.register(check_outbox_settings, getattr(checks.Tags, "mail", "mail"))
