"""Fixtures shared by the live tests: one PostgreSQL cluster and one Redis server per session,
the "tasks" engine's databases, outbox and SMTP servers (:mod:`.tasks_harness`)."""

from __future__ import annotations

from .postgres import postgres_cluster
from .redis import redis_server
from .tasks_harness import (
    live,
    live_database,
    postgresql_live_database,
    smtp,
    sqlite_live_database,
)

__all__ = [
    "live",
    "live_database",
    "postgres_cluster",
    "postgresql_live_database",
    "redis_server",
    "smtp",
    "sqlite_live_database",
]
