"""SMTP settings: explicit options > further layers > ``AMSDAL_EMAIL_*`` environment > defaults.

:func:`resolve_smtp_settings` is the one place where that order is applied,
values are parsed and checked, and the port is derived from the TLS mode;
:func:`inspect_smtp_settings` runs the same steps and reports every problem
instead of raising the first. A caller with a source of its own (the Django
app's ``EMAIL_*`` settings) passes it as a :class:`Layer` between the
explicit options and the environment; each layer names its values in error
messages (``settings.EMAIL_PORT must be a port number ...``).

The environment is read once per resolution. An ``AMSDAL_EMAIL_*`` variable
set to an empty value (``AMSDAL_EMAIL_USE_TLS=``) is:

* unset, for a string setting (host, user, password, certificate files,
  local hostname, the OAuth2 token provider; ``AMSDAL_EMAIL_BACKEND`` too);
* a :class:`~amsdal_mail.ConfigurationError` naming the variable, for a
  boolean or a number (``USE_TLS``, ``USE_SSL``, ``ALLOW_INSECURE_AUTH``,
  ``PORT``, ``TIMEOUT``, ``MAX_RETRIES``, ``RETRY_BACKOFF``,
  ``MAX_MESSAGES_PER_CONNECTION``, ``RATE_LIMIT``): an empty value there is
  more often a mistake than a choice, so it must be given a value or unset.

``oauth2_token`` is an access token (a string) or a token provider: a
callable returning one (sync, or async on the async path), called with
``force_refresh=True`` when the server refused the token it gave. The
environment names a provider by dotted path
(``AMSDAL_EMAIL_OAUTH2_TOKEN_PROVIDER=myproject.mail.get_token``), imported
when the settings are resolved.

``return_path`` is the envelope sender (MAIL FROM) of every message, where
bounces go (a message's own ``return_path`` wins; default: the From address);
``verp`` tags it per recipient with a token signed with ``verp_secret``
(``bounces+TOKEN@example.com``, see :mod:`amsdal_mail.tracking`), which needs
one transaction per recipient. ``verp=True`` without ``verp_secret`` is a
:class:`~amsdal_mail.ConfigurationError`.

``dsn_notify`` (NOTIFY words, ``"failure,delay"``) and ``dsn_ret``
(``headers`` / ``full``) ask every message for delivery status notifications
(RFC 3461); ``dkim_selector``, ``dkim_domain`` and ``dkim_private_key`` (PEM
text; or ``dkim_private_key_file``) sign every message with DKIM, all or none
of them (an empty ``AMSDAL_EMAIL_DKIM_*`` variable is unset).

Booleans accept true/false, 1/0, yes/no, on/off, y/n, t/f in any case.
"""

from __future__ import annotations

import enum
import importlib
import math
import os
import ssl
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Final

from .exceptions import ConfigurationError
from .message.dsn import parse_notify, parse_ret

__all__ = [
    "ENV_PREFIX",
    "SETTING_NAMES",
    "UNSET",
    "Layer",
    "Resolution",
    "OAuth2Token",
    "SMTPSettings",
    "SettingProblem",
    "TokenProvider",
    "TokenProviderPath",
    "env_var",
    "environment_layer",
    "inspect_smtp_settings",
    "parse_bool",
    "resolve_smtp_settings",
]

