"""The handshake policy: what the client insists on after EHLO.

Both drivers connect and say EHLO with their library, then ask this module
what to do: :func:`wants_starttls` (STARTTLS is required with ``use_tls``,
never skipped), EHLO again after it, and :func:`auth_mechanism` (AUTH is
required when a username is set, with the first mechanism of
:data:`MECHANISMS` the server offers, or of :data:`OAUTH_MECHANISMS` with
``oauth2_token``). The rules are pure functions of the settings and the
server's EHLO keywords, so the twins cannot drift apart.

OAuth2 logins are a conversation written once here too: :func:`oauth_login`
yields :class:`FetchToken` (ask the token provider) and :class:`SendLine`
(write one line, read one reply) and decides from the replies; each driver
only carries those two out. :func:`provider_kwargs` and :func:`checked_token`
are the rules for calling a provider and for what it returns.
"""

from __future__ import annotations

import base64
import inspect
import json
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from typing import Any

from ..config import SMTPSettings
from ..exceptions import AuthenticationError, ConfigurationError, NotSupportedError
from ..status import SMTPReply

__all__ = [
    "MECHANISMS",
    "OAUTH_MECHANISMS",
    "FetchToken",
    "SendLine",
    "TokenRefusedError",
    "auth_mechanism",
    "checked_token",
    "ehlo_features",
    "oauth_login",
    "provider_kwargs",
    "provider_name",
    "sasl_oauth_response",
    "wants_starttls",
]

#: AUTH mechanisms in order of preference (smtplib's order); the first one offered is used.
MECHANISMS = ("CRAM-MD5", "PLAIN", "LOGIN")
#: OAuth2 mechanisms in order of preference, used with ``oauth2_token``: Google's and
#: Microsoft's XOAUTH2, else OAUTHBEARER (RFC 7628).
OAUTH_MECHANISMS = ("XOAUTH2", "OAUTHBEARER")


def ehlo_features(raw: Mapping[str, str]) -> dict[str, str]:
    """Return EHLO keywords as the flow reads them: lower-case names, parameters as sent."""
    return {name.lower(): value.strip() for name, value in raw.items()}


def wants_starttls(settings: SMTPSettings, features: Mapping[str, str], where: str) -> bool:
    """Return True when STARTTLS must be issued now.

    Raises :class:`~amsdal_mail.NotSupportedError` when ``use_tls`` is set
    and the server does not offer STARTTLS: the connection is never used
    unencrypted instead.
    """
    if not settings.use_tls:
        return False
    if "starttls" not in features:
        raise NotSupportedError(
            f"STARTTLS extension not supported by server. {where} does not offer STARTTLS, "
            "and use_tls is set; not falling back to an unencrypted connection"
        )
    return True


def auth_mechanism(settings: SMTPSettings, features: Mapping[str, str], where: str) -> str | None:
    """Return the AUTH mechanism to log in with, or None when no login is wanted.

    Raises :class:`~amsdal_mail.NotSupportedError` when a username is set and
    the server offers no AUTH, or none of :data:`MECHANISMS`.
    """
    if not settings.username:
        return None
    oauth = settings.oauth2_token is not None
    if "auth" not in features:
        raise NotSupportedError(
            f"SMTP AUTH extension not supported by server. {where} does not offer AUTH, "
            "and a username is set; remove the username or use a server (or TLS mode) "
            "that offers AUTH"
        )
    offered = features["auth"].upper().split()
    wanted = OAUTH_MECHANISMS if oauth else MECHANISMS
    for mechanism in wanted:
        if mechanism in offered:
            return mechanism
    with_what = " with oauth2_token" if oauth else ""
    raise NotSupportedError(
        f"No suitable authentication method found. {where} offers AUTH "
        f"{' '.join(offered) or '(no mechanism)'}; amsdal_mail supports "
        f"{', '.join(wanted)}{with_what}"
    )


# --- OAuth2 (XOAUTH2, OAUTHBEARER) ------------------------------------------------------


class TokenRefusedError(AuthenticationError):
    """The server refused an OAuth2 token from a provider, which may give a fresh one.

    The flows ask the provider once more (``force_refresh=True``) on a new
    connection; a second refusal is a plain :class:`~amsdal_mail.AuthenticationError`.
    """


@dataclass(frozen=True, slots=True)
class FetchToken:
    """Ask the token provider for an access token; the conversation is sent the token."""

    force_refresh: bool


@dataclass(frozen=True, slots=True)
class SendLine:
    """Write ``line`` (one command line, CRLF included); the conversation is sent the reply."""

    line: bytes

    def __repr__(self) -> str:
        return "SendLine(...)"  # the line may carry a token


def provider_name(provider: object) -> str:
    """Return a name for ``provider`` in error messages (never a token)."""
    if isinstance(provider, str):
        return "the oauth2_token string"
    module = getattr(provider, "__module__", None) or ""
    qualname = getattr(provider, "__qualname__", None) or type(provider).__qualname__
    name = f"{module}.{qualname}" if module else qualname
    return f"the oauth2_token provider {name}"


