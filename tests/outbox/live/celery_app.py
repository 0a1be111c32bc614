"""The Celery app of the live tests' workers: ``celery -A tests.outbox.live.celery_app worker``.

Written as Celery's Django guide has a project write it, and as
:mod:`django_amsdal_mail.outbox.celery_tasks` tells users to: Django settings
from ``DJANGO_SETTINGS_MODULE`` (the live tests' settings module, which takes
the database, the SMTP server and ``AMSDAL_EMAIL_OUTBOX`` from the
environment), ``CELERY_*`` settings, ``autodiscover_tasks()``, and nothing
naming the outbox's task: the outbox app registers it when ``ENGINE`` is
``"celery"``. The broker is the Redis server the test started, given in
``OUTBOX_LIVE_BROKER_URL``.
"""

from __future__ import annotations

import os

from celery import Celery

from tests.outbox.live.celery_workers import BROKER_ENV

if BROKER_ENV not in os.environ:
    raise RuntimeError(
        f"{BROKER_ENV} is not set: this module is for the worker processes the live tests start"
    )

app = Celery("outbox_live_tests")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.broker_url = os.environ[BROKER_ENV]
app.autodiscover_tasks()
