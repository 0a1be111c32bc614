"""Map Django settings and MAILERS ``OPTIONS`` to amsdal_mail arguments.

:func:`resolve_mailer` decides every value the Django backend hands to
amsdal_mail; :func:`inspect_mailer` runs the same steps without raising, for
the system checks. Order, highest first:

1. an explicit argument (``get_connection(host=...)``) or a MAILERS ``OPTIONS`` entry;
2. the Django ``EMAIL_*`` setting, if the project set it (``settings.is_overridden``)
   -- compatibility mode only: under MAILERS these deprecated settings are never read;
3. the ``AMSDAL_EMAIL_*`` environment variable;
4. the default: in compatibility mode Django's (``localhost``, port 25 whatever the
   TLS mode), under MAILERS amsdal_mail's (port 465 / 587 / 25 by TLS mode, and the
   ``smtp`` backend needs a host). The timeout defaults to 30 seconds in both.

The order itself is applied by :func:`amsdal_mail.config.inspect_smtp_settings`:
this module only turns the arguments and the ``EMAIL_*`` settings into its
layers (with Django's reading of None and empty values) and Django's defaults,
and its problems into Django's exceptions and check messages. The backend
class is found by :func:`amsdal_mail.api.find_backend`.

Compatibility mode is ``EMAIL_BACKEND`` (a backend built without ``alias``);
MAILERS mode is a backend built by ``django.core.mail.mailers`` with an ``alias``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from amsdal_mail import BaseBackend, ConfigurationError
from amsdal_mail.api import BACKENDS, find_backend
from amsdal_mail.backends.smtp import SMTPBackend
from amsdal_mail.config import (
    ENV_PREFIX,
    UNSET,
    Layer,
    SettingProblem,
    SMTPSettings,
    TokenProviderPath,
    inspect_smtp_settings,
)

__all__ = [
    "AMSDAL_OPTIONS",
    "BACKEND_OPTION",
    "OPTIONS",
    "SETTING_FOR_OPTION",
    "SMTP_OPTIONS",
    "MailerSettings",
    "Problem",
    "build_backend",
    "email_setting",
    "is_overridden",
    "inspect_mailer",
    "invalid_mailer",
    "resolve_mailer",
]

#: The option naming the amsdal_mail backend (``smtp``, ``console``, ``locmem``, ...).
BACKEND_OPTION: Final = "backend"
#: Each SMTP option of Django's own SMTP backend and the Django setting that
#: supplies it in compatibility mode.
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
#: The SMTP options of Django's own SMTP backend, which this backend accepts too.
SMTP_OPTIONS: Final = tuple(SETTING_FOR_OPTION)
#: amsdal_mail's own SMTP options, with the ``EMAIL_*`` setting that supplies each in
#: compatibility mode (None: only arguments, MAILERS ``OPTIONS`` and the environment).
#: ``EMAIL_OAUTH2_TOKEN_PROVIDER`` is a callable or its dotted path (the
#: ``oauth2_token`` option is a token or a callable).
AMSDAL_OPTIONS: Final[dict[str, str | None]] = {
    "oauth2_token": "EMAIL_OAUTH2_TOKEN_PROVIDER",
    "max_messages_per_connection": None,
    "rate_limit": None,
    "dsn_notify": "EMAIL_DSN_NOTIFY",
    "dsn_ret": "EMAIL_DSN_RET",
    "dkim_selector": "EMAIL_DKIM_SELECTOR",
    "dkim_domain": "EMAIL_DKIM_DOMAIN",
    "dkim_private_key": "EMAIL_DKIM_PRIVATE_KEY",
    "dkim_private_key_file": "EMAIL_DKIM_PRIVATE_KEY_FILE",
    "return_path": "EMAIL_RETURN_PATH",
    "verp": "EMAIL_VERP",
    # Signs the VERP tokens; Django's SECRET_KEY when nothing else gives one.
    "verp_secret": None,
    "chunking": None,
    "pool": "EMAIL_POOL",
    "pool_size": None,
    "pool_idle_timeout": None,
}
#: Every SMTP option the backend takes.
OPTIONS: Final = (*SMTP_OPTIONS, *AMSDAL_OPTIONS)
#: Django's defaults in compatibility mode: EMAIL_PORT is 25 whatever the TLS mode.
_DJANGO_DEFAULTS: Final = {"port": 25}

# Check ids, shared by the system checks and the exceptions' hints.
E_TLS_AND_SSL: Final = "amsdal_mail.E001"
E_UNKNOWN_BACKEND: Final = "amsdal_mail.E002"
E_BAD_BOOLEAN: Final = "amsdal_mail.E003"
E_BAD_PORT: Final = "amsdal_mail.E004"
E_BAD_VALUE: Final = "amsdal_mail.E005"
E_NO_HOST: Final = "amsdal_mail.E006"
E_UNKNOWN_OPTION: Final = "amsdal_mail.E007"
E_REFUSED: Final = "amsdal_mail.E008"
W_KEYFILE_IGNORED: Final = "amsdal_mail.W002"
W_BASIC_AUTH: Final = "amsdal_mail.W003"
#: Providers that are retiring password logins for SMTP (OAuth2 instead).
OAUTH_PROVIDERS: Final = {
    "smtp.office365.com": "amsdal_mail.oauth.microsoft(tenant_id, client_id, client_secret)",
    "smtp.gmail.com": "amsdal_mail.oauth.google(...)",
}

_BOOLEAN_HINT: Final = (
    "Use True or False; an environment variable may also say true/false, 1/0, yes/no or on/off."
)
_VALUE_HINTS: Final = {
    "use_tls": _BOOLEAN_HINT,
    "use_ssl": _BOOLEAN_HINT,
    "allow_insecure_auth": _BOOLEAN_HINT,
    "chunking": _BOOLEAN_HINT,
    "port": "Use a whole number from 1 to 65535, such as 25, 465 (use_ssl) or 587 (use_tls).",
    "timeout": "Use a positive number of seconds, or None for no timeout.",
    "max_retries": "Use a whole number >= 0.",
    "retry_backoff": "Use a positive number of seconds.",
    "oauth2_token": "Use an access token (str), a callable returning one, or its dotted path.",
    "max_messages_per_connection": "Use a whole number >= 1, or None for no limit.",
    "rate_limit": "Use a number of messages per second > 0, or None for no limit.",
}
_STRING_HINT: Final = "Use a string without line breaks, or None."
_ERROR_ID_FOR_OPTION: Final = {
    "use_tls": E_BAD_BOOLEAN,
    "use_ssl": E_BAD_BOOLEAN,
    "allow_insecure_auth": E_BAD_BOOLEAN,
    "chunking": E_BAD_BOOLEAN,
    "port": E_BAD_PORT,
}


@dataclass(frozen=True, slots=True)
class Problem:
    """One configuration problem: a check id, Django's wording, and a hint."""

    id: str
    message: str
    hint: str | None = None

    @property
    def is_error(self) -> bool:
        """Return True for an error (``...E001``), False for a warning (``...W002``)."""
        return ".E" in self.id


