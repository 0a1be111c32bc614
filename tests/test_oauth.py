"""OAuth2 logins (XOAUTH2, OAUTHBEARER) against a real aiosmtpd server, sync and async.

The server (``tests/smtpd.py``, ``oauth=``) checks the token in the client
response and refuses a bad one as Gmail does (334 with base64 JSON, then
535), as Exchange Online does (535 at once), or as RFC 7628 says for
OAUTHBEARER; every exchange is recorded in ``auth_attempts``.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any

import pytest

from amsdal_mail import AuthenticationError, ConfigurationError, EmailMessage, NotSupportedError
from amsdal_mail.backends.smtp import SMTPBackend
from amsdal_mail.config import resolve_smtp_settings
from amsdal_mail.smtp.handshake import (
    checked_token,
    oauth_login,
    provider_kwargs,
    sasl_oauth_response,
)
from tests.conftest import Sender
from tests.smtpd import GMAIL_BAD_TOKEN, MICROSOFT_BAD_TOKEN, RecordingServer, ServerFactory

USER = "sender@example.com"
# As long as the access tokens Microsoft issues: the AUTH line is far over 512 octets.
TOKEN = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9." + "a1B2c3D4e5F6g7H8" * 100 + ".sig-_~+/"
FRESH = "fresh-token-" + "Z9y8X7w6" * 40


def _message() -> EmailMessage:
    return EmailMessage("OAuth", "Signed in with a token.", USER, ["rcpt@example.com"])


class Provider:
    """A token provider recording its calls; returns ``tokens`` in turn (the last one stays)."""

    def __init__(self, *tokens: Any) -> None:
        self.tokens = list(tokens)
        self.calls: list[dict[str, Any]] = []

    def __call__(self, *, force_refresh: bool = False) -> Any:
        self.calls.append({"force_refresh": force_refresh})
        return self.tokens.pop(0) if len(self.tokens) > 1 else self.tokens[0]


def _backend(server: RecordingServer, **options: Any) -> SMTPBackend:
    options.setdefault("username", USER)
    return SMTPBackend(host=server.host, port=server.port, timeout=10, **options)


@pytest.mark.parametrize("offered", [("XOAUTH2", "OAUTHBEARER"), ("OAUTHBEARER", "XOAUTH2")])
async def test_xoauth2_is_preferred_when_offered(
    sender: Sender, smtp_server: ServerFactory, offered: tuple[str, ...]
) -> None:
    """With both offered, XOAUTH2 is used; a token longer than 512 octets gets through."""
    server = smtp_server(oauth={USER: TOKEN}, oauth_mechanisms=offered)
    status = await sender.send(_backend(server, oauth2_token=TOKEN), [_message()])
    assert status.get_successful_recipients() == ["rcpt@example.com"]
    (attempt,) = server.auth_attempts
    assert (attempt.mechanism, attempt.user, attempt.token, attempt.accepted) == (
        "XOAUTH2",
        USER,
        TOKEN,
        True,
    )
    assert attempt.fields == {"user": USER, "auth": f"Bearer {TOKEN}"}
    assert server.messages[0].auth_user == USER


async def test_oauthbearer_when_xoauth2_is_not_offered(
    sender: Sender, smtp_server: ServerFactory
) -> None:
    """OAUTHBEARER sends the RFC 7628 GS2 header, host and port; ',' and '=' are escaped."""
    user = "odd,name=x@example.com"
    server = smtp_server(oauth={user: TOKEN}, oauth_mechanisms=("OAUTHBEARER",))
    backend = _backend(server, username=user, oauth2_token=TOKEN)
    status = await sender.send(backend, [_message()])
    assert status.get_successful_recipients() == ["rcpt@example.com"]
    (attempt,) = server.auth_attempts
    assert attempt.mechanism == "OAUTHBEARER" and attempt.accepted
    assert attempt.gs2_header == "n,a=odd=2Cname=3Dx@example.com,"
    assert attempt.user == user
    assert attempt.fields == {
        "host": server.host,
        "port": str(server.port),
        "auth": f"Bearer {TOKEN}",
    }


async def test_over_starttls(
    sender: Sender, smtp_server: ServerFactory, client_ssl_context: ssl.SSLContext
) -> None:
    """The OAuth2 login follows STARTTLS and the second EHLO, as a provider requires."""
    server = smtp_server(tls="starttls", oauth={USER: TOKEN})
    backend = _backend(server, use_tls=True, ssl_context=client_ssl_context, oauth2_token=TOKEN)
    await sender.send(backend, [_message()])
    (received,) = server.messages
    assert received.tls and received.auth_user == USER


@pytest.mark.parametrize(
    ("mechanisms", "style", "continuation", "final"),
    [
        (("XOAUTH2",), "gmail", b"", GMAIL_BAD_TOKEN),
        (("XOAUTH2",), "microsoft", None, MICROSOFT_BAD_TOKEN),
        (("OAUTHBEARER",), "gmail", b"\x01", "535 5.7.8 Authentication credentials invalid"),
    ],
    ids=["gmail", "microsoft", "oauthbearer"],
)
async def test_a_refused_token_is_fetched_again_once(
    sender: Sender,
    smtp_server: ServerFactory,
    mechanisms: tuple[str, ...],
    style: str,
    continuation: bytes | None,
    final: str,
) -> None:
    """The stale token is refused; the provider is asked with force_refresh=True; sent."""
    server = smtp_server(oauth={USER: FRESH}, oauth_mechanisms=mechanisms, oauth_style=style)
    provider = Provider(TOKEN, FRESH)
    status = await sender.send(_backend(server, oauth2_token=provider), [_message()])
    assert status.get_successful_recipients() == ["rcpt@example.com"]
    assert provider.calls == [{"force_refresh": False}, {"force_refresh": True}]
    stale, fresh = server.auth_attempts
    assert (stale.token, stale.accepted, stale.continuation) == (TOKEN, False, continuation)
    assert (fresh.token, fresh.accepted) == (FRESH, True)
    # The retry is made on a new connection.
    assert (stale.session_id, fresh.session_id) == (1, 2)
    assert len(server.messages) == 1


@pytest.mark.parametrize("style", ["gmail", "microsoft"])
async def test_refused_twice_is_an_authentication_error(
    sender: Sender, smtp_server: ServerFactory, style: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A second refusal raises AuthenticationError (535), naming the refresh, not the token."""
    server = smtp_server(oauth={USER: "something else"}, oauth_style=style)
    provider = Provider(TOKEN, FRESH)
    backend = _backend(server, oauth2_token=provider)
    message = _message()
    caplog.set_level(logging.DEBUG)
    with pytest.raises(AuthenticationError) as info:
        await sender.send_message(backend, message)
    error = info.value
    assert error.smtp_code == 535
    assert "refused again after the oauth2_token provider" in str(error)
    assert "force_refresh=True" in str(error)
    assert f"XOAUTH2 for {USER!r}" in str(error)
    if style == "gmail":
        assert "Username and Password not accepted" in str(error)
        assert '"status":"400"' in str(error)  # the error challenge's JSON, decoded
    assert provider.calls == [{"force_refresh": False}, {"force_refresh": True}]
    assert [a.token for a in server.auth_attempts] == [TOKEN, FRESH]
    assert server.messages == []
    assert message.status is not None
    (result,) = message.status.recipients.values()
    assert result.status == "failed"
    for text in (str(error), repr(error), result.response or "", caplog.text):
        assert TOKEN not in text and FRESH not in text


