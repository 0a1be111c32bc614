"""The package itself: a Django-free __init__, the AppConfig, the public names."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from django.apps import apps

import django_amsdal_mail
from django_amsdal_mail.apps import AmsdalMailConfig
from django_amsdal_mail.exceptions import CancelSend

ROOT = Path(__file__).resolve().parents[2]


def test_importing_the_package_imports_no_django() -> None:
    """``import django_amsdal_mail`` loads no Django module (safe in INSTALLED_APPS order)."""
    code = (
        "import sys, django_amsdal_mail\n"
        "loaded = sorted(m for m in sys.modules if m == 'django' or m.startswith('django.'))\n"
        "assert not loaded, loaded\n"
        "assert django_amsdal_mail.CancelSend.__module__ == 'django_amsdal_mail.exceptions'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_the_package_exports_cancel_send() -> None:
    """``django_amsdal_mail.CancelSend`` is the exception pre_send receivers raise."""
    assert django_amsdal_mail.__all__ == ["CancelSend"]
    assert django_amsdal_mail.CancelSend is CancelSend


def test_the_app_config_is_found() -> None:
    """Listing "django_amsdal_mail" in INSTALLED_APPS uses AmsdalMailConfig."""
    config = apps.get_app_config("django_amsdal_mail")
    assert isinstance(config, AmsdalMailConfig)
    assert config.verbose_name == "amsdal mail"