@dataclass(frozen=True, slots=True)
class MailerSettings:
    """Everything a Django backend instance needs to build its amsdal_mail backend.

    ``smtp`` holds the settings as configured (the credentials live there
    only); it is None for backends other than SMTP.
    """

    alias: str | None
    backend_class: type[BaseBackend]
    smtp: SMTPSettings | None = None

    def backend_options(self) -> dict[str, Any]:
        """Return the keyword arguments for the amsdal_mail backend's constructor.

        Every SMTP setting is given, so the backend reads no environment
        variable again. As Django's SMTP backend: the credentials only when
        both a username and a password are set (it logs in only then), and
        a key file only with its certificate.
        """
        if self.smtp is None:
            return {}
        options = self.smtp.as_options()
        if not (self.smtp.username and (self.smtp.password or self.smtp.oauth2_token)):
            options["username"] = options["password"] = options["oauth2_token"] = None
        if not self.smtp.ssl_certfile:
            options["ssl_keyfile"] = None
        return options

    def new_backend(self) -> BaseBackend:
        """Return a new amsdal_mail backend (its own fail_silently off: Django's rules apply).

        Raises:
            ConfigurationError: amsdal_mail refuses the settings.
        """
        return self.backend_class(fail_silently=False, **self.backend_options())


#: ``django.conf.settings`` as what it is at run time: django-stubs types the lazy
#: object without ``is_overridden()`` and ``_wrapped``, which it passes on.
_lazy_settings: Any = settings


