"""SMTP configuration: defaults < AMSDAL_EMAIL_* environment < explicit arguments."""

from __future__ import annotations

import os
import ssl
from typing import Any

import pytest

from amsdal_mail import ConfigurationError, MailError, get_connection
from amsdal_mail.backends.smtp import SMTPBackend
from amsdal_mail.config import (
    Layer,
    SMTPSettings,
    inspect_smtp_settings,
    parse_bool,
    resolve_smtp_settings,
)

PASSWORD = "hunter2-Secret!"

# argument, environment variable, value in the environment, value as an argument,
# expected value from the environment, expected value from the argument
ROWS: list[tuple[str, str, str, Any, Any, Any]] = [
    ("host", "AMSDAL_EMAIL_HOST", "env.example", "arg.example", "env.example", "arg.example"),
    ("port", "AMSDAL_EMAIL_PORT", "2525", 1025, 2525, 1025),
    ("username", "AMSDAL_EMAIL_USER", "env-user", "arg-user", "env-user", "arg-user"),
    ("password", "AMSDAL_EMAIL_PASSWORD", "env-pw", "arg-pw", "env-pw", "arg-pw"),
    ("use_tls", "AMSDAL_EMAIL_USE_TLS", "true", True, True, True),
    ("use_ssl", "AMSDAL_EMAIL_USE_SSL", "1", True, True, True),
    ("timeout", "AMSDAL_EMAIL_TIMEOUT", "12.5", 7, 12.5, 7.0),
    (
        "ssl_certfile",
        "AMSDAL_EMAIL_SSL_CERTFILE",
        "/env/cert.pem",
        "/arg/c.pem",
        "/env/cert.pem",
        "/arg/c.pem",
    ),
    (
        "ssl_keyfile",
        "AMSDAL_EMAIL_SSL_KEYFILE",
        "/env/key.pem",
        "/arg/k.pem",
        "/env/key.pem",
        "/arg/k.pem",
    ),
]
ROW_IDS = [row[0] for row in ROWS]
# ssl_keyfile is only accepted together with ssl_certfile.
COMPANIONS = {"ssl_keyfile": {"ssl_certfile": "/any/cert.pem"}}