def provider_kwargs(provider: Any, force_refresh: bool) -> dict[str, bool]:
    """Return the keyword arguments for a call of ``provider``.

    ``force_refresh=True`` is passed on the retry after a refusal, to a
    provider that accepts it (a ``force_refresh`` parameter or ``**kwargs``);
    the first call, and any call of one that does not, passes nothing.
    """
    if not force_refresh:
        return {}
    try:
        parameters = inspect.signature(provider).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: try the keyword
        return {"force_refresh": True}
    for parameter in parameters:
        if parameter.kind is parameter.VAR_KEYWORD or (
            parameter.name == "force_refresh" and parameter.kind is not parameter.POSITIONAL_ONLY
        ):
            return {"force_refresh": True}
    return {}


def checked_token(value: object, provider: object) -> str:
    """Return ``value``, what ``provider`` returned, if it is a usable access token.

    Raises :class:`~amsdal_mail.ConfigurationError` naming the provider (never
    showing the value) when it is not a non-empty string of visible ASCII.
    """
    name = provider_name(provider)
    if value is None or value == "" or value == b"":
        raise ConfigurationError(
            f"{name} returned {'None' if value is None else 'an empty token'}; "
            "it must return the OAuth2 access token as a non-empty str"
        )
    if inspect.isawaitable(value):
        if inspect.iscoroutine(value):
            value.close()  # never awaited: do not leave it to warn
        raise ConfigurationError(
            f"{name} returned an awaitable on the sync path; use the async API "
            "(asend_mail, asend_messages) or give a sync callable"
        )
    if not isinstance(value, str):
        raise ConfigurationError(
            f"{name} returned a {type(value).__name__}; it must return the access token as a str"
        )
    if not all(33 <= ord(c) <= 126 for c in value):
        raise ConfigurationError(
            f"{name} returned a token with spaces, control or non-ASCII characters; "
            "an OAuth2 bearer token is visible ASCII"
        )
    return value


def _saslname(user: str) -> str:
    """Escape ``user`` for the GS2 header of OAUTHBEARER (RFC 5801: ``,`` and ``=``)."""
    return user.replace("=", "=3D").replace(",", "=2C")


def sasl_oauth_response(mechanism: str, user: str, token: str, host: str, port: int) -> bytes:
    """Return the initial client response of ``mechanism`` (not yet base64-encoded).

    XOAUTH2 (Google, Microsoft): ``user=USER^Aauth=Bearer TOKEN^A^A``;
    OAUTHBEARER (RFC 7628): ``n,a=USER,^Ahost=HOST^Aport=PORT^Aauth=Bearer TOKEN^A^A``.
    """
    if mechanism == "XOAUTH2":
        text = f"user={user}\x01auth=Bearer {token}\x01\x01"
    elif mechanism == "OAUTHBEARER":
        gs2 = f"n,a={_saslname(user)},"
        text = f"{gs2}\x01host={host}\x01port={port}\x01auth=Bearer {token}\x01\x01"
    else:
        raise ValueError(f"not an OAuth2 mechanism: {mechanism!r}")
    return text.encode("utf-8")


def _error_detail(challenge: str) -> str:
    """Return what a 334 error challenge says (base64 JSON such as ``{"status":"401"}``)."""
    try:
        decoded = base64.b64decode(challenge.strip(), validate=True).decode("utf-8")
        fields = json.loads(decoded)
    except (ValueError, UnicodeDecodeError):
        return ""
    if not isinstance(fields, dict):
        return ""
    shown = {k: fields[k] for k in ("status", "schemes", "scope") if k in fields}
    return json.dumps(shown, separators=(",", ":"))


def oauth_login(
    mechanism: str, settings: SMTPSettings, where: str, *, force_refresh: bool = False
) -> Generator[FetchToken | SendLine, object, None]:
    """Log in with ``mechanism`` (one of :data:`OAUTH_MECHANISMS`); return on 235.

    The conversation: fetch a token, send ``AUTH MECHANISM <initial response>``;
    a 334 reply is the server's error challenge (base64 JSON), answered as
    the mechanism says (OAUTHBEARER: ``^A``; XOAUTH2: an empty line) to get
    the final reply. Raises :class:`TokenRefusedError` for a refusal a fresh
    token may cure (the token came from a provider and this was not already
    the retry), else :class:`~amsdal_mail.AuthenticationError`. No error
    text shows the token.
    """
    source = settings.oauth2_token
    token = yield FetchToken(force_refresh)
    assert isinstance(token, str)
    initial = sasl_oauth_response(
        mechanism, settings.username or "", token, settings.host, settings.port
    )
    encoded = base64.b64encode(initial)
    reply = yield SendLine(b"AUTH " + mechanism.encode("ascii") + b" " + encoded + b"\r\n")
    assert isinstance(reply, SMTPReply)
    detail = ""
    if reply.code == 334:
        detail = _error_detail(reply.text)
        reply = yield SendLine(b"AQ==\r\n" if mechanism == "OAUTHBEARER" else b"\r\n")
        assert isinstance(reply, SMTPReply)
        if reply.code == 334:  # a second challenge: cancel the exchange (RFC 4954)
            reply = yield SendLine(b"*\r\n")
            assert isinstance(reply, SMTPReply)
    if reply.code == 235:
        return
    text = f"{reply.text} ({mechanism} for {settings.username!r} at {where}"
    text += f"; the server said {detail})" if detail else ")"
    if isinstance(source, str) or force_refresh:
        if force_refresh:
            text += (
                f"; refused again after {provider_name(source)} was asked for a new token "
                "(force_refresh=True)"
            )
        raise AuthenticationError(reply.code, text)
    raise TokenRefusedError(reply.code, text)
