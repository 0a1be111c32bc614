"""An app for worker processes: what the outbox's signals say, one JSON line each.

With ``OUTBOX_LIVE_RECORD`` set to a file path, every ``post_send`` and
``outbox_finished`` in the process appends one line to that file (one
``write`` of an ``O_APPEND`` descriptor, so lines of several processes do not
mix)::

    {"signal": "post_send", "pid": 123, "time": 1900000000.5, "outbox_message": "<uuid>",
     "attempt": 1, "message_id": "<...>", "statuses": {"ann@example.com": ["sent", 250]}}

(``time`` is ``time.time()`` in the worker when the signal fired.)

:func:`read_records` gives them back to the test.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from django.apps import AppConfig
from django.conf import settings

__all__ = ["RecorderConfig", "read_records"]


def _write(record: dict[str, Any]) -> None:
    path = getattr(settings, "OUTBOX_LIVE_RECORD", "")
    if not path:
        return
    line = (json.dumps({**record, "time": time.time()}, sort_keys=True) + "\n").encode()
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(descriptor, line)
    finally:
        os.close(descriptor)


def _statuses(status: Any) -> dict[str, list[Any]]:
    return {address: [r.status, r.code] for address, r in status.recipients.items()}


def _on_post_send(sender: Any, message: Any, status: Any, **kwargs: Any) -> None:
    outbox_message = kwargs.get("outbox_message")
    _write(
        {
            "signal": "post_send",
            "pid": os.getpid(),
            "outbox_message": str(outbox_message.pk) if outbox_message is not None else None,
            "attempt": kwargs.get("attempt"),
            "message_id": getattr(outbox_message, "message_id", None),
            "statuses": _statuses(status),
        }
    )


def _on_outbox_finished(sender: Any, outbox_message: Any, status: Any, **kwargs: Any) -> None:
    _write(
        {
            "signal": "outbox_finished",
            "pid": os.getpid(),
            "outbox_message": str(outbox_message.pk),
            "message_id": status.message_id,
            "statuses": _statuses(status),
        }
    )


class RecorderConfig(AppConfig):
    """Connects the recording receivers when the worker's apps are ready."""

    name = "tests.outbox.live.recorder"
    label = "outbox_live_recorder"

    def ready(self) -> None:
        """Connect the receivers."""
        from django_amsdal_mail.signals import outbox_finished, post_send

        post_send.connect(_on_post_send, dispatch_uid="outbox-live-post-send")
        outbox_finished.connect(_on_outbox_finished, dispatch_uid="outbox-live-finished")


def read_records(path: Path, signal: str | None = None) -> list[dict[str, Any]]:
    """Return the records in ``path`` (only those of ``signal`` if given), in order."""
    if not path.exists():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in records if signal is None or r["signal"] == signal]
