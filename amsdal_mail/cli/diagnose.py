"""What went wrong, in plain words, and the likely fix: pure functions of the error and settings.

Every failure of ``amsdal-mail check``, ``send`` and ``manage.py
amsdal_mailcheck`` ends in one :class:`Diagnosis`: the process exit status,
the error as the library reported it, what it means for someone setting up
mail for the first time, and what to change. The texts follow the README's
"Troubleshooting" section.

Exit statuses: :data:`EXIT_OK` 0, :data:`EXIT_USAGE` 2 (usage or
configuration), :data:`EXIT_CONNECT` 3 (connect or timeout), :data:`EXIT_TLS`
4, :data:`EXIT_AUTH` 5, :data:`EXIT_REFUSED` 6 (a recipient refused),
:data:`EXIT_PROTOCOL` 7 (any other protocol error).
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import Final

from ..config import SMTPSettings
from ..exceptions import (
    AuthenticationError,
    ConnectError,
    MailError,
    MailTimeoutError,
    NotSupportedError,
    ServerDisconnectedError,
    TLSError,
)
from ..smtp.handshake import MECHANISMS, OAUTH_MECHANISMS
from ..status import SMTPReply

__all__ = [
    "EXIT_AUTH",
    "EXIT_CONNECT",
    "EXIT_OK",
    "EXIT_PROTOCOL",
    "EXIT_REFUSED",
    "EXIT_TLS",
    "EXIT_USAGE",
    "Diagnosis",
    "configuration_problem",
    "diagnose",
    "exit_code_for",
    "refused_recipient",
]

EXIT_OK: Final = 0
EXIT_USAGE: Final = 2
EXIT_CONNECT: Final = 3
EXIT_TLS: Final = 4
EXIT_AUTH: Final = 5
EXIT_REFUSED: Final = 6
EXIT_PROTOCOL: Final = 7

_TLS_FLAGS: Final = "--starttls (STARTTLS, usually port 587) or --ssl (implicit TLS, port 465)"


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """Why a check or a send failed: the exit status, the error, its meaning, the fix."""

    exit_code: int
    #: The error as the library reported it (``TLSError: ...``).
    error: str
    #: What it means, in plain words.
    problem: str
    #: What to change.
    fix: str

    def as_json(self) -> dict[str, object]:
        """Return the diagnosis as JSON-ready values."""
        return {
            "exit_code": self.exit_code,
            "error": self.error,
            "problem": self.problem,
            "fix": self.fix,
        }


def _named(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def configuration_problem(error: BaseException, *, fix: str | None = None) -> Diagnosis:
    """Return the diagnosis of a configuration or usage error (exit status 2)."""
    return Diagnosis(
        EXIT_USAGE,
        _named(error),
        "the settings cannot be used as they are",
        fix or "change the flag, setting or AMSDAL_EMAIL_* environment variable the error names",
    )


def exit_code_for(error: BaseException) -> int:
    """Return the exit status for an error raised while talking to the server."""
    if isinstance(error, (TLSError,)):
        return EXIT_TLS
    if isinstance(error, AuthenticationError):
        return EXIT_AUTH
    if isinstance(error, NotSupportedError):
        return EXIT_TLS if "STARTTLS" in str(error) else EXIT_AUTH
    if isinstance(error, (ConnectError, MailTimeoutError, ServerDisconnectedError)):
        return EXIT_CONNECT
    if isinstance(error, MailError) and not isinstance(error, OSError):
        return EXIT_USAGE  # configuration, invalid message, missing extra
    return EXIT_PROTOCOL


def diagnose(step: str, error: BaseException, settings: SMTPSettings) -> Diagnosis:
    """Return the diagnosis of ``error``, raised at ``step`` of a check or a send."""
    where = f"{settings.host}:{settings.port}"
    text = str(error)
    code = exit_code_for(error)
    if code == EXIT_USAGE:
        return configuration_problem(error)
    if isinstance(error, TLSError):
        return _tls(error, settings, where)
    if isinstance(error, NotSupportedError):
        return _not_supported(error, settings, where)
    if isinstance(error, AuthenticationError):
        return _authentication(error, settings)
    if isinstance(error, MailTimeoutError):
        return _timeout(error, settings, where, step)
    if isinstance(error, ConnectError):
        return _connect(error, where)
    if isinstance(error, ServerDisconnectedError):
        problem = f"{where} closed the connection"
        fix = (
            "check the TLS mode for the port (" + _TLS_FLAGS + "); the server may also refuse "
            "connections from this address or have closed an idle connection"
        )
        return Diagnosis(EXIT_CONNECT, _named(error), problem, fix)
    if step == "mail":
        return Diagnosis(
            EXIT_PROTOCOL,
            _named(error),
            "the server refused the sender address (MAIL FROM)",
            "use --from with an address this account may send as (often the login itself)",
        )
    return Diagnosis(
        EXIT_PROTOCOL,
        _named(error),
        f"{where} answered with an error the check did not expect: {text}",
        "read the server's reply above; its administrator can tell what it refuses and why",
    )


def _tls(error: TLSError, settings: SMTPSettings, where: str) -> Diagnosis:
    text = str(error)
    lower = text.lower()
    if "wrong_version_number" in lower or "wrong version number" in lower:
        if settings.use_ssl:
            problem = (
                f"{where} does not speak TLS from the first byte: use_ssl (--ssl) is implicit "
                "TLS, which only port 465 offers"
            )
            fix = "use --starttls for port 587 (or 25), or --ssl with port 465"
        else:
            problem = f"{where} answered the TLS handshake with something that is not TLS"
            fix = "check the port and TLS mode: " + _TLS_FLAGS
        return Diagnosis(EXIT_TLS, _named(error), problem, fix)
    if "mismatch" in lower or "doesn't match" in lower:
        return Diagnosis(
            EXIT_TLS,
            _named(error),
            f"the server's certificate is valid, but for another host name than {settings.host}",
            "connect with the host name the certificate is for (the one the provider "
            "documents), not an IP address or an alias; do not turn verification off",
        )
    if "certificate verify failed" in lower or "certificate_verify_failed" in lower:
        return Diagnosis(
            EXIT_TLS,
            _named(error),
            "the server's certificate is not trusted by this machine (self-signed, signed "
            "by a private CA, expired, or the chain is incomplete)",
            "trust the CA that signed it: --cafile CA.pem, or SSL_CERT_FILE=CA.pem in the "
            "environment (in code: ssl_context=ssl.create_default_context(cafile=...)); "
            "do not turn verification off",
        )
    return Diagnosis(
        EXIT_TLS,
        _named(error),
        f"the TLS handshake with {where} failed",
        "check the TLS mode for the port: " + _TLS_FLAGS,
    )


def _not_supported(error: NotSupportedError, settings: SMTPSettings, where: str) -> Diagnosis:
    text = str(error)
    if "STARTTLS" in text:
        return Diagnosis(
            EXIT_TLS,
            _named(error),
            f"{where} does not offer STARTTLS, and --starttls (use_tls) is set; the "
            "connection is never used unencrypted instead",
            "for port 465 use --ssl (implicit TLS); otherwise use the port the provider "
            "documents for STARTTLS (usually 587)",
        )
    if "does not offer AUTH" in text:
        if settings.is_encrypted:
            fix = (
                "remove --user (AMSDAL_EMAIL_USER) if this server relays without a login, "
                "or use the provider's submission port (587 with --starttls)"
            )
        else:
            fix = (
                "servers offer AUTH only after STARTTLS: add --starttls "
                "(AMSDAL_EMAIL_USE_TLS=true), or --ssl for port 465"
            )
        return Diagnosis(
            EXIT_AUTH,
            _named(error),
            f"{where} does not offer AUTH on this connection, and a username is set",
            fix,
        )
    return Diagnosis(
        EXIT_AUTH,
        _named(error),
        f"{where} offers no login method amsdal_mail speaks",
        f"amsdal_mail logs in with {', '.join(MECHANISMS)} (a password) or "
        f"{', '.join(OAUTH_MECHANISMS)} (an OAuth2 token); ask the provider which it supports",
    )


def _authentication(error: AuthenticationError, settings: SMTPSettings) -> Diagnosis:
    text = str(error)
    if error.smtp_code == 530 and "starttls" in text.lower():
        return Diagnosis(
            EXIT_AUTH,
            _named(error),
            "the server refuses logins before the connection is encrypted",
            "add --starttls (AMSDAL_EMAIL_USE_TLS=true), or --ssl for port 465",
        )
    if error.smtp_code == 530:
        return Diagnosis(
            EXIT_AUTH,
            _named(error),
            "the server takes mail only after a login",
            "give --user (the password comes from AMSDAL_EMAIL_PASSWORD or a prompt)",
        )
    user = settings.username or ""
    secret = "token" if settings.oauth2_token is not None else "password"
    return Diagnosis(
        EXIT_AUTH,
        _named(error),
        f"the server refused the login for {user!r}: wrong username or {secret}",
        "check the username and password (AMSDAL_EMAIL_USER, AMSDAL_EMAIL_PASSWORD); Gmail "
        "and others need an App Password (2-Step Verification on), not the account password; "
        "Microsoft 365 and Google Workspace may require OAuth2",
    )


def _timeout(error: MailTimeoutError, settings: SMTPSettings, where: str, step: str) -> Diagnosis:
    if step == "connect" and settings.port == 465 and not settings.use_ssl:
        return Diagnosis(
            EXIT_CONNECT,
            _named(error),
            "port 465 is implicit TLS: the server waits for a TLS handshake while the client "
            "waits for its greeting",
            "use --ssl (use_ssl=True) for port 465",
        )
    return Diagnosis(
        EXIT_CONNECT,
        _named(error),
        f"{where} did not answer within {settings.timeout}s",
        "a firewall may drop the packets (many networks block port 25; try 587 with "
        "--starttls), the host or port may be wrong, or the server is slow: raise --timeout",
    )


def _connect(error: ConnectError, where: str) -> Diagnosis:
    text = str(error)
    lower = text.lower()
    refused = ("refused", "connect call failed", f"[errno {errno.ECONNREFUSED}]")
    if any(word in lower for word in refused) and "greeted" not in lower:
        return Diagnosis(
            EXIT_CONNECT,
            _named(error),
            f"nothing is listening on {where}",
            "check the host and port (587 STARTTLS, 465 implicit TLS, 25 between servers) "
            "and that the server is running",
        )
    if (
        "name or service not known" in lower
        or "nodename nor servname" in lower
        or ("getaddrinfo" in lower or "temporary failure in name resolution" in lower)
    ):
        return Diagnosis(
            EXIT_CONNECT,
            _named(error),
            f"the host name of {where} could not be resolved",
            "check the spelling of --host (AMSDAL_EMAIL_HOST) and this machine's DNS",
        )
    if "greeted" in lower:
        return Diagnosis(
            EXIT_CONNECT,
            _named(error),
            "the server answered the connection with a refusal instead of its greeting",
            "the server is busy or does not take connections from this address; try again "
            "later or ask its administrator",
        )
    return Diagnosis(
        EXIT_CONNECT,
        _named(error),
        f"could not connect to {where}",
        "check the host and port, and that this machine can reach it (firewall, VPN)",
    )


def refused_recipient(recipient: str, reply: SMTPReply) -> Diagnosis:
    """Return the diagnosis of a recipient the server refused (exit status 6)."""
    if reply.code < 500:
        fix = "the refusal is temporary (greylisting, a full mailbox, a busy server): try later"
    else:
        fix = (
            "check the address; a relay refuses recipients outside its own domains unless "
            "you log in (--user)"
        )
    return Diagnosis(
        EXIT_REFUSED,
        f"recipient refused: {reply}",
        f"the server refused the recipient {recipient}",
        fix,
    )