async def test_a_token_string_is_not_retried(sender: Sender, smtp_server: ServerFactory) -> None:
    """A fixed token cannot be refreshed: one refusal is the AuthenticationError."""
    server = smtp_server(oauth={USER: FRESH}, oauth_style="microsoft")
    with pytest.raises(AuthenticationError) as info:
        await sender.send_message(_backend(server, oauth2_token=TOKEN), _message())
    assert str(info.value).startswith("535 5.7.3 Authentication unsuccessful")
    assert "refused again" not in str(info.value)
    assert len(server.auth_attempts) == 1


async def test_open_refreshes_too(sender: Sender, smtp_server: ServerFactory) -> None:
    """A held connection (``with`` / ``async with``) logs in with the same refresh rule."""
    server = smtp_server(oauth={USER: FRESH})
    provider = Provider(TOKEN, FRESH)
    backend = _backend(server, oauth2_token=provider)
    async with sender.connected(backend):
        await sender.send_message(backend, _message())
        await sender.send_message(backend, _message())
    assert provider.calls == [{"force_refresh": False}, {"force_refresh": True}]
    assert len(server.messages) == 2 and server.connections == 2


async def test_a_provider_is_asked_on_each_connection(
    sender: Sender, smtp_server: ServerFactory
) -> None:
    """Each new connection asks the provider (which caches); one without force_refresh works."""
    server = smtp_server(oauth={USER: TOKEN})
    calls: list[str] = []

    def plain() -> str:
        calls.append("called")
        return TOKEN

    backend = _backend(server, oauth2_token=plain)
    for _ in range(2):
        await sender.send(backend, [_message()])
    assert calls == ["called", "called"]
    assert server.connections == 2


