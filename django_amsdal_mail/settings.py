"""Map Django settings and MAILERS ``OPTIONS`` to amsdal_mail arguments.

One function, :func:`resolve_mailer`, decides every value the Django backend
hands to amsdal_mail; :func:`inspect_mailer` runs the same steps without
raising, for the system checks. Order, highest first:

1. an explicit argument (``get_connection(host=...)``) or a MAILERS ``OPTIONS`` entry;
2. the Django ``EMAIL_*`` setting, if the project set it (``settings.is_overridden``)
   -- compatibility mode only: under MAILERS these deprecated settings are never read;
3. the ``AMSDAL_EMAIL_*`` environment variable;
4. the default: in compatibility mode Django's (``localhost``, port 25 whatever the
   TLS mode), under MAILERS amsdal_mail's (port 465 / 587 / 25 by TLS mode, and the
   ``smtp`` backend needs a host). The timeout defaults to 30 seconds in both.

Compatibility mode is ``EMAIL_BACKEND`` (a backend built without ``alias``);
MAILERS mode is a backend built by ``django.core.mail.mailers`` with an ``alias``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from amsdal_mail import BaseBackend, ConfigurationError
from amsdal_mail.api import BACKENDS
from amsdal_mail.backends.smtp import SMTPBackend
from amsdal_mail.config import (
    ENV_PREFIX,
    UNSET,
    SMTPSettings,
    env_var,
    parse_bool,
    resolve_smtp_settings,
)

__all__ = [
    "BACKEND_OPTION",
    "SETTING_FOR_OPTION",
    "SMTP_OPTIONS",
    "MailerSettings",
    "Problem",
    "build_backend",
    "email_setting",
    "inspect_mailer",
    "invalid_mailer",
    "resolve_mailer",
]

#: The SMTP options of Django's own SMTP backend, which this backend accepts too.
SMTP_OPTIONS: Final = (
    "host",
    "port",
    "username",
    "password",
    "use_tls",
    "use_ssl",
    "timeout",
    "ssl_certfile",
    "ssl_keyfile",
)
#: The option naming the amsdal_mail backend (``smtp``, ``console``, ``locmem``, ...).
BACKEND_OPTION: Final = "backend"
#: Each SMTP option and the Django setting that supplies it in compatibility mode.
SETTING_FOR_OPTION: Final = {
    "host": "EMAIL_HOST",
    "port": "EMAIL_PORT",
    "username": "EMAIL_HOST_USER",
    "password": "EMAIL_HOST_PASSWORD",
    "use_tls": "EMAIL_USE_TLS",
    "use_ssl": "EMAIL_USE_SSL",
    "timeout": "EMAIL_TIMEOUT",
    "ssl_certfile": "EMAIL_SSL_CERTFILE",
    "ssl_keyfile": "EMAIL_SSL_KEYFILE",
}
_BOOLEANS: Final = frozenset({"use_tls", "use_ssl"})
#: Django's EMAIL_PORT default, applied in compatibility mode whatever the TLS mode.
_DJANGO_DEFAULT_PORT: Final = 25

# Check ids, shared by the system checks and the exceptions' hints.
E_TLS_AND_SSL: Final = "amsdal_mail.E001"
E_UNKNOWN_BACKEND: Final = "amsdal_mail.E002"
E_BAD_BOOLEAN: Final = "amsdal_mail.E003"
E_BAD_PORT: Final = "amsdal_mail.E004"
E_BAD_VALUE: Final = "amsdal_mail.E005"
E_NO_HOST: Final = "amsdal_mail.E006"
E_UNKNOWN_OPTION: Final = "amsdal_mail.E007"
E_REFUSED: Final = "amsdal_mail.E008"

_BOOLEAN_HINT: Final = (
    "Use True or False; an environment variable may also say true/false, 1/0, yes/no or on/off."
)
_VALUE_HINTS: Final = {
    "use_tls": _BOOLEAN_HINT,
    "use_ssl": _BOOLEAN_HINT,
    "port": "Use a whole number from 1 to 65535, such as 25, 465 (use_ssl) or 587 (use_tls).",
    "timeout": "Use a positive number of seconds, or None for no timeout.",
}

_ERROR_ID_FOR_OPTION: Final = {
    "use_tls": E_BAD_BOOLEAN,
    "use_ssl": E_BAD_BOOLEAN,
    "port": E_BAD_PORT,
}


@dataclass(frozen=True, slots=True)
class Problem:
    """One configuration problem: a check id, Django's wording, and a hint."""

    id: str
    message: str
    hint: str | None = None


