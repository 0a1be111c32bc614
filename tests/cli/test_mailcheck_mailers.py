"""``manage.py amsdal_mailcheck --mailer ALIAS``: MAILERS, which only Django 6.1+ has.

Collected on Django 6.1+ only (tests/cli/conftest.py's ``collect_ignore``).
"""

from __future__ import annotations

import json
import os
from typing import Any

from tests.cli.test_mailcheck import BACKEND, mailcheck
from tests.smtpd import ServerFactory


def test_mailers_alias(settings: Any, smtp_server: ServerFactory, ca_file: str) -> None:
    plain, tls = smtp_server(), smtp_server(tls="ssl")
    settings.MAILERS = {
        "default": {"BACKEND": BACKEND, "OPTIONS": {"host": plain.host, "port": plain.port}},
        "bulk": {
            "BACKEND": BACKEND,
            "OPTIONS": {"host": tls.host, "port": tls.port, "use_ssl": True, "timeout": 5},
        },
    }
    code, out = mailcheck()  # the "default" alias
    assert code == 0 and f"Checking 127.0.0.1:{plain.port} (no TLS)" in out
    code, out = mailcheck("--mailer", "bulk", "--json")
    assert code == 4  # the test CA is not trusted here
    os.environ["SSL_CERT_FILE"] = ca_file
    try:
        code, out = mailcheck("--mailer", "bulk", "--json")
    finally:
        del os.environ["SSL_CERT_FILE"]
    assert code == 0 and json.loads(out)["security"] == "ssl"
    assert plain.connections == 1  # (a failed TLS handshake is not counted by aiosmtpd)

    settings.MAILERS["bulk"]["OPTIONS"] = {"port": tls.port}
    code, out = mailcheck("--mailer", "bulk")
    assert code == 2 and "OPTIONS must define 'host'" in out