TRUE_WORDS = ["true", "True", "TRUE", "1", "yes", "YES", "on", "On"]
FALSE_WORDS = ["false", "False", "FALSE", "0", "no", "No", "off", "OFF"]


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start every test with no AMSDAL_EMAIL_* variable set."""
    for name in list(os.environ):
        if name.startswith("AMSDAL_EMAIL_"):
            monkeypatch.delenv(name)


def test_defaults() -> None:
    """With no arguments and no environment, every setting has its documented default."""
    settings = resolve_smtp_settings()

    assert settings == SMTPSettings(
        host="localhost",
        port=25,
        username=None,
        password=None,
        use_tls=False,
        use_ssl=False,
        timeout=30.0,
        ssl_certfile=None,
        ssl_keyfile=None,
    )


@pytest.mark.parametrize(("name", "var", "raw", "arg", "from_env", "from_arg"), ROWS, ids=ROW_IDS)
def test_each_setting_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    var: str,
    raw: str,
    arg: Any,
    from_env: Any,
    from_arg: Any,
) -> None:
    """Each AMSDAL_EMAIL_* variable sets its setting when no argument is given."""
    monkeypatch.setenv(var, raw)

    settings = resolve_smtp_settings(COMPANIONS.get(name))

    assert getattr(settings, name) == from_env


@pytest.mark.parametrize(("name", "var", "raw", "arg", "from_env", "from_arg"), ROWS, ids=ROW_IDS)
def test_each_setting_from_an_argument(
    name: str, var: str, raw: str, arg: Any, from_env: Any, from_arg: Any
) -> None:
    """Each setting can be given as an argument."""
    settings = resolve_smtp_settings({name: arg, **COMPANIONS.get(name, {})})

    assert getattr(settings, name) == from_arg


@pytest.mark.parametrize(("name", "var", "raw", "arg", "from_env", "from_arg"), ROWS, ids=ROW_IDS)
def test_arguments_win_over_the_environment(
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    var: str,
    raw: str,
    arg: Any,
    from_env: Any,
    from_arg: Any,
) -> None:
    """An explicit argument wins over its environment variable."""
    monkeypatch.setenv(var, raw)
    if name in ("use_tls", "use_ssl"):
        arg, from_arg = False, False  # overriding a true env var with False

    settings = resolve_smtp_settings({name: arg, **COMPANIONS.get(name, {})})

    assert getattr(settings, name) == from_arg


def test_get_connection_resolves_the_same_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """get_connection('smtp', ...) applies arguments over the environment over defaults."""
    monkeypatch.setenv("AMSDAL_EMAIL_HOST", "env.example")
    monkeypatch.setenv("AMSDAL_EMAIL_USER", "env-user")
    monkeypatch.setenv("AMSDAL_EMAIL_USE_SSL", "on")
    monkeypatch.setenv("AMSDAL_EMAIL_TIMEOUT", "9")

    connection = get_connection("smtp", host="arg.example", password=PASSWORD, timeout=None)

    assert isinstance(connection, SMTPBackend)
    settings = connection.settings
    assert settings.host == "arg.example"  # argument
    assert settings.username == "env-user"  # environment
    assert settings.password == PASSWORD  # argument
    assert settings.use_ssl is True  # environment
    assert settings.port == 465  # derived from use_ssl
    assert settings.timeout is None  # None as an argument means "no timeout"
    assert settings.use_tls is False  # default


def test_timeout_none_in_the_environment_means_no_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """AMSDAL_EMAIL_TIMEOUT=none disables the timeout."""
    monkeypatch.setenv("AMSDAL_EMAIL_TIMEOUT", "none")

    assert resolve_smtp_settings().timeout is None


@pytest.mark.parametrize(
    ("options", "env", "port"),
    [
        ({}, {}, 25),
        ({"use_tls": True}, {}, 587),
        ({"use_ssl": True}, {}, 465),
        ({}, {"AMSDAL_EMAIL_USE_TLS": "yes"}, 587),
        ({}, {"AMSDAL_EMAIL_USE_SSL": "yes"}, 465),
        ({"use_ssl": True, "port": 2465}, {}, 2465),
        ({"use_tls": True}, {"AMSDAL_EMAIL_PORT": "2587"}, 2587),
        ({"use_ssl": False}, {"AMSDAL_EMAIL_USE_SSL": "yes"}, 25),
    ],
)
def test_port_default_follows_the_security_mode(
    monkeypatch: pytest.MonkeyPatch, options: dict[str, Any], env: dict[str, str], port: int
) -> None:
    """The port defaults to 465 with use_ssl, 587 with use_tls, else 25; a given port wins."""
    for var, value in env.items():
        monkeypatch.setenv(var, value)

    assert resolve_smtp_settings(options).port == port


@pytest.mark.parametrize("word", TRUE_WORDS)
def test_true_spellings(monkeypatch: pytest.MonkeyPatch, word: str) -> None:
    """true/1/yes/on in any case are true, as env vars and as arguments."""
    monkeypatch.setenv("AMSDAL_EMAIL_USE_TLS", word)

    assert resolve_smtp_settings().use_tls is True
    assert resolve_smtp_settings({"use_tls": word}).use_tls is True
    assert parse_bool(word, "x") is True


@pytest.mark.parametrize("word", FALSE_WORDS)
def test_false_spellings(monkeypatch: pytest.MonkeyPatch, word: str) -> None:
    """false/0/no/off in any case are false, as env vars and as arguments."""
    monkeypatch.setenv("AMSDAL_EMAIL_USE_TLS", word)

    assert resolve_smtp_settings().use_tls is False
    assert resolve_smtp_settings({"use_tls": word}).use_tls is False
    assert parse_bool(word, "x") is False


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("AMSDAL_EMAIL_USE_TLS", "maybe"),
        ("AMSDAL_EMAIL_USE_SSL", "2"),
        ("AMSDAL_EMAIL_PORT", "smtp"),
        ("AMSDAL_EMAIL_PORT", "0"),
        ("AMSDAL_EMAIL_PORT", "70000"),
        ("AMSDAL_EMAIL_PORT", "25.5"),
        ("AMSDAL_EMAIL_TIMEOUT", "soon"),
        ("AMSDAL_EMAIL_TIMEOUT", "-1"),
        ("AMSDAL_EMAIL_TIMEOUT", "0"),
        ("AMSDAL_EMAIL_TIMEOUT", "nan"),
    ],
)
def test_bad_environment_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str
) -> None:
    """An unusable environment value raises ConfigurationError naming the variable and value."""
    monkeypatch.setenv(var, value)

    with pytest.raises(ConfigurationError) as excinfo:
        get_connection("smtp")

    assert var in str(excinfo.value)
    assert repr(value) in str(excinfo.value)
    assert isinstance(excinfo.value, ValueError) and isinstance(excinfo.value, MailError)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("use_tls", "maybe"),
        ("use_ssl", 2),
        ("port", "smtp"),
        ("port", -25),
        ("port", True),
        ("timeout", "soon"),
        ("timeout", -3),
        ("allow_insecure_auth", "sure"),
    ],
)
def test_bad_argument_names_the_argument(name: str, value: Any) -> None:
    """An unusable argument raises ConfigurationError naming the argument."""
    with pytest.raises(ConfigurationError, match=name):
        get_connection("smtp", **{name: value})


def test_unknown_option_lists_the_known_ones() -> None:
    """An option the SMTP backend does not know is refused with the list of known ones."""
    with pytest.raises(ConfigurationError, match="hostname") as excinfo:
        get_connection("smtp", hostname="mail.example.com")

    assert "'host'" in str(excinfo.value)


@pytest.mark.parametrize(
    ("options", "env"),
    [
        ({"use_tls": True, "use_ssl": True}, {}),
        ({}, {"AMSDAL_EMAIL_USE_TLS": "true", "AMSDAL_EMAIL_USE_SSL": "true"}),
        ({"use_ssl": True}, {"AMSDAL_EMAIL_USE_TLS": "true"}),
    ],
)
def test_use_tls_with_use_ssl_is_an_error(
    monkeypatch: pytest.MonkeyPatch, options: dict[str, Any], env: dict[str, str]
) -> None:
    """use_tls together with use_ssl is a configuration error, however they were given."""
    for var, value in env.items():
        monkeypatch.setenv(var, value)

    with pytest.raises(ConfigurationError, match="use_tls.*use_ssl"):
        get_connection("smtp", **options)


def test_keyfile_without_certfile_is_an_error() -> None:
    """ssl_keyfile alone is refused, naming both settings."""
    with pytest.raises(ConfigurationError, match="ssl_keyfile.*ssl_certfile"):
        resolve_smtp_settings({"ssl_keyfile": "/some/key.pem"})


def test_ssl_context_must_be_an_ssl_context() -> None:
    """ssl_context takes an ssl.SSLContext; anything else is refused."""
    with pytest.raises(ConfigurationError, match="ssl_context"):
        resolve_smtp_settings({"ssl_context": "/etc/ssl/cert.pem"})
    context = ssl.create_default_context()
    assert resolve_smtp_settings({"ssl_context": context}).make_ssl_context() is context


def test_default_ssl_context_verifies() -> None:
    """The default TLS context checks the certificate and the host name."""
    context = resolve_smtp_settings({"use_tls": True}).make_ssl_context()

    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True


# -- the password stays secret ---------------------------------------------------------------


def test_password_is_not_in_reprs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Neither the settings nor the backend show the password in their repr."""
    monkeypatch.setenv("AMSDAL_EMAIL_PASSWORD", PASSWORD)
    connection = get_connection("smtp", username="alice")
    assert isinstance(connection, SMTPBackend)

    assert connection.settings.password == PASSWORD
    assert PASSWORD not in repr(connection.settings)
    assert PASSWORD not in str(connection.settings)
    assert PASSWORD not in repr(connection)
    assert "alice" in repr(connection)


