"""The Django half of the demo: the example project sends through the embedded server.

``example_project/manage.py`` runs in subprocesses (so its settings stay apart from
this process), with its SMTP server set to the embedded one and its database in a
temporary directory: ``migrate``, then ``demo_send``, which sends with Django's own
mail functions and prints the statuses its ``post_send`` receiver stored.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from .server import RecordingServer

MANAGE = Path(__file__).resolve().parent.parent / "example_project" / "manage.py"
TIMEOUT = 120


def _manage(*args: str, env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, str(MANAGE), *args],
        env=env,
        cwd=MANAGE.parent.parent,
        check=True,
        timeout=TIMEOUT,
    )


def run(server: RecordingServer) -> None:
    """Migrate a fresh example-project database, then run ``manage.py demo_send``."""
    received_before = len(server.messages)
    with tempfile.TemporaryDirectory(prefix="amsdal-mail-demo-") as directory:
        env = dict(os.environ)
        env.pop("DJANGO_SETTINGS_MODULE", None)
        env.update(
            EXAMPLE_EMAIL_HOST=server.host,
            EXAMPLE_EMAIL_PORT=str(server.port),
            EXAMPLE_DB_PATH=str(Path(directory) / "db.sqlite3"),
            PYTHONUNBUFFERED="1",
        )
        print("$ manage.py migrate --noinput")
        _manage("migrate", "--noinput", "-v", "0", env=env)
        print("$ manage.py demo_send")
        sys.stdout.flush()
        _manage("demo_send", env=env)
    print(f"\nThe example project delivered {len(server.messages) - received_before} message(s).")
