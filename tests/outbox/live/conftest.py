"""Fixtures shared by the live tests: one PostgreSQL cluster and one Redis server per session."""

from __future__ import annotations

from .postgres import postgres_cluster
from .redis import redis_server

__all__ = ["postgres_cluster", "redis_server"]
