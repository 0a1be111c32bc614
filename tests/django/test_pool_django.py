"""EMAIL_POOL (and OPTIONS ``pool``): Django's send_mail() per request, one connection for all.

Each ``send_mail()`` makes a new backend, as in a view; with the pool they
share one logged-in connection to the server (tests.faulty_smtpd, counting
sessions), and the statuses arrive as without it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.core.mail import send_mail

from tests.faulty_smtpd import FaultyServer


def test_send_mail_per_request_reuses_one_pooled_connection(
    faulty_server: Callable[..., FaultyServer], settings: Any
) -> None:
    """Five send_mail() calls with EMAIL_POOL: five messages, one connection, no QUIT yet."""
    server = faulty_server()
    settings.EMAIL_BACKEND = "django_amsdal_mail.backend.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = server.host, server.port
    settings.EMAIL_POOL = True
    for n in range(5):
        assert send_mail(f"Request {n}", "Body", "app@example.com", ["ann@example.com"]) == 1
    assert len(server.messages) == 5
    assert server.connections == 1
    assert [s.ended for s in server.sessions] == [""]  # still open, resting in the pool
    settings.EMAIL_POOL = False
    assert send_mail("Unpooled", "Body", "app@example.com", ["ann@example.com"]) == 1
    assert server.connections == 2
