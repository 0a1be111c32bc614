"""amsdal_mail.oauth: msal and google-auth pointed at a local token endpoint (never the internet).

The endpoint (``tests/token_endpoint.py``) speaks HTTPS with the test CA (msal
accepts only an https authority); the libraries' requests sessions trust that
CA and ignore proxy and CA variables of the environment (``trust_env`` off).
"""

from __future__ import annotations

import base64
import json
import ssl
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from amsdal_mail import AuthenticationError, ConfigurationError, EmailMessage
from amsdal_mail.backends.smtp import SMTPBackend
from amsdal_mail.oauth import (
    GOOGLE_SCOPE,
    MICROSOFT_SCOPE,
    CachedTokenProvider,
    TokenError,
    google,
    microsoft,
)
from tests.smtpd import ServerFactory
from tests.token_endpoint import TokenEndpoint

SECRET = "client-secret-value-0123"


@pytest.fixture
def endpoint(server_ssl_context: ssl.SSLContext) -> Iterator[TokenEndpoint]:
    """The HTTPS token endpoint on 127.0.0.1."""
    with TokenEndpoint(ssl_context=server_ssl_context) as running:
        yield running


@pytest.fixture
def session(ca_file: str) -> requests.Session:
    """A requests session trusting the test CA only, with no environment settings."""
    http = requests.Session()
    http.verify = ca_file
    http.trust_env = False
    return http


def _microsoft(endpoint: TokenEndpoint, session: requests.Session) -> CachedTokenProvider:
    return microsoft(
        "tenant-1",
        "client-1",
        SECRET,
        authority=endpoint.base + "/tenant-1",
        instance_discovery=False,
        http_client=session,
    )


def test_microsoft_caches_and_refreshes(endpoint: TokenEndpoint, session: requests.Session) -> None:
    """Client credentials for the Exchange scope; cached; force_refresh fetches anew."""
    provider = _microsoft(endpoint, session)
    assert provider() == provider() == "token-1"
    assert provider(force_refresh=True) == "token-2"
    assert provider() == "token-2"
    assert provider.fetches == 2
    for request in endpoint.requests:
        assert request.form["grant_type"] == "client_credentials"
        assert request.form["scope"] == MICROSOFT_SCOPE
        assert request.form["client_id"] == "client-1"
    assert "token" not in repr(provider).replace("CachedTokenProvider", "")


def test_microsoft_refusal_is_a_token_error(
    endpoint: TokenEndpoint, session: requests.Session
) -> None:
    """A refused client: TokenError (an AuthenticationError) with the endpoint's error."""
    endpoint.refuse = True
    with pytest.raises(TokenError) as info:
        _microsoft(endpoint, session)()
    assert isinstance(info.value, AuthenticationError)
    assert "invalid_client" in str(info.value) and "AADSTS7000215" in str(info.value)
    assert SECRET not in str(info.value)


def test_microsoft_needs_its_three_values() -> None:
    """An empty tenant, client or secret is a ConfigurationError naming it."""
    with pytest.raises(ConfigurationError, match="client_secret must be a non-empty str"):
        microsoft("tenant", "client", " ")


def _jwt_claims(assertion: str) -> dict[str, Any]:
    payload = assertion.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