def is_overridden(name: str) -> bool:
    """Return True if the project set the Django setting ``name``."""
    return bool(_lazy_settings.is_overridden(name))


def email_setting(name: str) -> Any:
    """Return the value of a Django ``EMAIL_*`` setting.

    The value is read from the settings object itself: Django 6.1's
    ``LazySettings`` warns about the deprecated ``EMAIL_*`` settings on every
    read from outside Django, and the project was already warned when it set
    them.
    """
    is_overridden(name)  # sets the settings up, if not done yet
    return getattr(_lazy_settings._wrapped, name)


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


def _layers(explicit: Mapping[str, Any], alias: str | None) -> list[Layer]:
    """Return the Django sources above the environment, highest first."""
    given = {
        name: explicit[name]
        for name in OPTIONS
        if _explicit(name, explicit.get(name, UNSET), alias is not None)
    }
    if alias is not None:
        return [Layer(given, {name: f"MAILERS[{alias!r}] OPTIONS[{name!r}]" for name in given})]
    project: dict[str, Any] = {}
    for option, setting in SETTING_FOR_OPTION.items():
        if is_overridden(setting):
            value = email_setting(setting)
            # None set by the project means "not set", except EMAIL_TIMEOUT = None
            # (no timeout), as Django's SMTP backend reads them.
            if value is not None or option == "timeout":
                project[option] = value
    labels = {name: f"settings.{setting}" for name, setting in SETTING_FOR_OPTION.items()}
    for option, extra in AMSDAL_OPTIONS.items():
        if extra is not None and is_overridden(extra):
            value = email_setting(extra)
            if value is not None and value != "":
                is_path = option == "oauth2_token" and isinstance(value, str)
                project[option] = TokenProviderPath(value) if is_path else value
                labels[option] = f"settings.{extra}"
    return [
        Layer(given, {name: f"the {name!r} argument" for name in given}),
        Layer(project, {name: labels[name] for name in project}),
    ]


def _backend_name(
    explicit: Mapping[str, Any], alias: str | None, environ: Mapping[str, str]
) -> tuple[str, str]:
    """Return the amsdal_mail backend name and where it came from."""
    value = explicit.get(BACKEND_OPTION, UNSET)
    if value is not UNSET and value is not None and value != "":
        label = "the 'backend' argument"
        if alias is not None:
            label = f"MAILERS[{alias!r}] OPTIONS['backend']"
        return str(value).strip(), label
    env_value = environ.get(ENV_PREFIX + "BACKEND", "").strip()
    if env_value:
        return env_value, ENV_PREFIX + "BACKEND"
    return "smtp", "the default"


def _unknown_backend(reason: str) -> Problem:
    known = ", ".join(sorted(BACKENDS))
    hint = (
        f"Use one of the amsdal_mail backend names ({known}) or the dotted path "
        "of an amsdal_mail.BaseBackend subclass."
    )
    return Problem(E_UNKNOWN_BACKEND, f"{reason}.", hint)


def _tls_conflict(alias: str | None, sources: Mapping[str, str]) -> Problem:
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
        f"use_tls is true from {sources['use_tls']} and use_ssl is true from "
        f"{sources['use_ssl']}. use_tls is STARTTLS (usually port 587), use_ssl implicit TLS "
        "(usually port 465)."
    )
    return Problem(E_TLS_AND_SSL, message, hint)


def _refused(exc: ConfigurationError) -> Problem:
    return Problem(
        E_REFUSED,
        f"amsdal_mail refused the settings: {exc}",
        "Change the setting, option or environment variable the message names.",
    )


def _problem(problem: SettingProblem, sources: Mapping[str, str], alias: str | None) -> Problem:
    """Return the check message for one problem amsdal_mail found in the settings."""
    if problem.options == ("use_tls", "use_ssl"):
        return _tls_conflict(alias, sources)
    (option, *others) = problem.options
    if others:
        return _refused(problem.error)
    hint = _VALUE_HINTS.get(option, _STRING_HINT)
    return Problem(_ERROR_ID_FOR_OPTION.get(option, E_BAD_VALUE), str(problem.error), hint)


def _no_host(alias: str) -> Problem:
    return Problem(
        E_NO_HOST,
        f"MAILERS[{alias!r}]: OPTIONS must define 'host'.",
        f"Set OPTIONS['host'], or the {ENV_PREFIX}HOST environment variable.",
    )