ENV_PREFIX: Final = "AMSDAL_EMAIL_"
DEFAULT_HOST: Final = "localhost"
DEFAULT_TIMEOUT: Final = 30.0
DEFAULT_MAX_RETRIES: Final = 0
DEFAULT_RETRY_BACKOFF: Final = 1.0
DEFAULT_POOL_SIZE: Final = 4
#: Below the idle limits of common servers (Postfix closes an idle session after 300 s,
#: many providers sooner), so a pooled connection is seldom found closed.
DEFAULT_POOL_IDLE_TIMEOUT: Final = 30.0
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
    "chunking": "CHUNKING",
    "max_retries": "MAX_RETRIES",
    "retry_backoff": "RETRY_BACKOFF",
    "dsn_notify": "DSN_NOTIFY",
    "dsn_ret": "DSN_RET",
    "dkim_selector": "DKIM_SELECTOR",
    "dkim_domain": "DKIM_DOMAIN",
    "dkim_private_key": "DKIM_PRIVATE_KEY",
    "dkim_private_key_file": "DKIM_PRIVATE_KEY_FILE",
    "oauth2_token": "OAUTH2_TOKEN_PROVIDER",
    "max_messages_per_connection": "MAX_MESSAGES_PER_CONNECTION",
    "rate_limit": "RATE_LIMIT",
    "return_path": "RETURN_PATH",
    "verp": "VERP",
    "verp_secret": "VERP_SECRET",
    "pool": "POOL",
    "pool_size": "POOL_SIZE",
    "pool_idle_timeout": "POOL_IDLE_TIMEOUT",
}

#: A callable returning an OAuth2 access token (or an awaitable of one, on the
#: async path); it may accept ``force_refresh``, passed as True on the one retry
#: after the server refused the token it gave.
TokenProvider = Callable[..., "str | Awaitable[str]"]
#: What ``oauth2_token`` takes: an access token, or a :data:`TokenProvider`.
OAuth2Token = str | TokenProvider


@dataclass(frozen=True, slots=True)
class TokenProviderPath:
    """A token provider named by dotted path (``"myproject.mail.get_token"``), imported on use.

    The environment layer gives ``AMSDAL_EMAIL_OAUTH2_TOKEN_PROVIDER`` as one,
    the Django layer ``EMAIL_OAUTH2_TOKEN_PROVIDER`` when it is a string.
    """

    path: str


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
    #: Send the data with BDAT (RFC 3030 CHUNKING) when the server offers it; False: DATA.
    chunking: bool = True
    max_retries: int = DEFAULT_MAX_RETRIES
    retry_backoff: float = DEFAULT_RETRY_BACKOFF
    #: DSN (RFC 3461) NOTIFY words for every message, e.g. ("failure", "delay"); None: none.
    dsn_notify: tuple[str, ...] | None = None
    #: DSN RET for every message: "headers" or "full"; None: the server's choice.
    dsn_ret: str | None = None
    #: DKIM signing: selector, signing domain and private key (PEM text, or the
    #: file holding it); all or none of them. The key never shows in the repr.
    dkim_selector: str | None = None
    dkim_domain: str | None = None
    dkim_private_key: str | None = field(default=None, repr=False)
    dkim_private_key_file: str | None = None
    #: An access token or a provider of one; never shown in the repr.
    oauth2_token: OAuth2Token | None = field(default=None, repr=False)
    #: After this many messages a connection is closed and a new one opened (None: no limit).
    max_messages_per_connection: int | None = None
    #: Messages per second one backend may start, on all its connections (None: no limit).
    rate_limit: float | None = None
    #: The envelope sender (MAIL FROM) of every message, where bounces go (None: From).
    return_path: str | None = None
    #: VERP: MAIL FROM is the return path tagged with a signed token naming the message
    #: and the recipient, one transaction per recipient.
    verp: bool = False
    #: The secret VERP tokens are signed with; never shown in the repr.
    verp_secret: str | None = field(default=None, repr=False)
    #: Keep logged-in connections per process and reuse them across calls and backends.
    pool: bool = False
    #: The most idle connections the pool keeps per server and login.
    pool_size: int = DEFAULT_POOL_SIZE
    #: Seconds an idle pooled connection is kept before it is closed (None: no limit).
    pool_idle_timeout: float | None = DEFAULT_POOL_IDLE_TIMEOUT

    def as_options(self) -> dict[str, Any]:
        """Return every setting as an explicit option (``ssl_context`` included).

        Resolving these again gives equal settings and consults no environment
        variable, since every option is given.
        """
        return {f.name: getattr(self, f.name) for f in fields(self)}

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