@pytest.fixture(scope="module")
def service_account_info() -> dict[str, str]:
    """A service account key (a fresh RSA key; token_uri set by each test)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return {
        "type": "service_account",
        "client_email": "mailer@project.iam.gserviceaccount.com",
        "private_key": pem,
        "private_key_id": "key-1",
        "project_id": "project",
        "token_uri": "https://oauth2.googleapis.com/token",
    }


def test_google_service_account_impersonates_the_mailbox(
    endpoint: TokenEndpoint, session: requests.Session, service_account_info: dict[str, str]
) -> None:
    """The JWT grant asks for https://mail.google.com/ as the subject; cached."""
    from google.auth.transport.requests import Request

    provider = google(
        service_account_info=service_account_info,
        subject="sender@example.com",
        token_uri=endpoint.token_uri,
        request=Request(session=session),
    )
    assert provider() == provider() == "token-1"
    (request,) = endpoint.requests
    assert request.form["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    claims = _jwt_claims(request.form["assertion"])
    assert claims["sub"] == "sender@example.com"
    assert claims["scope"] == GOOGLE_SCOPE
    assert claims["iss"] == service_account_info["client_email"]
    assert provider(force_refresh=True) == "token-2"


def test_google_user_refresh_token(endpoint: TokenEndpoint, session: requests.Session) -> None:
    """An installed-app credential: the refresh-token grant for the Gmail scope."""
    from google.auth.transport.requests import Request

    provider = google(
        refresh_token="refresh-1",
        client_id="client-1",
        client_secret=SECRET,
        token_uri=endpoint.token_uri,
        request=Request(session=session),
    )
    assert provider() == "token-1"
    (request,) = endpoint.requests
    assert request.form["grant_type"] == "refresh_token"
    assert request.form["refresh_token"] == "refresh-1"
    assert request.form["scope"] == GOOGLE_SCOPE
    endpoint.refuse = True
    with pytest.raises(TokenError, match="the token endpoint refused"):
        provider(force_refresh=True)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, "give either a service account"),
        ({"service_account_info": {}, "refresh_token": "r"}, "give either a service account"),
        ({"service_account_info": {"type": "service_account"}}, "needs subject"),
        ({"refresh_token": "r", "client_id": "c"}, "needs client_id and client_secret"),
    ],
)
def test_google_configuration_errors(options: dict[str, Any], expected: str) -> None:
    """Each mistake is named."""
    with pytest.raises(ConfigurationError, match=expected):
        google(**options)


def test_the_cache_lasts_until_shortly_before_expiry() -> None:
    """Fake clock: a 3600 s token is kept 3300 s (margin 300), then fetched again."""
    now = [0.0]
    tokens = iter(["a", "b", "c"])
    provider = CachedTokenProvider(
        lambda: (next(tokens), 3600.0), name="test", clock=lambda: now[0]
    )
    assert provider() == "a"
    now[0] = 3299.0
    assert provider() == "a"
    now[0] = 3300.0
    assert provider() == "b"
    assert provider(force_refresh=True) == "c"
    assert provider.fetches == 3


def test_the_cache_is_thread_safe() -> None:
    """Eight threads at once: one fetch, one token for all."""
    started = threading.Barrier(8)
    fetches: list[int] = []
    release = threading.Event()

    def fetch() -> tuple[str, float]:
        fetches.append(1)
        release.wait(5)
        return "shared", 3600.0

    provider = CachedTokenProvider(fetch, name="test")
    seen: list[str] = []

    def call() -> None:
        started.wait(5)
        seen.append(provider())

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    release.set()
    for thread in threads:
        thread.join(5)
    assert seen == ["shared"] * 8 and len(fetches) == 1


def test_an_empty_token_from_the_endpoint_is_an_error() -> None:
    """A fetch that yields no token raises TokenError naming the provider."""
    provider = CachedTokenProvider(lambda: ("", 3600.0), name="amsdal_mail.oauth.test")
    with pytest.raises(TokenError, match="amsdal_mail.oauth.test: the token endpoint returned no"):
        provider()


async def test_microsoft_provider_end_to_end(
    endpoint: TokenEndpoint, session: requests.Session, smtp_server: ServerFactory
) -> None:
    """The provider as oauth2_token: cached across connections, refreshed when refused."""
    user = "app@contoso.example"
    server = smtp_server(oauth={user: "token-1"}, oauth_style="microsoft")
    provider = _microsoft(endpoint, session)
    backend = SMTPBackend(host=server.host, port=server.port, username=user, oauth2_token=provider)

    def message() -> EmailMessage:
        return EmailMessage("Hi", "Body", user, ["to@example.com"])

    backend.send_messages([message()])
    await backend.asend_messages([message()])
    assert provider.fetches == 1  # the second connection used the cached token
    server.oauth[user] = "token-2"  # type: ignore[index]  # the tenant revoked token-1
    backend.send_messages([message()])
    assert provider.fetches == 2
    assert [a.token for a in server.auth_attempts] == ["token-1", "token-1", "token-1", "token-2"]
    assert len(server.messages) == 3


def test_microsoft_fetches_nothing_when_made() -> None:
    """Made at import or settings time, it looks nothing up (port 1 would refuse at once)."""
    provider = microsoft("tenant", "client", SECRET, authority="https://127.0.0.1:1/tenant")
    assert provider.fetches == 0
