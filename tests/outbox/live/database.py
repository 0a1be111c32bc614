"""One real database shared by the test process and the worker processes.

The rest of the suite keeps pytest-django's in-memory SQLite database. A live
test instead adds a second connection alias (:data:`ALIAS_PREFIX` + vendor)
to the test process for a :class:`LiveDatabase` -- an SQLite file in WAL mode
or a database on the session's PostgreSQL cluster -- and switches on
:class:`LiveRouter`, which sends the outbox's and ``django_tasks_db``'s
models to it; everything else stays where it was. The worker processes get
the same database as their ``default`` (see :mod:`tests.outbox.live.settings`).

* :func:`sqlite_database` / :func:`postgres_database` -- describe one;
* :func:`migrate` -- run ``manage.py migrate`` on it in a subprocess, with
  the workers' settings (once per session);
* :func:`activated` -- the context manager that adds the alias and the
  router in this process (and allows database access past pytest-django's
  blocker, which the caller unblocks);
* :func:`empty` -- delete every outbox row and task row (between tests).
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from django.db import DEFAULT_DB_ALIAS, connections
from django.test import override_settings

__all__ = [
    "ALIAS_PREFIX",
    "ROOT",
    "LiveDatabase",
    "LiveRouter",
    "activated",
    "empty",
    "migrate",
    "postgres_database",
    "sqlite_database",
    "worker_environment",
]

#: The repository's root (the working directory and import root of the workers).
ROOT = Path(__file__).resolve().parents[3]
ALIAS_PREFIX = "outbox_live_"
_SETTINGS_MODULE = "tests.outbox.live.settings"


@dataclass(frozen=True)
class LiveDatabase:
    """A database both processes open: its vendor and its ``DATABASES`` entry."""

    vendor: str  #: "sqlite" or "postgresql"
    settings: dict[str, Any]

    @property
    def alias(self) -> str:
        """The connection alias it has in the test process."""
        return ALIAS_PREFIX + self.vendor


def sqlite_database(path: Path) -> LiveDatabase:
    """An SQLite file in WAL mode whose writers wait for each other (IMMEDIATE, 20 s)."""
    return LiveDatabase(
        "sqlite",
        {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(path),
            "OPTIONS": {
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL",
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
            },
        },
    )


def postgres_database(settings: dict[str, Any]) -> LiveDatabase:
    """A database on the session's cluster (``PostgresCluster.create_database``)."""
    return LiveDatabase("postgresql", dict(settings))


def worker_environment(overrides: dict[str, Any]) -> dict[str, str]:
    """Return the environment of a subprocess with the workers' settings and ``overrides``."""
    from .settings import ENVIRONMENT

    env = {k: v for k, v in os.environ.items() if not k.startswith("AMSDAL_EMAIL_")}
    paths = [str(ROOT), str(ROOT / "example_project")]
    env.update(
        DJANGO_SETTINGS_MODULE=_SETTINGS_MODULE,
        PYTHONPATH=os.pathsep.join([*paths, env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        PYTHONUNBUFFERED="1",
        **{ENVIRONMENT: json.dumps(overrides)},
    )
    return env


def migrate(database: LiveDatabase) -> None:
    """Create every table in ``database`` (``manage.py migrate`` in a subprocess).

    Raises:
        RuntimeError: the migration failed (its output is in the text).
    """
    done = subprocess.run(
        [sys.executable, "-m", "django", "migrate", "--noinput", "-v", "0"],
        env=worker_environment({"DATABASES": {"default": database.settings}}),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise RuntimeError(f"migrate on {database.vendor} failed:\n{done.stdout}{done.stderr}")


class LiveRouter:
    """Send the outbox's and django_tasks_db's models to the live alias (when one is set)."""

    alias: ClassVar[str | None] = None
    app_labels: ClassVar[frozenset[str]] = frozenset({"amsdal_outbox", "django_tasks_database"})

    def _route(self, model: type[Any]) -> str | None:
        if self.alias is not None and model._meta.app_label in self.app_labels:
            return self.alias
        return None

    def db_for_read(self, model: type[Any], **hints: Any) -> str | None:
        """The live alias for the routed apps."""
        return self._route(model)

    def db_for_write(self, model: type[Any], **hints: Any) -> str | None:
        """The live alias for the routed apps."""
        return self._route(model)


def _add_alias(database: LiveDatabase) -> None:
    """Give the alias ``database``'s settings (another database may have had it before)."""
    configured = connections.configure_settings(
        {
            DEFAULT_DB_ALIAS: copy.deepcopy(connections.settings[DEFAULT_DB_ALIAS]),
            database.alias: copy.deepcopy(database.settings),
        }
    )
    if database.alias in connections.settings:
        connections[database.alias].close()
        with contextlib.suppress(AttributeError):
            del connections[database.alias]
    connections.settings[database.alias] = configured[database.alias]


@contextmanager
def activated(database: LiveDatabase) -> Iterator[str]:
    """Route the outbox's models to ``database`` in this process; yield its alias."""
    _add_alias(database)
    LiveRouter.alias = database.alias
    try:
        with override_settings(DATABASE_ROUTERS=[f"{__name__}.LiveRouter"]):
            yield database.alias
    finally:
        LiveRouter.alias = None
        connections[database.alias].close()


def empty(alias: str) -> None:
    """Delete every outbox message (and so recipient) and every task row in ``alias``."""
    from django_tasks_db.models import DBTaskResult

    from django_amsdal_mail.outbox.models import OutboxMessage, OutboxRecipient

    OutboxRecipient.objects.using(alias).all().delete()
    OutboxMessage.objects.using(alias).all().delete()
    DBTaskResult.objects.using(alias).all().delete()