def test_a_provider_without_force_refresh_is_called_plainly_on_the_retry(
    smtp_server: ServerFactory,
) -> None:
    """The retry calls a provider without a force_refresh parameter as before."""
    server = smtp_server(oauth={USER: FRESH})
    tokens = [TOKEN, FRESH]
    backend = _backend(server, oauth2_token=lambda: tokens.pop(0))
    backend.send_messages([_message()])
    assert tokens == [] and len(server.messages) == 1


async def test_an_async_provider_on_the_async_path(smtp_server: ServerFactory) -> None:
    """An async provider is awaited; force_refresh reaches it on the retry."""
    server = smtp_server(oauth={USER: FRESH})
    calls: list[bool] = []

    async def provider(force_refresh: bool = False) -> str:
        calls.append(force_refresh)
        await asyncio.sleep(0)
        return FRESH if force_refresh else TOKEN

    await _backend(server, oauth2_token=provider).asend_messages([_message()])
    assert calls == [False, True] and len(server.messages) == 1


async def test_a_sync_provider_runs_off_the_event_loop(smtp_server: ServerFactory) -> None:
    """On the async path a sync provider (which may do HTTP) runs in a worker thread."""
    server = smtp_server(oauth={USER: TOKEN})
    loop = asyncio.get_running_loop()
    seen: list[bool] = []

    def provider() -> str:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            seen.append(False)  # no loop in this thread: not the event loop's thread
        else:
            seen.append(True)
        return TOKEN

    await _backend(server, oauth2_token=provider).asend_messages([_message()])
    assert seen == [False] and loop.is_running()


def test_an_async_provider_on_the_sync_path_is_a_clear_error(smtp_server: ServerFactory) -> None:
    """The sync API cannot await a provider: ConfigurationError naming it and the way out."""
    server = smtp_server(oauth={USER: TOKEN})

    async def async_token() -> str:
        return TOKEN

    with pytest.raises(ConfigurationError, match="async_token returned an awaitable on the sync"):
        _backend(server, oauth2_token=async_token).send_messages([_message()])
    assert server.auth_attempts == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "returned None"),
        ("", "returned an empty token"),
        (b"bytes", "returned a bytes"),
        ("two words", "spaces, control or non-ASCII"),
    ],
)
async def test_a_provider_returning_nothing_usable_is_named(
    sender: Sender, smtp_server: ServerFactory, value: Any, expected: str
) -> None:
    """None, empty, non-str or a token with spaces: ConfigurationError naming the provider."""
    server = smtp_server(oauth={USER: TOKEN})

    def my_provider() -> Any:
        return value

    with pytest.raises(ConfigurationError) as info:
        await sender.send(_backend(server, oauth2_token=my_provider), [_message()])
    text = str(info.value)
    assert "oauth2_token provider tests.test_oauth." in text and "my_provider" in text
    assert expected in text
    assert "two words" not in text  # what it returned is never shown
    assert server.auth_attempts == [] and server.messages == []


async def test_no_oauth_mechanism_offered(sender: Sender, smtp_server: ServerFactory) -> None:
    """A server with only PLAIN/LOGIN: NotSupportedError naming what was offered and needed."""
    server = smtp_server(auth={USER: "pw"})
    with pytest.raises(NotSupportedError) as info:
        await sender.send(_backend(server, oauth2_token=TOKEN), [_message()])
    text = str(info.value)
    assert "offers AUTH LOGIN PLAIN" in text
    assert "supports XOAUTH2, OAUTHBEARER with oauth2_token" in text


