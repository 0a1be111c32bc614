"""Exceptions of the Django app (this module imports no Django)."""

from __future__ import annotations

__all__ = ["CancelSend"]


class CancelSend(Exception):
    """Raise from a ``pre_send`` receiver to skip sending that message.

    The message is not sent, not counted in ``send_messages()``'s return
    value, and ``post_send`` is not sent for it; the other messages of the
    batch go on as usual.
    """
