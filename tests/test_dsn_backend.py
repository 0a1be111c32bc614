"""The dsn_notify / dsn_ret backend options: resolution, errors, and the commands sent."""

from __future__ import annotations

import pytest

from amsdal_mail import DSN, ConfigurationError, EmailMessage, get_connection
from amsdal_mail.backends.smtp import SMTPBackend
from amsdal_mail.config import resolve_smtp_settings
from tests.conftest import Sender
from tests.dsn_smtpd import DSNRecordingServer


@pytest.mark.parametrize(
    ("options", "environ", "notify", "ret"),
    [
        ({}, {}, None, None),
        ({"dsn_notify": "failure,delay"}, {}, ("failure", "delay"), None),
        ({"dsn_notify": ["success"], "dsn_ret": "FULL"}, {}, ("success",), "full"),
        (
            {},
            {"AMSDAL_EMAIL_DSN_NOTIFY": "never", "AMSDAL_EMAIL_DSN_RET": "headers"},
            ("never",),
            "headers",
        ),
        ({"dsn_notify": "delay"}, {"AMSDAL_EMAIL_DSN_NOTIFY": "never"}, ("delay",), None),
    ],
)
def test_resolution(
    options: dict[str, object],
    environ: dict[str, str],
    notify: tuple[str, ...] | None,
    ret: str | None,
) -> None:
    """Options win over AMSDAL_EMAIL_DSN_*; words are read case-insensitively."""
    settings = resolve_smtp_settings(options, environ=environ)
    assert (settings.dsn_notify, settings.dsn_ret) == (notify, ret)


@pytest.mark.parametrize(
    ("options", "environ", "message"),
    [
        ({"dsn_notify": "failure,often"}, {}, "dsn_notify unknown NOTIFY word(s) 'often'"),
        ({"dsn_notify": "never,success"}, {}, "dsn_notify NOTIFY=never cannot be combined"),
        ({"dsn_ret": "body"}, {}, "dsn_ret must be 'headers' or 'full', got 'body'"),
        (
            {},
            {"AMSDAL_EMAIL_DSN_NOTIFY": "sucess"},
            "AMSDAL_EMAIL_DSN_NOTIFY unknown NOTIFY word(s) 'sucess'",
        ),
        ({}, {"AMSDAL_EMAIL_DSN_RET": "hdr"}, "AMSDAL_EMAIL_DSN_RET must be 'headers' or 'full'"),
        ({}, {"AMSDAL_EMAIL_DSN_NOTIFY": ""}, "AMSDAL_EMAIL_DSN_NOTIFY is set but empty"),
    ],
)
def test_bad_values_are_configuration_errors(
    options: dict[str, object], environ: dict[str, str], message: str
) -> None:
    """A bad option or variable is a ConfigurationError naming it and the accepted words."""
    with pytest.raises(ConfigurationError) as info:
        resolve_smtp_settings(options, environ=environ)
    assert message in str(info.value)


async def test_backend_options_apply_to_every_message(sender: Sender) -> None:
    """dsn_notify / dsn_ret go on every message; a message's own DSN wins field by field."""
    with DSNRecordingServer() as server:
        connection = get_connection(
            "smtp",
            host=server.host,
            port=server.port,
            dsn_notify="failure,delay",
            dsn_ret="headers",
        )
        messages = [
            EmailMessage("one", "B", "a@example.com", ["x@example.net", "y@example.net"]),
            EmailMessage(
                "two",
                "B",
                "a@example.com",
                ["x@example.net"],
                dsn=DSN(notify="success", envid="two-1"),
            ),
        ]
        status = await sender.send(connection, messages)
        assert {rs.status for rs in status.recipients.values()} == {"sent"}
        server.wait_for_messages(2)
    one, two = server.dsn
    message_id = server.messages[0].message["Message-ID"]
    assert one.mail == {"RET": "HDRS", "ENVID": message_id}
    assert one.rcpt == [
        ("x@example.net", {"NOTIFY": "FAILURE,DELAY", "ORCPT": "rfc822;x@example.net"}),
        ("y@example.net", {"NOTIFY": "FAILURE,DELAY", "ORCPT": "rfc822;y@example.net"}),
    ]
    assert two.mail == {"RET": "HDRS", "ENVID": "two-1"}
    assert two.rcpt == [("x@example.net", {"NOTIFY": "SUCCESS", "ORCPT": "rfc822;x@example.net"})]


def test_the_backend_shows_its_request() -> None:
    """SMTPBackend.dsn is the request every message gets (None without options)."""
    assert SMTPBackend(host="127.0.0.1").dsn is None
    backend = SMTPBackend(host="127.0.0.1", dsn_notify="never")
    assert backend.dsn == DSN(notify=("never",))
    assert "dsn_notify=('never',)" in repr(backend)
