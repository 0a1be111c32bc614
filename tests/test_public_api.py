"""The public surface: ``amsdal_mail.__all__`` is exactly the public names, all importable."""

from __future__ import annotations

import importlib
import inspect

import pytest

import amsdal_mail

EXPECTED = {
    # functions
    "asend_mail",
    "get_connection",
    "register_backend",
    "send_mail",
    # values
    "Alternative",
    "Attachment",
    "DSN",
    "EmailMessage",
    "RawPart",
    "RecipientStatus",
    "SendStatus",
    # backends
    "BaseBackend",
    # exceptions
    "AuthenticationError",
    "ConfigurationError",
    "ConnectError",
    "InvalidAddressError",
    "InvalidMessageError",
    "MailError",
    "MailTimeoutError",
    "MissingDependencyError",
    "NotSupportedError",
    "ProtocolError",
    "RecipientsRefusedError",
    "ServerDisconnectedError",
    "TLSError",
    "TransportError",
    "UnknownBackendError",
}
EXCEPTIONS = sorted(name for name in EXPECTED if name.endswith("Error"))


def test_all_is_exactly_the_public_names() -> None:
    """__all__ lists every public name once and nothing else."""
    assert len(amsdal_mail.__all__) == len(set(amsdal_mail.__all__))
    assert set(amsdal_mail.__all__) == EXPECTED


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_name_is_importable(name: str) -> None:
    """Each public name imports from amsdal_mail and is defined inside the package."""
    module = importlib.import_module("amsdal_mail")
    value = getattr(module, name)

    assert value.__module__.startswith("amsdal_mail.")
    assert inspect.getdoc(value), f"{name} has no docstring"


def test_star_import_gives_the_public_names() -> None:
    """``from amsdal_mail import *`` binds exactly the names in __all__."""
    namespace: dict[str, object] = {}
    exec("from amsdal_mail import *", namespace)  # noqa: S102 - the point of the test

    assert set(namespace) - {"__builtins__"} == EXPECTED


@pytest.mark.parametrize("name", EXCEPTIONS)
def test_every_exception_is_a_mail_error(name: str) -> None:
    """Every public exception derives from MailError."""
    assert issubclass(getattr(amsdal_mail, name), amsdal_mail.MailError)


def test_version() -> None:
    """The package has a version string (not part of __all__)."""
    assert isinstance(amsdal_mail.__version__, str) and amsdal_mail.__version__


# -- backends by duck typing --------------------------------------------------------------------


class DuckBackend:
    """A class with the backend methods that does not derive from BaseBackend."""

    def __init__(self, *, fail_silently: bool = False, greeting: str = "") -> None:
        self.fail_silently, self.greeting = fail_silently, greeting

    def open(self) -> bool:
        return False

    def close(self) -> None:
        pass

    async def aopen(self) -> bool:
        return False

    async def aclose(self) -> None:
        pass

    def send_messages(self, messages: object) -> amsdal_mail.SendStatus:
        return amsdal_mail.SendStatus()

    async def asend_messages(self, messages: object) -> amsdal_mail.SendStatus:
        return amsdal_mail.SendStatus()


class NoAsync:
    """A class with only the sync backend methods."""

    def open(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def send_messages(self, messages: object) -> amsdal_mail.SendStatus:
        return amsdal_mail.SendStatus()


def test_get_connection_accepts_a_class_with_the_backend_methods() -> None:
    """A dotted path to any class with the backend methods works, as for Django's EMAIL_BACKEND."""
    connection = amsdal_mail.get_connection(f"{__name__}.DuckBackend", greeting="hi")

    assert isinstance(connection, DuckBackend) and connection.greeting == "hi"


def test_register_backend_accepts_a_class_with_the_backend_methods(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """register_backend() takes such a class too; AMSDAL_EMAIL_BACKEND can then name it."""
    from amsdal_mail import api

    monkeypatch.setitem(api.BACKENDS, "duck", "placeholder")
    amsdal_mail.register_backend("duck", DuckBackend)
    monkeypatch.setenv("AMSDAL_EMAIL_BACKEND", "duck")

    assert isinstance(amsdal_mail.get_connection(), DuckBackend)


def test_a_class_without_the_backend_methods_is_refused_naming_them() -> None:
    """The error names the missing methods and the class to derive from."""
    with pytest.raises(amsdal_mail.UnknownBackendError) as excinfo:
        amsdal_mail.get_connection(f"{__name__}.NoAsync")

    message = str(excinfo.value)
    assert "lacks the backend method(s) asend_messages, aopen, aclose;" in message
    assert "BaseBackend" in message
    with pytest.raises(amsdal_mail.ConfigurationError, match="asend_messages, aopen, aclose"):
        amsdal_mail.register_backend("noasync", NoAsync)


def test_a_backend_named_by_the_environment_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unknown AMSDAL_EMAIL_BACKEND is named as the source of the name."""
    monkeypatch.setenv("AMSDAL_EMAIL_BACKEND", "carrier-pigeon")

    with pytest.raises(amsdal_mail.UnknownBackendError, match=r"\(from AMSDAL_EMAIL_BACKEND\)"):
        amsdal_mail.get_connection()