@dataclass(frozen=True, slots=True)
class MailerSettings:
    """Everything a Django backend instance needs to build its amsdal_mail backend.

    ``smtp`` is None for backends other than SMTP. ``backend_options`` are
    the keyword arguments for the amsdal_mail backend's constructor (the
    password among them, so it is left out of the repr).
    """

    alias: str | None
    backend: str
    backend_class: type[BaseBackend]
    smtp: SMTPSettings | None = None
    backend_options: dict[str, Any] = field(default_factory=dict, repr=False)
    #: The username and password as configured. amsdal_mail gets them only
    #: when both are set: Django logs in only then.
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def mailers_mode(self) -> bool:
        """Return True when built from MAILERS (an ``alias`` was given)."""
        return self.alias is not None


@dataclass(frozen=True, slots=True)
class _Choice:
    """Where one option's value comes from: a value and a label for messages."""

    value: Any
    label: str
    from_env: bool = False


def email_setting(name: str) -> Any:
    """Return the value of a Django ``EMAIL_*`` setting.

    The value is read from the settings object itself: Django 6.1's
    ``LazySettings`` warns about the deprecated ``EMAIL_*`` settings on every
    read from outside Django, and the project was already warned when it set
    them.
    """
    settings.is_overridden(name)  # sets the settings up, if not done yet
    return getattr(settings._wrapped, name)


def _project_setting(name: str) -> tuple[bool, Any]:
    """Return ``(set by the project, value)`` for a Django ``EMAIL_*`` setting."""
    if not settings.is_overridden(name):
        return False, None
    return True, email_setting(name)


def _explicit(name: str, value: Any, mailers_mode: bool) -> bool:
    """Return True when an argument counts as given, with Django's own semantics.

    Compatibility mode follows Django's SMTP backend: an empty host or port,
    or any other option given as None, falls back to the settings. Under
    MAILERS, None means "not given" except for ``timeout``, where it means no
    timeout.
    """
    if value is UNSET:
        return False
    if value is None:
        return mailers_mode and name == "timeout"
    if name in ("host", "port") and not mailers_mode:
        return bool(value)
    return True


def _choose(
    name: str,
    explicit: Mapping[str, Any],
    alias: str | None,
    environ: Mapping[str, str],
) -> _Choice | None:
    """Return the value for ``name`` by precedence, or None to use the default."""
    mailers_mode = alias is not None
    value = explicit.get(name, UNSET)
    if _explicit(name, value, mailers_mode):
        if mailers_mode:
            return _Choice(value, f"MAILERS[{alias!r}] OPTIONS[{name!r}]")
        return _Choice(value, f"the {name!r} argument")
    if not mailers_mode:
        setting = SETTING_FOR_OPTION[name]
        is_set, setting_value = _project_setting(setting)
        # None set by the project means "not set", except EMAIL_TIMEOUT = None
        # (no timeout), as Django's SMTP backend reads them.
        if is_set and (setting_value is not None or name == "timeout"):
            return _Choice(setting_value, f"settings.{setting}")
    var = env_var(name)
    raw = environ.get(var)
    if raw is not None and (raw.strip() or name in _BOOLEANS):
        return _Choice(raw, var, from_env=True)
    return None


def _check_value(name: str, choice: _Choice) -> Problem | None:
    """Return the problem with one chosen value, or None if amsdal_mail accepts it."""
    try:
        if name in _BOOLEANS:
            parse_bool(choice.value, choice.label)
        else:
            # ssl_keyfile is checked as the string it is; alone it would also
            # trip the "keyfile without certfile" rule, checked later.
            probe = "ssl_certfile" if name == "ssl_keyfile" else name
            resolve_smtp_settings({probe: choice.value}, environ={})
    except ConfigurationError as exc:
        text = str(exc)
        if not text.startswith(choice.label):
            text = f"{choice.label}: {text}"
        hint = _VALUE_HINTS.get(name, "Use a string without line breaks, or None.")
        return Problem(_ERROR_ID_FOR_OPTION.get(name, E_BAD_VALUE), text, hint)
    return None


