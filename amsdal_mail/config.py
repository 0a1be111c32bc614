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
  local hostname; ``AMSDAL_EMAIL_BACKEND`` too);
* a :class:`~amsdal_mail.ConfigurationError` naming the variable, for a
  boolean or a number (``USE_TLS``, ``USE_SSL``, ``ALLOW_INSECURE_AUTH``,
  ``PORT``, ``TIMEOUT``, ``MAX_RETRIES``, ``RETRY_BACKOFF``): an empty value
  there is more often a mistake than a choice, so it must be given a value
  or unset.

Booleans accept true/false, 1/0, yes/no, on/off, y/n, t/f in any case.
"""

from __future__ import annotations

import enum
import os
import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Final

from .exceptions import ConfigurationError

__all__ = [
    "ENV_PREFIX",
    "SETTING_NAMES",
    "UNSET",
    "Layer",
    "Resolution",
    "SMTPSettings",
    "SettingProblem",
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


def _parse_backoff(value: object, name: str) -> float:
    seconds = _parse_timeout(value, name)
    if seconds is None:
        raise ConfigurationError(f"{name} must be a positive number of seconds, got {value!r}")
    return seconds


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
    "max_retries": _parse_count,
    "retry_backoff": _parse_backoff,
}

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
            values[name] = raw
        elif _PARSERS[name] is not _parse_str:
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
