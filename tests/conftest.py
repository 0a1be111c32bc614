"""Shared pytest fixtures."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import trustme

from amsdal_mail import BaseBackend, EmailMessage, SendStatus, asend_mail, send_mail
from tests.smtpd import RecordingServer, ServerFactory
from tests.tracking.dovecot import dovecot  # noqa: F401 (a fixture, for every test module)

# -- TLS certificates ----------------------------------------------------------------
#
# One test CA signs the server certificate (for 127.0.0.1, localhost and mail.test)
# and a client certificate. Clients trust it through ``client_ssl_context`` or the
# ``ca_file`` path (``cafile=`` / ``SSL_CERT_FILE``).


def _server_context(cert: trustme.LeafCert, client_ca: trustme.CA | None = None) -> ssl.SSLContext:
    """A server-side context presenting ``cert``.

    With ``client_ca``, client certificates are requested (not required) and
    verified against that CA.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(context)
    if client_ca is not None:
        client_ca.configure_trust(context)
        context.verify_mode = ssl.CERT_OPTIONAL
    return context


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    """The certificate authority the tests trust."""
    return trustme.CA()


@pytest.fixture(scope="session")
def server_cert(ca: trustme.CA) -> trustme.LeafCert:
    """The test server's certificate, valid for 127.0.0.1, localhost and mail.test."""
    return ca.issue_cert("127.0.0.1", "localhost", "mail.test")


@pytest.fixture(scope="session")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Path of a PEM file holding the test CA certificate."""
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(path)
    return str(path)


@pytest.fixture
def client_ssl_context(ca_file: str) -> ssl.SSLContext:
    """A fresh client context that trusts (only) the test CA."""
    return ssl.create_default_context(cafile=ca_file)


@pytest.fixture(scope="session")
def server_ssl_context(ca: trustme.CA, server_cert: trustme.LeafCert) -> ssl.SSLContext:
    """Server context with the trusted certificate; verifies optional client certs."""
    return _server_context(server_cert, client_ca=ca)


@pytest.fixture(scope="session")
def client_cert_files(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """``(certfile, keyfile)`` of a client certificate for client@example.com."""
    cert = ca.issue_cert("client@example.com")
    directory: Path = tmp_path_factory.mktemp("client-cert")
    certfile, keyfile = directory / "client-cert.pem", directory / "client-key.pem"
    for index, pem in enumerate(cert.cert_chain_pems):
        pem.write_to_path(certfile, append=index > 0)
    cert.private_key_pem.write_to_path(keyfile)
    return str(certfile), str(keyfile)


@pytest.fixture(scope="session")
def untrusted_ssl_context() -> ssl.SSLContext:
    """Server context whose certificate comes from a CA the clients do not trust."""
    other_ca = trustme.CA()
    return _server_context(other_ca.issue_cert("127.0.0.1", "localhost", "mail.test"))


@pytest.fixture(scope="session")
def wrong_host_ssl_context(ca: trustme.CA) -> ssl.SSLContext:
    """Server context with a trusted certificate that is only valid for other.example."""
    return _server_context(ca.issue_cert("other.example"))


# -- SMTP servers --------------------------------------------------------------------


@pytest.fixture
def smtp_server(server_ssl_context: ssl.SSLContext) -> Iterator[ServerFactory]:
    """Start ``RecordingServer(**options)``; every server is stopped after the test.

    Unless given, ``server_context`` is ``server_ssl_context`` for TLS modes.
    """
    with ExitStack() as servers:

        def start(**options: Any) -> RecordingServer:
            if options.get("tls", "plain") != "plain":
                options.setdefault("server_context", server_ssl_context)
            return servers.enter_context(RecordingServer(**options))

        yield start


# -- sync and async sending through one interface -------------------------------------


class Sender:
    """Drive a backend through its sync or its async API with the same calls.

    Tests are written once against this interface and run for both twins
    (the ``sender`` fixture). The sync calls block the test's event loop,
    which is harmless: the test servers run in threads of their own.
    """

    def __init__(self, mode: str) -> None:
        self.mode = mode

    @property
    def is_async(self) -> bool:
        """Return True for the aiosmtplib twin."""
        return self.mode == "async"

    async def send(self, connection: BaseBackend, messages: Sequence[EmailMessage]) -> SendStatus:
        """Send ``messages`` with ``send_messages`` or ``asend_messages``."""
        if self.is_async:
            return await connection.asend_messages(messages)
        return connection.send_messages(messages)

    async def send_message(self, connection: BaseBackend, message: EmailMessage) -> SendStatus:
        """Send one message with ``send_message`` or ``asend_message``."""
        if self.is_async:
            return await connection.asend_message(message)
        return connection.send_message(message)

    async def close(self, connection: BaseBackend) -> None:
        """Close ``connection`` with ``close`` or ``aclose``."""
        if self.is_async:
            await connection.aclose()
        else:
            connection.close()

    async def send_mail(self, *args: Any, **kwargs: Any) -> SendStatus:
        """Call ``send_mail`` or ``asend_mail`` with the same arguments."""
        if self.is_async:
            return await asend_mail(*args, **kwargs)
        return send_mail(*args, **kwargs)

    @contextlib.asynccontextmanager
    async def connected(self, connection: BaseBackend) -> AsyncIterator[BaseBackend]:
        """Hold one connection open: ``with connection`` or ``async with connection``."""
        if self.is_async:
            async with connection as opened:
                yield opened
        else:
            with connection as opened:
                yield opened

    def __repr__(self) -> str:
        return f"<Sender {self.mode}>"


@pytest.fixture(params=["sync", "async"])
def sender(request: pytest.FixtureRequest) -> Sender:
    """The sync (smtplib) or the async (aiosmtplib) way of sending."""
    return Sender(request.param)


@pytest.fixture
def silent_server() -> Iterator[tuple[str, int]]:
    """``(host, port)`` of a socket that completes TCP handshakes but never says a word.

    The socket listens and never accepts: the kernel finishes the handshake for
    queued connections, so a client connects and then waits for a greeting that
    never comes.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield "127.0.0.1", listener.getsockname()[1]