@pytest.mark.parametrize(
    "options",
    [
        {"host": "mail.example.com", "username": "alice"},
        {"port": "not-a-port", "username": "alice"},
        {"password": PASSWORD + "\n", "username": "alice"},
        {"use_tls": True, "use_ssl": True, "username": "alice"},
    ],
)
def test_password_is_not_in_configuration_errors(options: dict[str, Any]) -> None:
    """Configuration errors never quote the password."""
    options.setdefault("password", PASSWORD)

    with pytest.raises(ConfigurationError) as excinfo:
        get_connection("smtp", **options)

    assert "hunter2" not in str(excinfo.value)
    assert "hunter2" not in repr(excinfo.value)


# -- credentials over plain text ----------------------------------------------------------------


def test_credentials_in_plain_text_to_a_remote_host_are_refused() -> None:
    """A password would go unencrypted to a non-loopback host: refused at construction."""
    with pytest.raises(ConfigurationError) as excinfo:
        get_connection("smtp", host="smtp.example.com", username="alice", password=PASSWORD)

    message = str(excinfo.value)
    assert "smtp.example.com" in message
    assert "use_tls" in message and "allow_insecure_auth" in message


@pytest.mark.parametrize(
    "options",
    [
        {"allow_insecure_auth": True},
        {"use_tls": True},
        {"use_ssl": True},
        {"host": "127.0.0.1"},
        {"host": "localhost"},
        {"host": "::1"},
    ],
    ids=["allow_insecure_auth", "use_tls", "use_ssl", "127.0.0.1", "localhost", "::1"],
)
def test_credentials_allowed_when_encrypted_local_or_explicitly_allowed(
    options: dict[str, Any],
) -> None:
    """TLS, a loopback host, or allow_insecure_auth make credentials acceptable."""
    options = {"host": "smtp.example.com", **options}

    connection = get_connection("smtp", username="alice", password=PASSWORD, **options)

    assert isinstance(connection, SMTPBackend)