# -- configuration ---------------------------------------------------------------------


def get_token_for_tests(force_refresh: bool = False) -> str:
    """A provider the environment names by dotted path."""
    return TOKEN


def test_password_with_oauth2_token_is_refused() -> None:
    """password and oauth2_token together: ConfigurationError naming both."""
    with pytest.raises(ConfigurationError, match="password .* and oauth2_token .* mutually"):
        resolve_smtp_settings(
            {"username": USER, "password": "pw", "oauth2_token": TOKEN}, environ={}
        )


def test_password_from_the_environment_with_an_oauth2_token_is_refused() -> None:
    """The sources are named, whichever layer each came from."""
    with pytest.raises(ConfigurationError, match="from AMSDAL_EMAIL_PASSWORD"):
        resolve_smtp_settings(
            {"username": USER, "oauth2_token": TOKEN}, environ={"AMSDAL_EMAIL_PASSWORD": "pw"}
        )


def test_oauth2_token_needs_a_username() -> None:
    """The token is issued for a mailbox; without username it cannot log in."""
    with pytest.raises(ConfigurationError, match="oauth2_token .* needs username"):
        resolve_smtp_settings({"oauth2_token": TOKEN}, environ={})


def test_the_environment_names_a_provider_by_dotted_path(smtp_server: ServerFactory) -> None:
    """AMSDAL_EMAIL_OAUTH2_TOKEN_PROVIDER is imported; the backend sends with it."""
    server = smtp_server(oauth={USER: TOKEN})
    environ = {
        "AMSDAL_EMAIL_OAUTH2_TOKEN_PROVIDER": "tests.test_oauth.get_token_for_tests",
        "AMSDAL_EMAIL_USER": USER,
    }
    settings = resolve_smtp_settings({"host": server.host, "port": server.port}, environ=environ)
    assert settings.oauth2_token is get_token_for_tests
    SMTPBackend(**settings.as_options()).send_messages([_message()])
    assert server.auth_attempts[0].accepted


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("nodots", "must be the dotted path of a callable"),
        ("tests.no_such_module.get", "cannot import 'tests.no_such_module.get'"),
        ("tests.test_oauth.nothing_here", "cannot import"),
        ("tests.test_oauth.USER", "is a str, not a callable"),
    ],
)
def test_a_bad_provider_path_names_the_variable(path: str, expected: str) -> None:
    """An unusable dotted path is a ConfigurationError naming the variable."""
    with pytest.raises(ConfigurationError) as info:
        resolve_smtp_settings(
            {"username": USER}, environ={"AMSDAL_EMAIL_OAUTH2_TOKEN_PROVIDER": path}
        )
    assert str(info.value).startswith("AMSDAL_EMAIL_OAUTH2_TOKEN_PROVIDER")
    assert expected in str(info.value)


def test_an_empty_provider_variable_is_unset() -> None:
    """As for every string setting, an empty variable means not set."""
    settings = resolve_smtp_settings({}, environ={"AMSDAL_EMAIL_OAUTH2_TOKEN_PROVIDER": " "})
    assert settings.oauth2_token is None


@pytest.mark.parametrize("value", [42, ["token"]])
def test_an_oauth2_token_of_another_type_is_refused(value: Any) -> None:
    """Neither a str nor a callable: ConfigurationError naming the type only."""
    with pytest.raises(ConfigurationError, match=f"got {type(value).__name__}$"):
        resolve_smtp_settings({"username": USER, "oauth2_token": value}, environ={})


def test_the_token_is_never_in_a_repr() -> None:
    """Neither the settings' nor the backend's repr shows the token."""
    backend = SMTPBackend(host="127.0.0.1", username=USER, oauth2_token=TOKEN)
    for text in (repr(backend), repr(backend.settings), str(backend.settings)):
        assert TOKEN not in text and TOKEN[:40] not in text
    assert USER in repr(backend)


def test_a_token_over_plain_text_to_a_remote_host_is_refused() -> None:
    """As a password: no OAuth2 token unencrypted to another host."""
    with pytest.raises(ConfigurationError, match="refusing to send the OAuth2 token"):
        SMTPBackend(host="smtp.example.com", username=USER, oauth2_token=TOKEN)