def _backend_name(
    explicit: Mapping[str, Any], alias: str | None, environ: Mapping[str, str]
) -> tuple[str, str]:
    value = explicit.get(BACKEND_OPTION, UNSET)
    if value is not UNSET and value is not None and value != "":
        label = f"MAILERS[{alias!r}] OPTIONS['backend']" if alias is not None else "backend"
        return str(value).strip(), label
    env_value = environ.get(ENV_PREFIX + "BACKEND", "").strip()
    if env_value:
        return env_value, ENV_PREFIX + "BACKEND"
    return "smtp", "the default"


def _load_backend(name: str, label: str) -> type[BaseBackend] | Problem:
    """Return the amsdal_mail backend class for a short name or dotted path."""
    known = ", ".join(sorted(BACKENDS))
    hint = (
        f"Use one of the amsdal_mail backend names ({known}) or the dotted path "
        "of an amsdal_mail.BaseBackend subclass."
    )
    path = BACKENDS.get(name, name)
    if "." not in path:
        return Problem(
            E_UNKNOWN_BACKEND, f"Unknown amsdal_mail backend {name!r} (from {label}).", hint
        )
    try:
        backend_class = import_string(path)
    except ImportError as exc:
        return Problem(
            E_UNKNOWN_BACKEND,
            f"Cannot load amsdal_mail backend {name!r} (from {label}): {exc}",
            hint,
        )
    if not (isinstance(backend_class, type) and issubclass(backend_class, BaseBackend)):
        return Problem(
            E_UNKNOWN_BACKEND,
            f"amsdal_mail backend {name!r} (from {label}) is not an amsdal_mail.BaseBackend "
            "subclass.",
            hint,
        )
    return backend_class


def _tls_conflict(alias: str | None, tls: _Choice, ssl: _Choice) -> Problem:
    if alias is None:
        message = (
            "EMAIL_USE_TLS/EMAIL_USE_SSL are mutually exclusive, so only set one of those "
            "settings to True."
        )
    else:
        message = (
            f"MAILERS[{alias!r}]: The 'use_ssl' and 'use_tls' OPTIONS are incompatible. "
            "Set at most one of them to True."
        )
    hint = (
        f"use_tls is true from {tls.label} and use_ssl is true from {ssl.label}. "
        "use_tls is STARTTLS (usually port 587), use_ssl implicit TLS (usually port 465)."
    )
    return Problem(E_TLS_AND_SSL, message, hint)


def _no_host(alias: str) -> Problem:
    return Problem(
        E_NO_HOST,
        f"MAILERS[{alias!r}]: OPTIONS must define 'host'.",
        f"Set OPTIONS['host'], or the {ENV_PREFIX}HOST environment variable.",
    )


def _login_value(choice: _Choice | None) -> str | None:
    if choice is None or choice.value is None:
        return None
    return str(choice.value) or None


def _refused(exc: ConfigurationError) -> Problem:
    return Problem(
        E_REFUSED,
        f"amsdal_mail refused the settings: {exc}",
        "Change the setting, option or environment variable the message names.",
    )