def test_allow_insecure_auth_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """AMSDAL_EMAIL_ALLOW_INSECURE_AUTH allows plain-text credentials too."""
    monkeypatch.setenv("AMSDAL_EMAIL_ALLOW_INSECURE_AUTH", "yes")

    connection = get_connection("smtp", host="smtp.example.com", username="alice", password="pw")

    assert isinstance(connection, SMTPBackend)
    assert connection.settings.allow_insecure_auth is True


# -- empty environment variables -------------------------------------------------------------

EMPTY_IS_AN_ERROR = [
    "AMSDAL_EMAIL_USE_TLS",
    "AMSDAL_EMAIL_USE_SSL",
    "AMSDAL_EMAIL_ALLOW_INSECURE_AUTH",
    "AMSDAL_EMAIL_PORT",
    "AMSDAL_EMAIL_TIMEOUT",
    "AMSDAL_EMAIL_MAX_RETRIES",
    "AMSDAL_EMAIL_RETRY_BACKOFF",
]
EMPTY_IS_UNSET = [
    "AMSDAL_EMAIL_HOST",
    "AMSDAL_EMAIL_USER",
    "AMSDAL_EMAIL_PASSWORD",
    "AMSDAL_EMAIL_SSL_CERTFILE",
    "AMSDAL_EMAIL_SSL_KEYFILE",
    "AMSDAL_EMAIL_LOCAL_HOSTNAME",
]


@pytest.mark.parametrize("value", ["", "  "])
@pytest.mark.parametrize("var", EMPTY_IS_AN_ERROR)
def test_an_empty_boolean_or_number_variable_is_an_error(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str
) -> None:
    """An empty boolean or numeric variable is refused, naming it: give a value or unset it."""
    monkeypatch.setenv(var, value)

    with pytest.raises(ConfigurationError) as excinfo:
        get_connection("smtp")

    assert str(excinfo.value) == f"{var} is set but empty; give it a value or unset it"


