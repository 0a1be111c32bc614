"""SMTP settings: defaults < ``AMSDAL_EMAIL_*`` environment < explicit arguments.

:func:`resolve_smtp_settings` is the one place where that order is applied,
values are parsed and checked, and the port is derived from the TLS mode.
"""

from __future__ import annotations

import enum
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from .exceptions import ConfigurationError

__all__ = [
    "ENV_PREFIX",
    "UNSET",
    "SMTPSettings",
    "env_var",
    "parse_bool",
    "resolve_smtp_settings",
]

ENV_PREFIX: Final = "AMSDAL_EMAIL_"
DEFAULT_HOST: Final = "localhost"
DEFAULT_TIMEOUT: Final = 30.0
DEFAULT_MAX_RETRIES: Final = 0
DEFAULT_RETRY_BACKOFF: Final = 1.0
PORT_SSL: Final = 465
PORT_STARTTLS: Final = 587
PORT_PLAIN: Final = 25

_TRUE = frozenset({"1", "true", "yes", "on", "y", "t"})
_FALSE = frozenset({"0", "false", "no", "off", "n", "f", ""})
_NONE_WORDS = frozenset({"none", "null", "off"})


class _Unset(enum.Enum):
    """Marks an argument that was not given (so ``None`` can mean something)."""

    UNSET = "UNSET"

    def __repr__(self) -> str:
        return "UNSET"


#: Sentinel for "argument not given": fall back to the environment, then the default.
UNSET: Final = _Unset.UNSET

# argument name -> environment variable suffix
_ENV_NAMES: Final = {
    "host": "HOST",
    "port": "PORT",
    "username": "USER",
    "password": "PASSWORD",
    "use_tls": "USE_TLS",
    "use_ssl": "USE_SSL",
    "timeout": "TIMEOUT",
    "ssl_certfile": "SSL_CERTFILE",
    "ssl_keyfile": "SSL_KEYFILE",
    "local_hostname": "LOCAL_HOSTNAME",
    "allow_insecure_auth": "ALLOW_INSECURE_AUTH",
    "max_retries": "MAX_RETRIES",
    "retry_backoff": "RETRY_BACKOFF",
}


def env_var(name: str) -> str:
    """Return the environment variable of the SMTP setting ``name`` (host: AMSDAL_EMAIL_HOST)."""
    return ENV_PREFIX + _ENV_NAMES[name]


@dataclass(frozen=True, slots=True)
class SMTPSettings:
    """Fully resolved, validated SMTP settings.

    Build it with :func:`resolve_smtp_settings`; the password never appears in
    its repr.
    """

    host: str = DEFAULT_HOST
    port: int = PORT_PLAIN
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    use_tls: bool = False
    use_ssl: bool = False
    timeout: float | None = DEFAULT_TIMEOUT
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_context: ssl.SSLContext | None = field(default=None, repr=False, compare=False)
    local_hostname: str | None = None
    allow_insecure_auth: bool = False
    max_retries: int = DEFAULT_MAX_RETRIES
    retry_backoff: float = DEFAULT_RETRY_BACKOFF

    @property
    def is_encrypted(self) -> bool:
        """Return True when the connection is protected by TLS from before AUTH."""
        return self.use_tls or self.use_ssl

    def make_ssl_context(self) -> ssl.SSLContext:
        """Return the TLS context to use: ``ssl_context`` if given, else a verifying one.

        The default context verifies the certificate and the host name against
        the system trust store (``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` apply) and
        loads the client certificate from ``ssl_certfile`` / ``ssl_keyfile``.
        """
        if self.ssl_context is not None:
            return self.ssl_context
        context = ssl.create_default_context()
        if self.ssl_certfile:
            try:
                context.load_cert_chain(self.ssl_certfile, self.ssl_keyfile)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigurationError(
                    f"cannot load client certificate ssl_certfile={self.ssl_certfile!r} "
                    f"ssl_keyfile={self.ssl_keyfile!r}: {exc}"
                ) from exc
        return context


