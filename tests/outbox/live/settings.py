"""Settings of the worker processes the live tests start (``DJANGO_SETTINGS_MODULE``).

The test suite's settings (``tests/django_settings.py``) with every setting
named in the JSON object of the environment variable ``OUTBOX_LIVE_SETTINGS``
put over them (``DATABASES``, ``EMAIL_*``, ``AMSDAL_EMAIL_OUTBOX``, ``TASKS``,
``OUTBOX_LIVE_RECORD``, ...), and the recorder app
(:mod:`tests.outbox.live.recorder`), which writes what the outbox's signals
say to the file ``OUTBOX_LIVE_RECORD`` names.
"""

from __future__ import annotations

import json
import os

from tests.django_settings import *  # noqa: F403
from tests.django_settings import INSTALLED_APPS

#: The environment variable holding the overrides, a JSON object of setting names.
ENVIRONMENT = "OUTBOX_LIVE_SETTINGS"

_overrides = json.loads(os.environ.get(ENVIRONMENT) or "{}")
if not isinstance(_overrides, dict):
    raise ValueError(f"{ENVIRONMENT} must hold a JSON object of setting names, not {_overrides!r}")
INSTALLED_APPS = [*INSTALLED_APPS, "tests.outbox.live.recorder.RecorderConfig"]
OUTBOX_LIVE_RECORD = ""
globals().update(_overrides)
