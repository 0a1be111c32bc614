"""A WSGI app for gunicorn that sends one message per request with ``pool=True``.

The server to send to is ``POOL_TEST_HOST``/``POOL_TEST_PORT``. Imported by
the master with ``--preload``, it sends one message there first, so the master
holds a pooled connection when it forks its workers: a worker must never
write to it. Each message carries the sending process's PID (``X-PID``);
the response body is that PID.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from amsdal_mail import EmailMessage, get_connection

HOST = os.environ["POOL_TEST_HOST"]
PORT = int(os.environ["POOL_TEST_PORT"])


def send(label: str) -> str:
    """Send one message through the pool; return its recipient's status."""
    backend = get_connection("smtp", host=HOST, port=PORT, pool=True)
    message = EmailMessage(
        label, "Body", "app@example.com", ["ann@example.com"], headers={"X-PID": str(os.getpid())}
    )
    (status,) = backend.send_messages([message]).recipients.values()
    return status.status


PRELOADED = send("preload")  # in the master, before the fork


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Send one message; answer with this worker's PID and the status."""
    status = send(f"request from {os.getpid()}")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"{os.getpid()} {status}".encode()]