def _collect(
    explicit: Mapping[str, Any], alias: str | None
) -> tuple[MailerSettings | None, list[Problem]]:
    """Run every resolution step; return the result (if no problem) and the problems."""
    env = os.environ
    name, label = _backend_name(explicit, alias, env)
    loaded = _load_backend(name, label)
    if isinstance(loaded, Problem):
        return None, [loaded]
    if not issubclass(loaded, SMTPBackend):
        return MailerSettings(alias=alias, backend=name, backend_class=loaded), []

    choices = {option: _choose(option, explicit, alias, env) for option in SMTP_OPTIONS}
    problems = [
        problem
        for option, choice in choices.items()
        if choice is not None and (problem := _check_value(option, choice)) is not None
    ]
    if problems:
        return None, problems
    tls, ssl = choices["use_tls"], choices["use_ssl"]
    if (
        tls is not None
        and ssl is not None
        and parse_bool(tls.value, tls.label)
        and parse_bool(ssl.value, ssl.label)
    ):
        return None, [_tls_conflict(alias, tls, ssl)]
    if alias is not None and choices["host"] is None:
        return None, [_no_host(alias)]

    options: dict[str, Any] = {
        option: choice.value
        for option, choice in choices.items()
        if choice is not None and not choice.from_env
    }
    if alias is None and choices["port"] is None:
        options["port"] = _DJANGO_DEFAULT_PORT
    username, password = _login_value(choices["username"]), _login_value(choices["password"])
    if not (username and password):
        # Django logs in only when both a username and a password are set.
        options["username"] = options["password"] = None
    try:
        smtp = resolve_smtp_settings(options)
    except ConfigurationError as exc:
        return None, [_refused(exc)]
    return (
        MailerSettings(
            alias=alias,
            backend=name,
            backend_class=loaded,
            smtp=smtp,
            backend_options=options,
            username=username,
            password=password,
        ),
        [],
    )


def inspect_mailer(
    explicit: Mapping[str, Any], *, alias: str | None = None
) -> tuple[MailerSettings | None, list[Problem]]:
    """Return one mailer's configuration and every problem with it, without raising.

    The configuration is None when the settings cannot be resolved. Besides
    resolving them, this builds the amsdal_mail backend (no I/O), so
    amsdal_mail's own checks run too.
    """
    resolved, problems = _collect(explicit, alias)
    if resolved is not None:
        try:
            resolved.backend_class(**resolved.backend_options)
        except ConfigurationError as exc:
            problems.append(_refused(exc))
    return resolved, problems


def build_backend(mailer: MailerSettings, *, fail_silently: bool) -> BaseBackend:
    """Return a new amsdal_mail backend for ``mailer``.

    amsdal_mail's own configuration errors (such as sending a password over an
    unencrypted connection) become the exception Django raises for the mode.
    """
    try:
        return mailer.backend_class(fail_silently=fail_silently, **mailer.backend_options)
    except ConfigurationError as exc:
        raise _as_exception(_refused(exc), mailer.alias) from exc


def invalid_mailer(message: str, alias: str) -> ImproperlyConfigured:
    """Return Django's ``InvalidMailer`` for ``message`` (prefixed with the alias).

    Django before 6.1 has no MAILERS; there the same text is an
    ``ImproperlyConfigured``.
    """
    try:
        from django.core.mail import InvalidMailer  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        return ImproperlyConfigured(f"MAILERS[{alias!r}]: {message}")
    error: ImproperlyConfigured = InvalidMailer(message, alias=alias)
    return error


def _as_exception(problem: Problem, alias: str | None) -> Exception:
    """Return the exception Django raises for ``problem``, with the hint appended."""
    message = problem.message
    prefix = f"MAILERS[{alias!r}]: "
    if alias is not None and message.startswith(prefix):
        message = message[len(prefix) :]
    text = f"{message} {problem.hint}" if problem.hint else message
    if problem.id == E_TLS_AND_SSL and alias is None:
        return ValueError(text)
    if alias is not None:
        return invalid_mailer(text, alias)
    return ImproperlyConfigured(text)


def resolve_mailer(explicit: Mapping[str, Any], *, alias: str | None = None) -> MailerSettings:
    """Return the resolved configuration of one Django backend instance.

    ``explicit`` holds the arguments or MAILERS ``OPTIONS`` (the SMTP option
    names and ``backend``; a value of :data:`amsdal_mail.config.UNSET` counts
    as absent). ``alias`` is the MAILERS alias, or None in compatibility mode.

    Raises:
        ValueError: ``use_tls`` and ``use_ssl`` both true (compatibility mode;
            Django's wording).
        django.core.mail.InvalidMailer: any problem under MAILERS (Django's
            wording where Django has one).
        django.core.exceptions.ImproperlyConfigured: any other problem in
            compatibility mode.
    """
    resolved, problems = _collect(explicit, alias)
    if problems:
        raise _as_exception(problems[0], alias)
    assert resolved is not None
    return resolved