def test_an_empty_variable_under_an_explicit_argument_is_not_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Only a variable that is used is checked: an argument for the option wins first."""
    monkeypatch.setenv("AMSDAL_EMAIL_USE_TLS", "")

    assert resolve_smtp_settings({"use_tls": True}).use_tls is True


@pytest.mark.parametrize("var", EMPTY_IS_UNSET)
def test_an_empty_string_variable_counts_as_unset(
    monkeypatch: pytest.MonkeyPatch, var: str
) -> None:
    """An empty host, user, password, certificate file or local hostname is as if unset."""
    monkeypatch.setenv(var, "")

    assert resolve_smtp_settings() == SMTPSettings()


def test_an_empty_backend_variable_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    """AMSDAL_EMAIL_BACKEND= (empty) selects the default, smtp."""
    monkeypatch.setenv("AMSDAL_EMAIL_BACKEND", "")

    assert type(get_connection()) is SMTPBackend


# -- layers ------------------------------------------------------------------------------------


def test_layers_sit_between_the_options_and_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """options > each layer in turn > environment > defaults > amsdal_mail's defaults."""
    monkeypatch.setenv("AMSDAL_EMAIL_HOST", "env.example")
    monkeypatch.setenv("AMSDAL_EMAIL_TIMEOUT", "9")
    upper = Layer({"host": "upper.example", "port": 2525})
    lower = Layer({"host": "lower.example", "port": 2526, "username": "lower-user"})

    settings = resolve_smtp_settings(
        {"port": 1025},
        layers=[upper, lower],
        defaults={"timeout": 5, "local_hostname": "client.example"},
    )

    assert (settings.host, settings.port, settings.username) == (
        "upper.example",
        1025,
        "lower-user",
    )
    assert settings.timeout == 9.0  # the environment wins over the given defaults
    assert settings.local_hostname == "client.example"  # a given default
    assert settings.max_retries == 0  # amsdal_mail's default


def test_a_bad_value_is_named_as_its_layer_names_it() -> None:
    """A layer's labels name its values in errors."""
    layer = Layer({"port": "smtp"}, {"port": "settings.EMAIL_PORT"})

    with pytest.raises(ConfigurationError) as excinfo:
        resolve_smtp_settings(layers=[layer], environ={})

    assert str(excinfo.value) == (
        "settings.EMAIL_PORT must be a port number from 1 to 65535, got 'smtp'"
    )


def test_inspect_reports_every_bad_value_and_the_sources() -> None:
    """inspect_smtp_settings() reports every problem and where each value came from."""
    resolution = inspect_smtp_settings(
        {"timeout": -1},
        layers=[Layer({"host": "mail.example", "port": "x"}, {"port": "settings.EMAIL_PORT"})],
        environ={"AMSDAL_EMAIL_USE_SSL": "perhaps"},
    )

    assert resolution.settings is None
    assert [p.options for p in resolution.problems] == [("port",), ("use_ssl",), ("timeout",)]
    assert resolution.sources == {
        "host": "host",
        "port": "settings.EMAIL_PORT",
        "use_ssl": "AMSDAL_EMAIL_USE_SSL",
        "timeout": "timeout",
    }


def test_use_tls_with_use_ssl_names_where_each_came_from() -> None:
    """The conflict is one problem about both options, naming their sources."""
    resolution = inspect_smtp_settings({"use_ssl": True}, environ={"AMSDAL_EMAIL_USE_TLS": "yes"})

    (problem,) = resolution.problems
    assert problem.options == ("use_tls", "use_ssl")
    assert "use_tls from AMSDAL_EMAIL_USE_TLS, use_ssl from use_ssl" in str(problem.error)


def test_a_keyfile_alone_may_be_accepted_as_django_does() -> None:
    """keyfile_needs_certfile=False keeps a lone ssl_keyfile; no certificate is loaded."""
    settings = resolve_smtp_settings({"ssl_keyfile": "/some/key.pem"}, keyfile_needs_certfile=False)

    assert (settings.ssl_keyfile, settings.ssl_certfile) == ("/some/key.pem", None)
    assert settings.make_ssl_context().verify_mode == ssl.CERT_REQUIRED


def test_as_options_round_trips_without_the_environment() -> None:
    """Resolving as_options() again gives the same settings without reading the environment."""
    settings = resolve_smtp_settings({"host": "mail.example", "use_tls": True, "timeout": None})

    class Watched(dict[str, str]):
        def get(self, key: str, default: Any = None) -> Any:
            raise AssertionError(f"read {key}")

    again = resolve_smtp_settings(settings.as_options(), environ=Watched())

    assert again == settings
