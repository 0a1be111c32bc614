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
