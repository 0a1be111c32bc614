"""Fixtures shared by the live tests: one PostgreSQL cluster for the whole session."""

from __future__ import annotations

from .postgres import postgres_cluster

__all__ = ["postgres_cluster"]