@pytest.fixture
def dropping_server() -> Iterator[tuple[str, int]]:
    """``(host, port)`` of a server that accepts one connection and closes it at once."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(5)

        def accept_and_close() -> None:
            with contextlib.suppress(OSError):
                connection, _ = listener.accept()
                connection.close()

        thread = threading.Thread(target=accept_and_close, daemon=True)
        thread.start()
        yield "127.0.0.1", listener.getsockname()[1]
        thread.join(5)


# -- misbehaving servers (tests/faulty_smtpd.py) --------------------------------------

from tests.faulty_smtpd import Faults, FaultyServer  # noqa: E402


@pytest.fixture
def faulty_server(server_ssl_context: ssl.SSLContext) -> Iterator[Any]:
    """Start ``FaultyServer(Faults(**faults))``; every one is stopped after the test.

    Unless given, ``tls_context`` is ``server_ssl_context`` (trusted, for 127.0.0.1).
    """
    with ExitStack() as servers:

        def start(**faults: Any) -> FaultyServer:
            faults.setdefault("tls_context", server_ssl_context)
            return servers.enter_context(FaultyServer(Faults(**faults)))

        yield start


# -- tests that run in one environment of the matrix ------------------------------------------

#: The Django version of the environment that runs the ``default_env_only`` tests.
DEFAULT_ENV_DJANGO = (5, 2)


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker of tests that run once, in the default (Django 5.2) environment."""
    config.addinivalue_line(
        "markers",
        "default_env_only: run only in the default environment (the site build, the browser); "
        "the other environments of the matrix deselect it, they do not skip it",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect ``default_env_only`` tests outside the default environment (reported so)."""
    try:
        import django
    except ImportError:
        return
    if tuple(django.VERSION[:2]) == DEFAULT_ENV_DJANGO:
        return
    kept, dropped = [], []
    for item in items:
        (dropped if item.get_closest_marker("default_env_only") else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