def parse_bool(value: object, name: str) -> bool:
    """Return ``value`` as a bool, accepting the usual spellings.

    ``true/false``, ``1/0``, ``yes/no``, ``on/off`` in any case. Anything
    else raises :class:`ConfigurationError` naming ``name``.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
    raise ConfigurationError(
        f"{name} must be a boolean (true/false, 1/0, yes/no, on/off), got {value!r}"
    )


def _parse_port(value: object, name: str) -> int:
    try:
        port = int(value) if not isinstance(value, bool) else -1  # type: ignore[call-overload]
    except (TypeError, ValueError):
        port = -1
    if not 0 < port < 65536:
        raise ConfigurationError(f"{name} must be a port number from 1 to 65535, got {value!r}")
    return port


def _parse_timeout(value: object, name: str) -> float | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in _NONE_WORDS):
        return None
    try:
        seconds = float(value) if not isinstance(value, bool) else -1.0  # type: ignore[arg-type]
    except (TypeError, ValueError):
        seconds = -1.0
    if not seconds > 0 or seconds != seconds or seconds == float("inf"):
        raise ConfigurationError(
            f"{name} must be a positive number of seconds (or none), got {value!r}"
        )
    return seconds


def _parse_count(value: object, name: str) -> int:
    try:
        count = int(value) if not isinstance(value, bool) else -1  # type: ignore[call-overload]
    except (TypeError, ValueError):
        count = -1
    if count < 0:
        raise ConfigurationError(f"{name} must be a whole number >= 0, got {value!r}")
    return count


def _parse_str(value: object, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigurationError(f"{name} must be a string, got {type(value).__name__}")
    if any(c in value for c in "\r\n\0"):
        raise ConfigurationError(f"{name} must not contain CR, LF or NUL")
    return value or None


def _parse_backoff(value: object, name: str) -> float:
    seconds = _parse_timeout(value, name)
    if seconds is None:
        raise ConfigurationError(f"{name} must be a positive number of seconds, got {value!r}")
    return seconds


_PARSERS: Final[dict[str, Any]] = {
    "host": _parse_str,
    "port": _parse_port,
    "username": _parse_str,
    "password": _parse_str,
    "use_tls": parse_bool,
    "use_ssl": parse_bool,
    "timeout": _parse_timeout,
    "ssl_certfile": _parse_str,
    "ssl_keyfile": _parse_str,
    "local_hostname": _parse_str,
    "allow_insecure_auth": parse_bool,
    "max_retries": _parse_count,
    "retry_backoff": _parse_backoff,
}

#: The option names :func:`resolve_smtp_settings` accepts (besides ``ssl_context``).
SETTING_NAMES: Final = frozenset(_PARSERS)


def resolve_smtp_settings(
    options: Mapping[str, Any] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> SMTPSettings:
    """Return validated SMTP settings from explicit options, env vars and defaults.

    Order, highest first: a value in ``options`` (an explicit argument; a
    value of :data:`UNSET` counts as absent), then the ``AMSDAL_EMAIL_*``
    environment variable, then the default. ``port`` defaults to 465 with
    ``use_ssl``, 587 with ``use_tls``, else 25. ``options`` may also hold
    ``ssl_context``.

    Raises:
        ConfigurationError: an unknown option, a value that does not parse
            (naming the argument or environment variable), or ``use_tls``
            together with ``use_ssl``.
    """
    opts = {k: v for k, v in (options or {}).items() if v is not UNSET}
    env = os.environ if environ is None else environ
    unknown = set(opts) - SETTING_NAMES - {"ssl_context"}
    if unknown:
        raise ConfigurationError(
            f"unknown SMTP option(s) {sorted(unknown)}; known options are "
            f"{sorted(SETTING_NAMES | {'ssl_context'})}"
        )
    values: dict[str, Any] = {}
    for name, parse in _PARSERS.items():
        if name in opts:
            values[name] = parse(opts[name], name)
            continue
        var = env_var(name)
        raw = env.get(var)
        if raw is not None and (raw.strip() or name in ("use_tls", "use_ssl")):
            values[name] = parse(raw, var)

    use_tls = values.get("use_tls", False)
    use_ssl = values.get("use_ssl", False)
    if use_tls and use_ssl:
        raise ConfigurationError(
            "use_tls (STARTTLS, usually port 587) and use_ssl (implicit TLS, usually port 465) "
            "are mutually exclusive; set only one of them"
        )
    if "port" not in values:
        values["port"] = PORT_SSL if use_ssl else PORT_STARTTLS if use_tls else PORT_PLAIN
    if values.get("host") is None:
        values["host"] = DEFAULT_HOST
    if values.get("ssl_keyfile") and not values.get("ssl_certfile"):
        raise ConfigurationError("ssl_keyfile is set but ssl_certfile is not; set both")
    context = opts.get("ssl_context")
    if context is not None and not isinstance(context, ssl.SSLContext):
        raise ConfigurationError(
            f"ssl_context must be an ssl.SSLContext, got {type(context).__name__}"
        )
    return SMTPSettings(ssl_context=context, **values)
