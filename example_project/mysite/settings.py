"""Settings of the example project: a dev site that sends mail through django_amsdal_mail.

The SMTP server and the database come from the environment so the demo and the
tests can point them elsewhere:

* ``EXAMPLE_EMAIL_HOST`` (default ``127.0.0.1``) and ``EXAMPLE_EMAIL_PORT`` (default 1025);
* ``EXAMPLE_DB_PATH`` (default ``example_project/db.sqlite3``).
"""

import os
from pathlib import Path

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
    "mailroom",
]

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

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("EXAMPLE_DB_PATH") or BASE_DIR / "db.sqlite3",
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"

# Mail: Django's own API, sent by amsdal_mail.
EMAIL_BACKEND = "django_amsdal_mail.backend.EmailBackend"
EMAIL_HOST = os.environ.get("EXAMPLE_EMAIL_HOST", "127.0.0.1")
EMAIL_PORT = int(os.environ.get("EXAMPLE_EMAIL_PORT", "1025"))
EMAIL_TIMEOUT = 10
DEFAULT_FROM_EMAIL = "Mailroom <mailroom@example.com>"
SERVER_EMAIL = "server@example.com"
ADMINS = [("Site Admin", "admin@example.com")]
