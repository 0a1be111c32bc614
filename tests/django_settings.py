"""Django settings for the test suite (pytest-django loads them; see pyproject.toml).

No ``EMAIL_*`` setting and no ``MAILERS`` here: each test sets what it
exercises with ``override_settings``, so "the project did not set it" is
testable too.
"""

import importlib.util

SECRET_KEY = "tests-only-not-a-secret"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["testserver", "localhost"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django_amsdal_mail",
    "django_amsdal_mail.outbox",
    "mailroom",  # the example project's app (example_project/ is on pythonpath)
    # The outbox's "tasks" engine with a database backend (tests/outbox/live/ runs its
    # db_worker); before Django 6.0 the framework is the django-tasks backport.
    *([] if importlib.util.find_spec("django.tasks") else ["django_tasks"]),
    "django_tasks_db",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "tests.django.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
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
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
# The outbox's default ENGINE is "tasks": a database task backend that takes its queue.
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default", "email"]}}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

DEFAULT_FROM_EMAIL = "webmaster@example.com"
SERVER_EMAIL = "server@example.com"

# mailroom (the example project's app) records every send in the database; only
# tests/django/test_example_project.py turns that on.
MAILROOM_RECORD_STATUS = False
