"""script_replies, scripted_status and ScriptedBackend (amsdal_mail.testing), without Django."""

from __future__ import annotations

import asyncio
import threading

import pytest

from amsdal_mail import EmailMessage, get_connection, send_mail
from amsdal_mail.backends.locmem import outbox
from amsdal_mail.status import SMTPReply
from amsdal_mail.testing import (
    DATA_REPLY,
    ScriptedBackend,
    script_replies,
    scripted_reply,
    scripted_status,
)

SCRIPTED = "amsdal_mail.testing.ScriptedBackend"


@pytest.fixture(autouse=True)
def _empty_outbox() -> None:
    outbox.clear()


def test_unscripted_recipients_are_sent_with_the_data_reply() -> None:
    status = scripted_status(["a@example.com", "b@example.com"])
    assert status.status == {"sent"}
    for recipient in status.recipients.values():
        assert (recipient.code, recipient.response, recipient.command) == (
            250,
            DATA_REPLY.text,
            "DATA",
        )
    assert status.esp_response == str(DATA_REPLY)


def test_codes_map_to_the_smtp_backends_words() -> None:
    replies = {
        "ok@example.com": (251, "2.1.5 forwarded"),
        "later@example.com": (451, "4.3.0 try later"),
        "gone@example.com": (550, "5.1.1 no such user"),
    }
    with script_replies(replies):
        status = scripted_status(["ok@example.com", "later@example.com", "gone@example.com"])
    assert {a: r.status for a, r in status.recipients.items()} == {
        "ok@example.com": "sent",
        "later@example.com": "failed",
        "gone@example.com": "rejected",
    }
    assert status.recipients["gone@example.com"].code == 550
    assert status.recipients["gone@example.com"].response == "5.1.1 no such user"
    assert status.recipients["gone@example.com"].command == "RCPT"
    assert status.recipients["ok@example.com"].command == "DATA"


def test_every_recipient_refused_ends_without_data() -> None:
    with script_replies({"x@example.com": (550, "No"), "y@example.com": (452, "Full")}):
        status = scripted_status(["x@example.com", "y@example.com"])
    assert status.status == {"rejected", "failed"}
    assert status.esp_response == "452 Full"  # the last RCPT reply, as over SMTP


def test_addresses_match_without_case_or_brackets() -> None:
    with script_replies({"X@Example.COM": (550, "No")}):
        assert scripted_reply("<x@example.com>") == SMTPReply(550, "No")
        assert scripted_reply("y@example.com") is None
    assert scripted_reply("x@example.com") is None  # the script ended with the block


def test_the_innermost_script_wins_and_the_outer_comes_back() -> None:
    with script_replies({"x@example.com": (550, "outer"), "y@example.com": (451, "outer")}):
        with script_replies({"x@example.com": (250, "inner")}):
            assert scripted_reply("x@example.com") == SMTPReply(250, "inner")
            assert scripted_reply("y@example.com") == SMTPReply(451, "outer")
        assert scripted_reply("x@example.com") == SMTPReply(550, "outer")


def test_a_decorated_function_and_coroutine_function_run_under_the_script() -> None:
    script = script_replies({"x@example.com": (550, "No")})

    @script
    def sync() -> str:
        return scripted_status(["x@example.com"]).recipients["x@example.com"].status

    @script
    async def in_loop() -> str:
        await asyncio.sleep(0)  # the script stays active across an await
        return scripted_status(["x@example.com"]).recipients["x@example.com"].status

    assert sync() == "rejected"
    assert asyncio.run(in_loop()) == "rejected"
    assert in_loop.__name__ == "in_loop"
    assert scripted_reply("x@example.com") is None


def test_a_script_applies_to_other_threads() -> None:
    seen: list[SMTPReply | None] = []
    with script_replies({"x@example.com": (550, "No")}):
        thread = threading.Thread(target=lambda: seen.append(scripted_reply("x@example.com")))
        thread.start()
        thread.join(10)
    assert seen == [SMTPReply(550, "No")]


@pytest.mark.parametrize(
    ("replies", "complaint"),
    [
        ({"x@example.com": (150, "No")}, "400-499 (temporary failure)"),
        ({"x@example.com": (354, "No")}, "not 354"),
        ({"x@example.com": (True, "No")}, "not True"),
        ({"x@example.com": ("550", "No")}, "not '550'"),
        ({"x@example.com": 550}, "is not a (code, text) pair"),
        ({"x@example.com": (550, "No\r\nMore")}, "one line of str"),
        ({"not-an-address": (550, "No")}, "'not-an-address' is not an e-mail address"),
    ],
)
def test_a_bad_script_is_named(replies: dict[str, object], complaint: str) -> None:
    with pytest.raises(ValueError, match="script_replies") as raised:
        script_replies(replies)  # type: ignore[arg-type]
    assert complaint in str(raised.value)


def test_a_script_is_a_mapping() -> None:
    with pytest.raises(TypeError, match="mapping of address to"):
        script_replies([("x@example.com", (550, "No"))])  # type: ignore[arg-type]


def test_scripted_backend_keeps_messages_and_sets_statuses(sender_mode: str) -> None:
    message = EmailMessage(
        subject="Hi",
        body="Hello",
        from_email="me@example.com",
        to=["x@example.com", "y@example.com"],
    )
    connection = get_connection(SCRIPTED)
    assert isinstance(connection, ScriptedBackend)
    with script_replies({"x@example.com": (550, "5.1.1 No")}):
        if sender_mode == "async":
            status = asyncio.run(connection.asend_messages([message]))
        else:
            status = connection.send_messages([message])
    assert outbox == [message]
    assert message.status is not None
    assert message.status.recipients["x@example.com"].status == "rejected"
    assert message.status.recipients["y@example.com"].status == "sent"
    assert status.get_failed_recipients() == ["x@example.com"]


@pytest.fixture(params=["sync", "async"])
def sender_mode(request: pytest.FixtureRequest) -> str:
    """Send through the sync or the async API."""
    mode: str = request.param
    return mode


def test_scripted_backend_through_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMSDAL_EMAIL_BACKEND", SCRIPTED)
    with script_replies({"x@example.com": (451, "4.2.0 later")}):
        status = send_mail("Hi", "Hello", "me@example.com", ["x@example.com"], fail_silently=True)
    assert status.recipients["x@example.com"].status == "failed"
    assert [m.subject for m in outbox] == ["Hi"]