def _keyfile_ignored(alias: str | None, sources: Mapping[str, str]) -> Problem:
    if alias is None:
        certfile = f"EMAIL_SSL_CERTFILE (or {ENV_PREFIX}SSL_CERTFILE)"
    else:
        certfile = f"MAILERS[{alias!r}] OPTIONS['ssl_certfile']"
    return Problem(
        W_KEYFILE_IGNORED,
        f"The key file from {sources['ssl_keyfile']} is ignored without {certfile}.",
        f"Set {certfile} to the client certificate that goes with the key, or remove the key file.",
    )


def _basic_auth(alias: str | None, smtp: SMTPSettings) -> Problem | None:
    """Return a warning for a password login to a provider that is retiring it, else None."""
    provider = OAUTH_PROVIDERS.get(smtp.host.lower().rstrip("."))
    if provider is None or not (smtp.username and smtp.password):
        return None
    where = "" if alias is None else f"MAILERS[{alias!r}]: "
    setting = "EMAIL_OAUTH2_TOKEN_PROVIDER" if alias is None else "OPTIONS['oauth2_token']"
    return Problem(
        W_BASIC_AUTH,
        f"{where}{smtp.host} is configured with a password; the provider is retiring password "
        "(basic) authentication for SMTP in favour of OAuth2.",
        f"Remove the password and set {setting} to {provider} (pip install "
        f"'amsdal-mail[{'microsoft' if 'office365' in smtp.host else 'google'}]'); "
        "see the README's recipes.",
    )


def _collect(
    explicit: Mapping[str, Any], alias: str | None
) -> tuple[MailerSettings | None, list[Problem]]:
    """Run every resolution step; return the result (None on an error) and the problems."""
    environ = os.environ
    name, label = _backend_name(explicit, alias, environ)
    found = find_backend(name, label)
    if isinstance(found, str):
        return None, [_unknown_backend(found)]
    if not issubclass(found, SMTPBackend):
        return MailerSettings(alias, found), []
    defaults: dict[str, Any] = dict(_DJANGO_DEFAULTS) if alias is None else {}
    secret = django_secret_key()
    if secret:
        defaults["verp_secret"] = secret  # VERP tokens signed with it by default
    resolution = inspect_smtp_settings(
        layers=_layers(explicit, alias),
        environ=environ,
        defaults=defaults or None,
        keyfile_needs_certfile=False,  # Django accepts it and ignores it (W002)
    )
    sources = resolution.sources
    problems = [_problem(problem, sources, alias) for problem in resolution.problems]
    if not problems and alias is not None and "host" not in sources:
        problems = [_no_host(alias)]
    if problems or resolution.settings is None:
        return None, problems
    smtp = resolution.settings
    if smtp.ssl_keyfile and not smtp.ssl_certfile:
        problems.append(_keyfile_ignored(alias, sources))
    basic = _basic_auth(alias, smtp)
    if basic is not None:
        problems.append(basic)
    return MailerSettings(alias, found, smtp), problems


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
            resolved.new_backend()
        except ConfigurationError as exc:
            problems.append(_refused(exc))
    return resolved, problems


def build_backend(mailer: MailerSettings) -> BaseBackend:
    """Return a new amsdal_mail backend for ``mailer``.

    amsdal_mail's own configuration errors (such as sending a password over an
    unencrypted connection) become the exception Django raises for the mode.
    """
    try:
        return mailer.new_backend()
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
    Warnings (a key file without its certificate) are left to the checks.

    Raises:
        ValueError: ``use_tls`` and ``use_ssl`` both true (compatibility mode;
            Django's wording).
        django.core.mail.InvalidMailer: any problem under MAILERS (Django's
            wording where Django has one).
        django.core.exceptions.ImproperlyConfigured: any other problem in
            compatibility mode.
    """
    resolved, problems = _collect(explicit, alias)
    errors = [problem for problem in problems if problem.is_error]
    if errors or resolved is None:
        raise _as_exception(errors[0], alias)
    return resolved


def django_secret_key() -> str:
    """Return ``settings.SECRET_KEY``, or "" where none is set (Django raises for an empty one)."""
    from django.core.exceptions import ImproperlyConfigured

    try:
        return str(getattr(settings, "SECRET_KEY", "") or "")
    except ImproperlyConfigured:
        return ""