def _parse_notify(value: object, name: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    try:
        return parse_notify(value)  # type: ignore[arg-type]
    except ValueError as exc:
        raise ConfigurationError(f"{name} {exc}") from None


def _parse_ret(value: object, name: str) -> str | None:
    if value is None:
        return None
    try:
        return parse_ret(value)  # type: ignore[arg-type]
    except ValueError as exc:
        raise ConfigurationError(f"{name} {exc}") from None


def _parse_pem(value: object, name: str) -> str | None:
    """Return PEM text; bytes are decoded, and ``\\n`` in a one-line value is a line break."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if not isinstance(value, str):
        raise ConfigurationError(f"{name} must be PEM text, got {type(value).__name__}")
    if "\n" not in value and "\\n" in value:
        value = value.replace("\\n", "\n")
    return value.strip() or None


def _parse_backoff(value: object, name: str) -> float:
    seconds = _parse_timeout(value, name)
    if seconds is None:
        raise ConfigurationError(f"{name} must be a positive number of seconds, got {value!r}")
    return seconds


def _parse_limit(value: object, name: str) -> int | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in _NONE_WORDS):
        return None
    try:
        count = int(value) if not isinstance(value, (bool, float)) else 0  # type: ignore[call-overload]
    except (TypeError, ValueError):
        count = 0
    if count < 1:
        raise ConfigurationError(
            f"{name} must be a whole number of messages >= 1 (or none for no limit), got {value!r}"
        )
    return count


def _parse_pool_size(value: object, name: str) -> int:
    try:
        count = int(value) if not isinstance(value, (bool, float)) else 0  # type: ignore[call-overload]
    except (TypeError, ValueError):
        count = 0
    if count < 1:
        raise ConfigurationError(
            f"{name} must be a whole number of connections >= 1, got {value!r}"
        )
    return count


def _parse_rate(value: object, name: str) -> float | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in _NONE_WORDS):
        return None
    try:
        rate = float(value) if not isinstance(value, bool) else -1.0  # type: ignore[arg-type]
    except (TypeError, ValueError):
        rate = -1.0
    if not (rate > 0 and math.isfinite(rate)):
        raise ConfigurationError(
            f"{name} must be a number of messages per second > 0 (or none for no limit), "
            f"got {value!r}"
        )
    return rate


def import_token_provider(path: str, name: str) -> TokenProvider:
    """Return the callable that the dotted ``path`` names (``package.module.attribute``).

    Raises :class:`ConfigurationError` naming ``name`` (the setting or
    variable) when it cannot be imported or is not callable.
    """
    module_name, _, attribute = path.strip().rpartition(".")
    if not module_name or not attribute:
        raise ConfigurationError(
            f"{name} must be the dotted path of a callable (package.module.function), got {path!r}"
        )
    try:
        found = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"{name}: cannot import {path!r}: {exc}") from exc
    if not callable(found):
        raise ConfigurationError(
            f"{name}: {path!r} is a {type(found).__name__}, not a callable returning a token"
        )
    provider: TokenProvider = found
    return provider


def _parse_oauth2_token(value: object, name: str) -> OAuth2Token | None:
    # Error texts never show a token: only its type, or the path of a provider.
    if isinstance(value, TokenProviderPath):
        return import_token_provider(value.path, name)
    if value is None or callable(value):
        return value
    if not isinstance(value, str):
        raise ConfigurationError(
            f"{name} must be an access token (str) or a callable returning one, "
            f"got {type(value).__name__}"
        )
    if any(c in value for c in "\r\n\0\x01"):
        raise ConfigurationError(f"{name} must not contain CR, LF, NUL or ^A")
    return value or None


#: Parsers of text settings, whose empty environment variable counts as unset.
_TEXT_PARSERS: Final = (_parse_str, _parse_pem)
_DKIM: Final = ("dkim_selector", "dkim_domain", "dkim_private_key", "dkim_private_key_file")

_PARSERS: Final[dict[str, Callable[[Any, str], Any]]] = {
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
    "chunking": parse_bool,
    "max_retries": _parse_count,
    "retry_backoff": _parse_backoff,
    "dsn_notify": _parse_notify,
    "dsn_ret": _parse_ret,
    "dkim_selector": _parse_str,
    "dkim_domain": _parse_str,
    "dkim_private_key": _parse_pem,
    "dkim_private_key_file": _parse_str,
    "oauth2_token": _parse_oauth2_token,
    "max_messages_per_connection": _parse_limit,
    "rate_limit": _parse_rate,
    "return_path": _parse_str,
    "verp": parse_bool,
    "verp_secret": _parse_str,
    "pool": parse_bool,
    "pool_size": _parse_pool_size,
    "pool_idle_timeout": _parse_timeout,
}
#: The options an empty environment variable leaves unset (the others refuse it).
_EMPTY_IS_UNSET: Final = frozenset(
    {name for name, parser in _PARSERS.items() if parser in _TEXT_PARSERS} | {"oauth2_token"}
)

#: The option names :func:`resolve_smtp_settings` accepts (besides ``ssl_context``).
SETTING_NAMES: Final = frozenset(_PARSERS)


class _Blank(enum.Enum):
    """Marks an environment variable set to an empty value where a value is needed."""

    BLANK = "BLANK"


_BLANK: Final = _Blank.BLANK


@dataclass(frozen=True, slots=True)
class Layer:
    """One source of settings: values by option name, and what to call each in messages.

    ``labels`` maps an option name to the name its source gives it (the
    option ``port`` is ``settings.EMAIL_PORT`` in the Django layer,
    ``AMSDAL_EMAIL_PORT`` in the environment); an option without a label is
    called by its own name.
    """

    values: Mapping[str, Any]
    labels: Mapping[str, str] = field(default_factory=dict)

    def label(self, option: str) -> str:
        """Return the name of ``option`` in this source, for messages."""
        return self.labels.get(option, option)


def environment_layer(environ: Mapping[str, str] | None = None) -> Layer:
    """Return the ``AMSDAL_EMAIL_*`` variables of ``environ`` (default: the process's) as a layer.

    An empty string variable counts as unset; an empty boolean or numeric one
    is kept, to be reported as a :class:`ConfigurationError` if it is used.
    """
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for name in _PARSERS:
        raw = env.get(env_var(name))
        if raw is None:
            continue
        if raw.strip():
            values[name] = TokenProviderPath(raw) if name == "oauth2_token" else raw
        elif name not in _EMPTY_IS_UNSET:
            values[name] = _BLANK
    return Layer(values, {name: env_var(name) for name in values})


@dataclass(frozen=True, slots=True)
class SettingProblem:
    """One reason the settings cannot be used: the options concerned and the error."""

    options: tuple[str, ...]
    error: ConfigurationError


@dataclass(frozen=True, slots=True)
class Resolution:
    """What :func:`inspect_smtp_settings` found.

    ``settings`` is None when there are ``problems``. ``sources`` names, for
    each option taken from the options, a layer or the environment, where
    it came from (options left to their defaults are absent).
    """

    settings: SMTPSettings | None
    sources: dict[str, str]
    problems: list[SettingProblem]


def _parse(name: str, value: Any, label: str) -> Any:
    if value is _BLANK:
        raise ConfigurationError(f"{label} is set but empty; give it a value or unset it")
    return _PARSERS[name](value, label)


def _dkim_problems(values: Mapping[str, Any], sources: Mapping[str, str]) -> list[SettingProblem]:
    """Return the problem of an incomplete DKIM configuration (all of it or none is needed)."""
    given = [name for name in _DKIM if values.get(name)]
    if not given:
        return []
    names = ", ".join(sources.get(name, name) for name in given)
    if values.get("dkim_private_key") and values.get("dkim_private_key_file"):
        error = ConfigurationError(
            f"dkim_private_key and dkim_private_key_file are both set ({names}); set only one"
        )
        return [SettingProblem(("dkim_private_key", "dkim_private_key_file"), error)]
    missing = [name for name in ("dkim_selector", "dkim_domain") if not values.get(name)]
    if not (values.get("dkim_private_key") or values.get("dkim_private_key_file")):
        missing.append("dkim_private_key (or dkim_private_key_file)")
    if not missing:
        return []
    error = ConfigurationError(
        f"DKIM signing needs dkim_selector, dkim_domain and dkim_private_key (or "
        f"dkim_private_key_file): {names} set, {', '.join(missing)} missing (environment: "
        f"{ENV_PREFIX}DKIM_SELECTOR, {ENV_PREFIX}DKIM_DOMAIN, {ENV_PREFIX}DKIM_PRIVATE_KEY "
        f"or {ENV_PREFIX}DKIM_PRIVATE_KEY_FILE)"
    )
    return [SettingProblem(tuple(given), error)]


def _combine(
    values: dict[str, Any], sources: Mapping[str, str], keyfile_needs_certfile: bool
) -> list[SettingProblem]:
    """Fill in the derived defaults of ``values``; return the problems of the combination."""
    use_tls, use_ssl = values.get("use_tls", False), values.get("use_ssl", False)
    if use_tls and use_ssl:
        where = ""
        tls, ssl_ = sources.get("use_tls", "use_tls"), sources.get("use_ssl", "use_ssl")
        if (tls, ssl_) != ("use_tls", "use_ssl"):
            where = f" (use_tls from {tls}, use_ssl from {ssl_})"
        error = ConfigurationError(
            "use_tls (STARTTLS, usually port 587) and use_ssl (implicit TLS, usually port 465) "
            f"are mutually exclusive; set only one of them{where}"
        )
        return [SettingProblem(("use_tls", "use_ssl"), error)]
    values.setdefault("port", PORT_SSL if use_ssl else PORT_STARTTLS if use_tls else PORT_PLAIN)
    if values.get("host") is None:
        values["host"] = DEFAULT_HOST
    if keyfile_needs_certfile and values.get("ssl_keyfile") and not values.get("ssl_certfile"):
        error = ConfigurationError("ssl_keyfile is set but ssl_certfile is not; set both")
        return [SettingProblem(("ssl_keyfile", "ssl_certfile"), error)]
    dkim = _dkim_problems(values, sources)
    if dkim:
        return dkim
    if values.get("verp") and not values.get("verp_secret"):
        error = ConfigurationError(
            f"verp=True (from {sources.get('verp', 'verp')}) needs verp_secret to sign its "
            f"tokens ({ENV_PREFIX}VERP_SECRET; the Django app uses SECRET_KEY)"
        )
        return [SettingProblem(("verp", "verp_secret"), error)]
    return _oauth_problems(values, sources)


def _oauth_problems(values: Mapping[str, Any], sources: Mapping[str, str]) -> list[SettingProblem]:
    """Return the problems of ``oauth2_token`` with the other credentials."""
    if values.get("oauth2_token") is None:
        return []
    token = sources.get("oauth2_token", "oauth2_token")
    if values.get("password"):
        password = sources.get("password", "password")
        error = ConfigurationError(
            f"password (from {password}) and oauth2_token (from {token}) are mutually "
            "exclusive: OAuth2 logs in with the token alone; remove the password"
        )
        return [SettingProblem(("password", "oauth2_token"), error)]
    if not values.get("username"):
        error = ConfigurationError(
            f"oauth2_token (from {token}) needs username: the mailbox the token was issued "
            "for (set username, AMSDAL_EMAIL_USER)"
        )
        return [SettingProblem(("oauth2_token", "username"), error)]
    return []


def inspect_smtp_settings(
    options: Mapping[str, Any] | None = None,
    *,
    layers: Sequence[Layer] = (),
    environ: Mapping[str, str] | None = None,
    defaults: Mapping[str, Any] | None = None,
    keyfile_needs_certfile: bool = True,
) -> Resolution:
    """Resolve as :func:`resolve_smtp_settings` does, reporting every problem instead of raising.

    A value that does not parse is one problem per option; the combination
    (``use_tls`` with ``use_ssl``, a key file without its certificate) is
    checked only when every value parsed.
    """
    given = {k: v for k, v in (options or {}).items() if v is not UNSET}
    context = given.pop("ssl_context", None)
    unknown = sorted(set(given) - SETTING_NAMES)
    if unknown:
        error = ConfigurationError(
            f"unknown SMTP option(s) {unknown}; known options are "
            f"{sorted(SETTING_NAMES | {'ssl_context'})}"
        )
        return Resolution(None, {}, [SettingProblem(tuple(unknown), error)])
    if context is not None and not isinstance(context, ssl.SSLContext):
        error = ConfigurationError(
            f"ssl_context must be an ssl.SSLContext, got {type(context).__name__}"
        )
        return Resolution(None, {}, [SettingProblem(("ssl_context",), error)])

    stack: tuple[Layer, ...] = (Layer(given), *layers)
    if not SETTING_NAMES <= {name for layer in stack for name in layer.values}:
        stack += (environment_layer(environ),)
    chosen: dict[str, tuple[Any, str]] = {}
    sources: dict[str, str] = {}
    for name in _PARSERS:
        layer = next((layer for layer in stack if name in layer.values), None)
        if layer is not None:
            sources[name] = layer.label(name)
            chosen[name] = (layer.values[name], sources[name])
        elif defaults is not None and name in defaults:
            chosen[name] = (defaults[name], name)
    values: dict[str, Any] = {}
    problems: list[SettingProblem] = []
    for name, (value, label) in chosen.items():
        try:
            values[name] = _parse(name, value, label)
        except ConfigurationError as exc:
            problems.append(SettingProblem((name,), exc))
    if not problems:
        problems = _combine(values, sources, keyfile_needs_certfile)
    if problems:
        return Resolution(None, sources, problems)
    return Resolution(SMTPSettings(ssl_context=context, **values), sources, [])


def resolve_smtp_settings(
    options: Mapping[str, Any] | None = None,
    *,
    layers: Sequence[Layer] = (),
    environ: Mapping[str, str] | None = None,
    defaults: Mapping[str, Any] | None = None,
    keyfile_needs_certfile: bool = True,
) -> SMTPSettings:
    """Return validated SMTP settings from explicit options, further layers, env vars and defaults.

    Order, highest first: a value in ``options`` (an explicit argument; a
    value of :data:`UNSET` counts as absent), then each of ``layers`` in
    turn, then the ``AMSDAL_EMAIL_*`` variables of ``environ`` (default:
    ``os.environ``, read once), then ``defaults``, then amsdal_mail's own
    defaults. ``port`` defaults to 465 with ``use_ssl``, 587 with
    ``use_tls``, else 25. ``options`` may also hold ``ssl_context``.

    ``ssl_keyfile`` without ``ssl_certfile`` is refused: the key is of no use
    without its certificate, so for direct use it is a mistake worth
    reporting. ``keyfile_needs_certfile=False`` accepts it, as Django's SMTP
    backend does: it is kept in ``ssl_keyfile`` and no client certificate is
    presented.

    Raises:
        ConfigurationError: the first problem :func:`inspect_smtp_settings`
            finds: an unknown option, a value that does not parse (naming
            the argument, setting or environment variable it came from), an
            empty boolean or numeric environment variable, or ``use_tls``
            together with ``use_ssl``.
    """
    resolution = inspect_smtp_settings(
        options,
        layers=layers,
        environ=environ,
        defaults=defaults,
        keyfile_needs_certfile=keyfile_needs_certfile,
    )
    if resolution.problems:
        raise resolution.problems[0].error
    assert resolution.settings is not None
    return resolution.settings
