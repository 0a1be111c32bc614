"""Settings of the example project: a dev site that sends mail through django_amsdal_mail.

Mail goes through the outbox: ``send()`` stores the message in the database and a
worker of Django's task framework sends it (``django.tasks`` on Django 6.0+, the
``django-tasks`` backport on 5.2, with ``django-tasks-db``'s database backend)::

    python example_project/manage.py db_worker --queue-name email

The SMTP server, the database and the retry delay come from the environment so
the demo and the tests can point them elsewhere:

* ``EXAMPLE_EMAIL_HOST`` (default ``127.0.0.1``) and ``EXAMPLE_EMAIL_PORT`` (default 1025);
* ``EXAMPLE_DB_PATH`` (default ``example_project/db.sqlite3``);
* ``EXAMPLE_OUTBOX_ENGINE`` (default ``tasks``; ``immediate`` sends in the request,
  without a worker);
* ``EXAMPLE_OUTBOX_RETRY_BACKOFF`` (seconds before the first retry, default 60).
"""

import os
from pathlib import Path

import django

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = "dev-only-example-project-not-a-secret"
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_amsdal_mail",
    "django_amsdal_mail.outbox",
    "django_tasks_db",
    "mailroom",
]
if django.VERSION < (6, 0):
    # Django 5.2: the backport of django.tasks.
    INSTALLED_APPS.insert(INSTALLED_APPS.index("django_tasks_db"), "django_tasks")

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "mysite.urls"
WSGI_APPLICATION = "mysite.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

# SQLite shared by the site and its workers: write transactions take the lock at
# once and wait for each other (instead of failing with "database is locked"), and
# WAL lets readers go on while a worker writes.
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("EXAMPLE_DB_PATH") or BASE_DIR / "db.sqlite3",
        "OPTIONS": {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL;",
        },
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"

# Mail: Django's own API, queued in the outbox; the worker sends with the EMAIL_*
# settings below through django_amsdal_mail.backend.EmailBackend.
EMAIL_BACKEND = "django_amsdal_mail.outbox.backend.OutboxBackend"
EMAIL_HOST = os.environ.get("EXAMPLE_EMAIL_HOST", "127.0.0.1")
EMAIL_PORT = int(os.environ.get("EXAMPLE_EMAIL_PORT", "1025"))
EMAIL_TIMEOUT = 10
DEFAULT_FROM_EMAIL = "Mailroom <mailroom@example.com>"
SERVER_EMAIL = "server@example.com"
ADMINS = [("Site Admin", "admin@example.com")]

# The outbox (every key optional; see docs/outbox.md): retries scheduled by the
# outbox itself, through the task backend below.
AMSDAL_EMAIL_OUTBOX = {
    "ENGINE": os.environ.get("EXAMPLE_OUTBOX_ENGINE", "tasks"),
    "QUEUE": "email",
    "RETRY_BACKOFF": float(os.environ.get("EXAMPLE_OUTBOX_RETRY_BACKOFF", "60")),
}

# Django's task framework with django-tasks-db's database backend: the tasks are
# rows in this project's database, run by ``manage.py db_worker``.
TASKS = {
    "default": {
        "BACKEND": "django_tasks_db.DatabaseBackend",
        "QUEUES": ["default", "email"],
    }
}
