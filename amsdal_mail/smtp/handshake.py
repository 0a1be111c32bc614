"""The handshake policy: what the client insists on after EHLO.

Both drivers connect and say EHLO with their library, then ask this module
what to do: :func:`wants_starttls` (STARTTLS is required with ``use_tls``,
never skipped), EHLO again after it, and :func:`auth_mechanism` (AUTH is
required when a username is set, with the first mechanism of
:data:`MECHANISMS` the server offers). The rules are pure functions of the
settings and the server's EHLO keywords, so the twins cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..config import SMTPSettings
from ..exceptions import NotSupportedError

__all__ = ["MECHANISMS", "auth_mechanism", "ehlo_features", "wants_starttls"]

#: AUTH mechanisms in order of preference (smtplib's order); the first one offered is used.
MECHANISMS = ("CRAM-MD5", "PLAIN", "LOGIN")


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
    if "auth" not in features:
        raise NotSupportedError(
            f"SMTP AUTH extension not supported by server. {where} does not offer AUTH, "
            "and a username is set; remove the username or use a server (or TLS mode) "
            "that offers AUTH"
        )
    offered = features["auth"].upper().split()
    for mechanism in MECHANISMS:
        if mechanism in offered:
            return mechanism
    raise NotSupportedError(
        f"No suitable authentication method found. {where} offers AUTH "
        f"{' '.join(offered) or '(no mechanism)'}; amsdal_mail supports {', '.join(MECHANISMS)}"
    )
