"""Provider limits as pure logic: how many messages a connection serves, how fast they start.

:class:`RateBudget` is one backend's ``rate_limit``: a message may start when
at least ``1 / rate_limit`` seconds have passed since the previous start, on
any of the backend's connections, so no one-second window holds more than
``rate_limit`` starts (rounded up for a fraction) and there is no burst. It
is a function of the clock readings it is given; the drivers read the clock
and sleep (``time.sleep`` or ``asyncio.sleep``) for as long as it says, then
ask again. :func:`closes_after` is ``max_messages_per_connection``.
"""

from __future__ import annotations

import math
import threading

__all__ = ["RateBudget", "closes_after"]


class RateBudget:
    """The start times of one backend's messages, ``1 / rate`` seconds apart at least.

    Thread-safe: the sync and the async path of a backend, and every
    connection of either, share one budget.
    """

    def __init__(self, rate: float) -> None:
        if not (rate > 0 and math.isfinite(rate)):
            raise ValueError(f"rate must be a finite number > 0, got {rate!r}")
        #: Messages per second.
        self.rate = float(rate)
        #: The least time between two starts, in seconds.
        self.interval = 1.0 / self.rate
        self._next = -math.inf  # the earliest clock reading at which a message may start
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<RateBudget {self.rate:g}/s>"

    def try_start(self, now: float) -> float:
        """Return 0.0 and book a start when a message may start at clock reading ``now``.

        Otherwise return how many seconds to wait before asking again (the
        caller sleeps that long, reads the clock and asks again: another
        message may have taken the slot meanwhile).
        """
        with self._lock:
            if now >= self._next:
                self._next = now + self.interval
                return 0.0
            return self._next - now


def closes_after(served: int, limit: int | None) -> bool:
    """Return True when a connection that has served ``served`` messages must be closed now."""
    return limit is not None and served >= limit
