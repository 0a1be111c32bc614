"""Backends: each moves rendered messages somewhere (SMTP, console, memory, files)."""

from .base import BaseBackend

__all__ = ["BaseBackend"]
