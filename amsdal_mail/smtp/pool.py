"""Logged-in connections kept per process for reuse (``pool=True``): pure bookkeeping.

A :class:`Pool` holds the idle connections of one server and login
(:func:`pool_key`), most recently used first; the drivers put a connection
back after a call instead of saying QUIT, and take one before connecting.
What the pool decides, without any I/O:

* an idle connection older than ``pool_idle_timeout`` is handed back for
  closing, never reused;
* one idle for more than :data:`CHECK_AFTER` seconds must be checked (NOOP)
  before use; the caller does that and drops it if the server had closed it;
* beyond ``pool_size`` idle connections the oldest is handed back for closing.

The registries are per process: after ``fork()`` the child forgets every
connection of its parent without a word on them (the parent still owns
those sessions), so a child never writes to its parent's socket. The sync
registry is shared by threads (each connection is used by one thread at a
time: it is out of the pool while in use); the async one is per event loop,
since a connection belongs to the loop it was made in.
"""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ..config import SMTPSettings

__all__ = ["CHECK_AFTER", "Idle", "Pool", "async_pool", "pool_key", "sync_pool", "sync_pools"]

_L = TypeVar("_L")

#: Seconds of idleness after which a connection is checked before it is reused.
CHECK_AFTER = 3.0


@dataclass
class Idle(Generic[_L]):
    """A connection resting in a pool: its link, EHLO features and history."""

    link: _L
    features: dict[str, str]
    served: int  #: messages it has carried (for max_messages_per_connection)
    since: float  #: when it was put back (time.monotonic())


class Pool(Generic[_L]):
    """The idle connections of one server and login (thread-safe)."""

    def __init__(self, size: int, idle_timeout: float | None) -> None:
        self.size = size
        self.idle_timeout = idle_timeout
        self._idle: list[Idle[_L]] = []  # most recently put back last
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._idle)

    def take(self, now: float) -> tuple[Idle[_L] | None, list[Idle[_L]]]:
        """Return the freshest connection still in date (or None) and the expired ones.

        The caller closes the expired ones, and checks the one it got when
        :meth:`needs_check` says so.
        """
        with self._lock:
            expired = [e for e in self._idle if self._expired(e, now)]
            self._idle = [e for e in self._idle if not self._expired(e, now)]
            entry = self._idle.pop() if self._idle else None
        return entry, expired

    def give(self, entry: Idle[_L]) -> list[Idle[_L]]:
        """Keep ``entry``; return the connections to close (the oldest beyond ``size``)."""
        with self._lock:
            self._idle.append(entry)
            extra = len(self._idle) - self.size
            overflow, self._idle = (
                (self._idle[:extra], self._idle[extra:]) if extra > 0 else ([], self._idle)
            )
        return overflow

    def drain(self) -> list[Idle[_L]]:
        """Remove and return every idle connection (to close them)."""
        with self._lock:
            entries, self._idle = self._idle, []
        return entries

    @staticmethod
    def needs_check(entry: Idle[Any], now: float) -> bool:
        """Return True when ``entry`` has rested long enough to be checked before use."""
        return now - entry.since > CHECK_AFTER

    def _expired(self, entry: Idle[_L], now: float) -> bool:
        return self.idle_timeout is not None and now - entry.since > self.idle_timeout


def pool_key(settings: SMTPSettings) -> Hashable:
    """Return what makes two backends' connections interchangeable: server, TLS, login."""
    s = settings
    token = s.oauth2_token
    return (
        s.host,
        s.port,
        s.use_tls,
        s.use_ssl,
        s.ssl_certfile,
        s.ssl_keyfile,
        id(s.ssl_context) if s.ssl_context is not None else None,
        s.local_hostname,
        s.allow_insecure_auth,
        s.username,
        s.password,
        token if isinstance(token, str) or token is None else id(token),
        s.timeout,
        s.chunking,
    )


class _Registry:
    """Pools by key for this process; emptied in a child after fork()."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pools: dict[Hashable, Pool[Any]] = {}
        self.pid = os.getpid()

    def pool(self, settings: SMTPSettings) -> Pool[Any]:
        with self.lock:
            self._check_pid()
            key = pool_key(settings)
            pool = self.pools.get(key)
            if pool is None:
                pool = self.pools[key] = Pool(settings.pool_size, settings.pool_idle_timeout)
            return pool

    def forget(self) -> None:
        """Drop every pool without closing anything (the connections are not ours)."""
        self.pools = {}
        self.pid = os.getpid()

    def _check_pid(self) -> None:
        if self.pid != os.getpid():  # a fork that register_at_fork did not see
            self.forget()


_SYNC = _Registry()
_ASYNC: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Registry] = (
    weakref.WeakKeyDictionary()
)
_ASYNC_PID = [os.getpid()]


def _after_fork_in_child() -> None:
    _SYNC.forget()
    _ASYNC.clear()
    _ASYNC_PID[0] = os.getpid()


os.register_at_fork(after_in_child=_after_fork_in_child)


def sync_pool(settings: SMTPSettings) -> Pool[Any]:
    """Return this process's pool for ``settings``' server and login."""
    return _SYNC.pool(settings)


def sync_pools() -> list[Pool[Any]]:
    """Return every sync pool of this process (to close them at exit)."""
    with _SYNC.lock:
        _SYNC._check_pid()
        return list(_SYNC.pools.values())


def async_pool(settings: SMTPSettings) -> Pool[Any]:
    """Return the running event loop's pool for ``settings``' server and login."""
    loop = asyncio.get_running_loop()
    if _ASYNC_PID[0] != os.getpid():
        _after_fork_in_child()
    registry = _ASYNC.get(loop)
    if registry is None:
        registry = _ASYNC[loop] = _Registry()
    return registry.pool(settings)