# -- the pure rules ----------------------------------------------------------------------


def test_sasl_responses_are_as_the_specifications_write_them() -> None:
    """XOAUTH2 as Google documents it; OAUTHBEARER as RFC 7628 section 4.1's example."""
    assert sasl_oauth_response("XOAUTH2", "someuser@example.com", "ya29.vF9d", "h", 1) == (
        b"user=someuser@example.com\x01auth=Bearer ya29.vF9d\x01\x01"
    )
    assert sasl_oauth_response(
        "OAUTHBEARER",
        "user@example.com",
        "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==",
        "server.example.com",
        143,
    ) == (
        b"n,a=user@example.com,\x01host=server.example.com\x01port=143\x01"
        b"auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01"
    )


def test_provider_kwargs_follow_the_signature() -> None:
    """force_refresh goes only to a provider that takes it, and only on the retry."""

    def takes(force_refresh: bool = False) -> str:
        return ""

    def takes_any(**kwargs: Any) -> str:
        return ""

    def takes_none() -> str:
        return ""

    assert provider_kwargs(takes, False) == {}
    assert provider_kwargs(takes, True) == {"force_refresh": True}
    assert provider_kwargs(takes_any, True) == {"force_refresh": True}
    assert provider_kwargs(takes_none, True) == {}


def test_checked_token_accepts_a_bearer_token() -> None:
    """A visible-ASCII token is returned as it is."""
    assert checked_token(TOKEN, "p") == TOKEN


def test_the_conversation_cancels_a_second_challenge() -> None:
    """A server that challenges again after the error answer gets '*' (RFC 4954)."""
    from amsdal_mail.status import SMTPReply

    settings = resolve_smtp_settings({"username": USER, "oauth2_token": TOKEN}, environ={})
    login = oauth_login("XOAUTH2", settings, "h:1")
    assert type(next(login)).__name__ == "FetchToken"
    first = login.send(TOKEN)
    assert first.line.startswith(b"AUTH XOAUTH2 ")  # type: ignore[union-attr]
    assert TOKEN not in repr(first)
    assert login.send(SMTPReply(334, "e30=")).line == b"\r\n"  # type: ignore[union-attr]
    assert login.send(SMTPReply(334, "")).line == b"*\r\n"  # type: ignore[union-attr]
    with pytest.raises(AuthenticationError) as info:
        login.send(SMTPReply(501, "5.7.0 Auth aborted"))
    assert info.value.smtp_code == 501


# -- the flows' refresh rule (pure: the flow is driven by hand) ----------------------


def _envelope() -> Any:
    from amsdal_mail.smtp.transaction import prepare_envelope

    return prepare_envelope(_message().validate())


@pytest.mark.parametrize("which", ["send", "connect"])
def test_the_flows_refresh_once_and_never_loop(which: str) -> None:
    """TokenRefusedError: one new Connect(fresh, refresh_token); a second one is raised."""
    from amsdal_mail.smtp.flow import Connect, RetryPolicy, connect_flow, send_flow
    from amsdal_mail.smtp.handshake import TokenRefusedError

    policy = RetryPolicy(max_retries=3)
    flow = send_flow(_envelope(), policy) if which == "send" else connect_flow(policy)
    assert next(flow) == Connect(False, False)
    refused = TokenRefusedError(535, "5.7.8 no")
    assert flow.throw(refused) == Connect(True, True)
    with pytest.raises(TokenRefusedError):
        flow.throw(TokenRefusedError(535, "5.7.8 still no"))


def test_throttle_comes_after_the_connection_before_the_transaction() -> None:
    """With a rate limit the flow waits for its slot once connected, before MAIL."""
    from amsdal_mail.smtp.flow import Connect, Connection, RetryPolicy, Throttle, send_flow
    from amsdal_mail.smtp.transaction import Step

    flow = send_flow(_envelope(), RetryPolicy(), throttle=True)
    assert next(flow) == Connect()
    assert flow.send(Connection({}, False)) == Throttle()
    step = flow.send(None)
    assert isinstance(step, Step) and step.payload[0].startswith(b"MAIL FROM:")
    unthrottled = send_flow(_envelope(), RetryPolicy())
    next(unthrottled)
    assert isinstance(unthrottled.send(Connection({}, False)), Step)
