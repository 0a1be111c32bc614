"""Ready OAuth2 token providers for ``oauth2_token``: Microsoft 365 and Google Workspace.

Each returns a :class:`CachedTokenProvider`: a thread-safe callable that
keeps the access token until shortly before it expires and fetches a new one
then, or at once when called with ``force_refresh=True`` (as the SMTP
backend does after the server refused a token)::

    from amsdal_mail import get_connection
    from amsdal_mail.oauth import microsoft

    conn = get_connection(
        'smtp', host='smtp.office365.com', use_tls=True, username='app@contoso.com',
        oauth2_token=microsoft(tenant_id='...', client_id='...', client_secret='...'),
    )

* :func:`microsoft` (extra ``[microsoft]``, msal): the client-credentials flow
  of an Entra ID app registration with the ``SMTP.SendAsApp`` permission,
  scope ``https://outlook.office365.com/.default``.
* :func:`google` (extra ``[google]``, google-auth): a service account with
  domain-wide delegation, impersonating the mailbox (``subject``), or an
  installed-app user credential (a refresh token); scope
  ``https://mail.google.com/`` (the only one Gmail's SMTP accepts).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

from .exceptions import AuthenticationError, ConfigurationError, MissingDependencyError

__all__ = [
    "GOOGLE_SCOPE",
    "MICROSOFT_SCOPE",
    "CachedTokenProvider",
    "TokenError",
    "google",
    "microsoft",
]

#: The scope of SMTP AUTH with an app's own permission in Exchange Online.
MICROSOFT_SCOPE: Final = "https://outlook.office365.com/.default"
#: The scope Gmail's SMTP (XOAUTH2) requires.
GOOGLE_SCOPE: Final = "https://mail.google.com/"
#: A token is fetched anew this many seconds before it expires.
DEFAULT_MARGIN: Final = 300.0

#: What a fetcher returns: the access token and its lifetime in seconds.
Fetched = tuple[str, float]


class TokenError(AuthenticationError):
    """The token endpoint gave no access token (its error is in the message, never a secret)."""

    def __init__(self, text: str) -> None:
        super().__init__(0, text)

    def __str__(self) -> str:
        return str(self.smtp_error)


class CachedTokenProvider:
    """A token provider that caches: ``provider()`` or ``provider(force_refresh=True)``.

    ``fetch`` gets a new token and its lifetime in seconds; the token is kept
    until ``margin`` seconds before it expires. Thread-safe: concurrent
    callers wait for one fetch. ``clock`` (default ``time.monotonic``) is for
    tests.
    """

    def __init__(
        self,
        fetch: Callable[[], Fetched],
        *,
        name: str,
        margin: float = DEFAULT_MARGIN,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self.name = name
        self.margin = margin
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires = 0.0
        #: How many tokens were fetched (not served from the cache).
        self.fetches = 0

    def __repr__(self) -> str:
        return f"<CachedTokenProvider {self.name}>"  # never the token

    def __call__(self, *, force_refresh: bool = False) -> str:
        """Return a valid access token; fetch a new one if needed or asked to."""
        with self._lock:
            now = self._clock()
            if not force_refresh and self._token is not None and now < self._expires:
                return self._token
            token, lifetime = self._fetch()
            if not token:
                raise TokenError(f"{self.name}: the token endpoint returned no access token")
            self.fetches += 1
            self._token = token
            # A token that lives less than the margin is still used once.
            self._expires = now + max(float(lifetime) - self.margin, 0.0)
            return token


def _endpoint_error(name: str, answer: Mapping[str, Any]) -> TokenError:
    error = answer.get("error") or "no access_token"
    description = answer.get("error_description") or ""
    return TokenError(f"{name}: the token endpoint refused: {error} {description}".rstrip())


def microsoft(
    tenant_id: str,
    client_id: str,
    client_secret: str,
    *,
    authority: str | None = None,
    scopes: tuple[str, ...] = (MICROSOFT_SCOPE,),
    margin: float = DEFAULT_MARGIN,
    **msal_options: Any,
) -> CachedTokenProvider:
    """Return a provider of Exchange Online tokens (client credentials, msal).

    ``authority`` defaults to ``https://login.microsoftonline.com/<tenant_id>``;
    ``msal_options`` go to ``msal.ConfidentialClientApplication`` (such as
    ``http_client``, ``timeout``, ``instance_discovery``). Nothing is fetched
    before the first token is asked for. Raises :class:`TokenError` (an
    :class:`~amsdal_mail.AuthenticationError`) on use when the endpoint refuses.
    """
    try:
        import msal  # type: ignore[import-untyped]
    except ImportError as exc:
        raise MissingDependencyError(
            "amsdal_mail.oauth.microsoft needs msal: pip install 'amsdal-mail[microsoft]'"
        ) from exc
    for label, value in (
        ("tenant_id", tenant_id),
        ("client_id", client_id),
        ("client_secret", client_secret),
    ):
        if not isinstance(value, str) or not value.strip():
            raise ConfigurationError(
                f"amsdal_mail.oauth.microsoft: {label} must be a non-empty str"
            )
    name = f"amsdal_mail.oauth.microsoft(client_id={client_id!r})"
    apps: list[Any] = []

    def client() -> Any:
        # Made on first use (under the provider's lock): msal looks the tenant up
        # over the network when the application is built.
        if not apps:
            apps.append(
                msal.ConfidentialClientApplication(
                    client_id,
                    client_credential=client_secret,
                    authority=authority or f"https://login.microsoftonline.com/{tenant_id}",
                    **msal_options,
                )
            )
        return apps[0]

    def fetch() -> Fetched:
        # msal keeps its own cache: clear it, so a fetch is a fetch.
        app = client()
        app.remove_tokens_for_client()
        answer = app.acquire_token_for_client(scopes=list(scopes))
        token = answer.get("access_token") if isinstance(answer, dict) else None
        if not token:
            raise _endpoint_error(name, answer if isinstance(answer, dict) else {})
        return token, float(answer.get("expires_in", 3600))

    return CachedTokenProvider(fetch, name=name, margin=margin)


def google(
    *,
    service_account_file: str | None = None,
    service_account_info: Mapping[str, Any] | None = None,
    subject: str | None = None,
    refresh_token: str | None = None,
    client_id: str | None = None,
    client_secret: str | None = None,
    token_uri: str | None = None,
    margin: float = DEFAULT_MARGIN,
    request: Any = None,
) -> CachedTokenProvider:
    """Return a provider of Gmail SMTP tokens (google-auth).

    Either a service account (``service_account_file`` or
    ``service_account_info``, the JSON key) with domain-wide delegation for
    ``https://mail.google.com/``, impersonating ``subject`` (the mailbox that
    sends; required: a service account has no mailbox of its own), or a
    user's ``refresh_token`` with the OAuth client's ``client_id`` and
    ``client_secret``. ``token_uri`` overrides the endpoint (for the
    service account, the one in its key); ``request`` is the
    ``google.auth.transport.Request`` to use (default: a requests one).
    """
    try:
        from google.auth.exceptions import RefreshError
        from google.auth.transport.requests import Request
        from google.oauth2 import credentials as user_credentials
        from google.oauth2 import service_account
    except ImportError as exc:
        raise MissingDependencyError(
            "amsdal_mail.oauth.google needs google-auth: pip install 'amsdal-mail[google]'"
        ) from exc
    account = service_account_file is not None or service_account_info is not None
    if account == (refresh_token is not None):
        raise ConfigurationError(
            "amsdal_mail.oauth.google: give either a service account (service_account_file "
            "or service_account_info, with subject) or a user's refresh_token (with client_id "
            "and client_secret)"
        )
    credentials: Any
    if account:
        if not subject:
            raise ConfigurationError(
                "amsdal_mail.oauth.google: a service account needs subject, the mailbox it "
                "sends as (domain-wide delegation)"
            )
        if service_account_file is not None:
            credentials = service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
                service_account_file, scopes=[GOOGLE_SCOPE], subject=subject
            )
        else:
            info = dict(service_account_info or {})
            if token_uri:
                info["token_uri"] = token_uri
            credentials = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
                info, scopes=[GOOGLE_SCOPE], subject=subject
            )
        if token_uri and service_account_file is not None:
            credentials = credentials.with_token_uri(token_uri)
        name = f"amsdal_mail.oauth.google(subject={subject!r})"
    else:
        if not client_id or not client_secret:
            raise ConfigurationError(
                "amsdal_mail.oauth.google: a refresh_token needs client_id and client_secret"
            )
        credentials = user_credentials.Credentials(  # type: ignore[no-untyped-call]
            None,
            refresh_token=refresh_token,
            client_id=client_id,
            client_secret=client_secret,
            token_uri=token_uri or "https://oauth2.googleapis.com/token",
            scopes=[GOOGLE_SCOPE],
        )
        name = f"amsdal_mail.oauth.google(client_id={client_id!r})"
    transport = request if request is not None else Request()

    def fetch() -> Fetched:
        try:
            credentials.refresh(transport)
        except RefreshError as exc:
            raise TokenError(f"{name}: the token endpoint refused: {exc}") from None
        token = credentials.token
        expiry = credentials.expiry  # naive UTC, as google-auth keeps it
        lifetime = 3600.0
        if expiry is not None:
            import datetime

            now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
            lifetime = (expiry - now).total_seconds()
        return token, lifetime

    return CachedTokenProvider(fetch, name=name, margin=margin)
