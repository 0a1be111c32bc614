"""VERP and return_path on the wire: MAIL FROM per recipient, signed; nothing else changed."""

from __future__ import annotations

import pytest

from amsdal_mail import ConfigurationError, EmailMessage, get_connection
from amsdal_mail.tracking import decode_verp, message_key
from tests.conftest import Sender
from tests.smtpd import ServerFactory

SECRET = "verp-test-secret"


def _message(**extra: object) -> EmailMessage:
    return EmailMessage(
        "hi",
        "body",
        "app@app.test",
        ["a@x.test", "B@y.test"],
        cc=["c@x.test"],
        headers={"Message-ID": "<fixed.1@app.test>"},
        **extra,  # type: ignore[arg-type]
    )


async def test_verp_gives_each_recipient_its_own_signed_sender(
    smtp_server: ServerFactory, sender: Sender
) -> None:
    """One transaction per recipient, MAIL FROM bounces+TOKEN naming the message and it."""
    server = smtp_server()
    backend = get_connection(
        "smtp",
        host=server.host,
        port=server.port,
        return_path="bounces@returns.test",
        verp=True,
        verp_secret=SECRET,
    )
    status = await sender.send_message(backend, _message())
    assert status.is_success and set(status.recipients) == {"a@x.test", "B@y.test", "c@x.test"}
    received = server.wait_for_messages(3)
    key = message_key("<fixed.1@app.test>")
    seen = {}
    for message in received:
        (rcpt,) = message.rcpt_tos
        token = decode_verp(message.mail_from, secret=SECRET)
        assert token.message_key == key
        seen[rcpt] = token.recipient
        assert message.mail_from.endswith("@returns.test")
        # The same rendered message in every transaction.
        assert message.data == received[0].data
    assert seen == {"a@x.test": "a@x.test", "B@y.test": "B@y.test", "c@x.test": "c@x.test"}


async def test_return_path_without_verp_keeps_one_transaction(
    smtp_server: ServerFactory, sender: Sender
) -> None:
    """return_path alone changes MAIL FROM only; a message's own return_path wins."""
    server = smtp_server()
    backend = get_connection(
        "smtp", host=server.host, port=server.port, return_path="bounces@returns.test"
    )
    await sender.send_message(backend, _message())
    await sender.send_message(backend, _message(return_path="own@app.test"))
    first, second = server.wait_for_messages(2)
    assert first.mail_from == "bounces@returns.test"
    assert first.rcpt_tos == ["a@x.test", "B@y.test", "c@x.test"]
    assert second.mail_from == "own@app.test"


async def test_message_return_path_is_the_verp_base(
    smtp_server: ServerFactory, sender: Sender
) -> None:
    """With VERP, a message's own return_path is tagged instead of the backend's."""
    server = smtp_server()
    backend = get_connection(
        "smtp", host=server.host, port=server.port, verp=True, verp_secret=SECRET
    )
    message = EmailMessage("s", "b", "app@app.test", ["a@x.test"], return_path="rp@own.test")
    await sender.send_message(backend, message)
    (received,) = server.wait_for_messages(1)
    assert received.mail_from.startswith("rp+") and received.mail_from.endswith("@own.test")
    assert decode_verp(received.mail_from, secret=SECRET).recipient == "a@x.test"
    # The Message-ID the key names is the one sent.
    sent_id = received.message["Message-ID"]
    assert decode_verp(received.mail_from, secret=SECRET).message_key == message_key(sent_id)


def test_verp_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """AMSDAL_EMAIL_RETURN_PATH / _VERP / _VERP_SECRET; VERP without a secret is refused."""
    monkeypatch.setenv("AMSDAL_EMAIL_RETURN_PATH", "b@r.test")
    monkeypatch.setenv("AMSDAL_EMAIL_VERP", "yes")
    with pytest.raises(ConfigurationError, match="AMSDAL_EMAIL_VERP_SECRET"):
        get_connection("smtp")
    monkeypatch.setenv("AMSDAL_EMAIL_VERP_SECRET", "x")
    backend = get_connection("smtp")
    settings = backend.settings  # type: ignore[attr-defined]
    assert (settings.return_path, settings.verp, settings.verp_secret) == ("b@r.test", True, "x")
    assert "verp_secret" not in repr(settings) and "'x'" not in repr(settings)
    with pytest.raises(ConfigurationError, match="return_path"):
        get_connection("smtp", return_path="not an address")


async def test_verp_refused_recipient_is_its_own(
    smtp_server: ServerFactory, sender: Sender
) -> None:
    """A recipient refused in its own transaction leaves the others sent."""
    server = smtp_server(rcpt_replies={"B@y.test": "550 5.1.1 No such user"})
    backend = get_connection(
        "smtp",
        host=server.host,
        port=server.port,
        return_path="b@r.test",
        verp=True,
        verp_secret=SECRET,
    )
    status = await sender.send_message(backend, _message())
    assert {k: v.status for k, v in status.recipients.items()} == {
        "a@x.test": "sent",
        "B@y.test": "rejected",
        "c@x.test": "sent",
    }
    assert list(status.recipients) == ["a@x.test", "B@y.test", "c@x.test"]
    assert sorted(m.rcpt_tos[0] for m in server.wait_for_messages(2)) == ["a@x.test", "c@x.test"]
