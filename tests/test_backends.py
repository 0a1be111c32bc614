"""The non-SMTP backends and how get_connection finds a backend."""

from __future__ import annotations

import email
import email.policy
import io
from collections.abc import Iterator
from email.message import EmailMessage as ParsedMessage
from pathlib import Path
from typing import Any

import pytest

from amsdal_mail import (
    BaseBackend,
    ConfigurationError,
    EmailMessage,
    InvalidMessageError,
    MailError,
    SendStatus,
    UnknownBackendError,
    api,
    get_connection,
    register_backend,
    send_mail,
)
from amsdal_mail.backends import locmem
from amsdal_mail.backends.console import ConsoleBackend
from amsdal_mail.backends.dummy import DummyBackend
from amsdal_mail.backends.filebased import FileBackend
from amsdal_mail.backends.locmem import LocmemBackend
from amsdal_mail.backends.smtp import SMTPBackend
from tests.conftest import Sender

KNOWN = ["console", "dummy", "file", "locmem", "smtp"]


class CountingBackend(BaseBackend):
    """A custom backend: remembers the subjects it was given and reports them queued."""

    subjects: list[str] = []

    def __init__(self, *, fail_silently: bool = False, prefix: str = "", **options: Any) -> None:
        super().__init__(fail_silently=fail_silently, **options)
        self.prefix = prefix

    def _send(self, message: EmailMessage) -> SendStatus:
        self.subjects.append(self.prefix + message.subject)
        return SendStatus.uniform(message.recipients(), "queued")


def simple(subject: str = "Hello", **kwargs: Any) -> EmailMessage:
    """Return a small valid message."""
    kwargs.setdefault("to", ["rcpt@example.com"])
    return EmailMessage(subject, "Body text\n", "sender@example.com", **kwargs)


def parse(data: bytes) -> ParsedMessage:
    """Parse message bytes with the modern policy."""
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(parsed, ParsedMessage)
    return parsed


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Give each test an empty outbox, its own backend registry and no backend env vars."""
    monkeypatch.setattr(api, "BACKENDS", dict(api.BACKENDS))
    monkeypatch.delenv("AMSDAL_EMAIL_BACKEND", raising=False)
    monkeypatch.delenv("AMSDAL_EMAIL_FILE_PATH", raising=False)
    CountingBackend.subjects = []
    locmem.outbox.clear()
    yield
    locmem.outbox.clear()


# -- console -------------------------------------------------------------------------------


async def test_console_writes_each_message_to_the_stream(sender: Sender) -> None:
    """The console backend writes each message, as on the wire, then a separator line."""
    stream = io.StringIO()
    connection = get_connection("console", stream=stream)

    status = await sender.send(connection, [simple("First"), simple("Grüße", cc=["c@example.com"])])

    output = stream.getvalue()
    assert output.count("-" * 79 + "\n") == 2
    first, second = output.split("-" * 79 + "\n")[:2]
    assert parse(first.encode())["Subject"] == "First"
    assert parse(second.encode())["Subject"] == "Grüße"
    assert "\r" not in output
    assert status.status == {"sent"}
    assert set(status.recipients) == {"rcpt@example.com", "c@example.com"}


def test_console_defaults_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    """Without a stream the console backend prints to standard output."""
    get_connection("console").send_messages([simple("To stdout")])

    assert "Subject: To stdout" in capsys.readouterr().out


# -- locmem ---------------------------------------------------------------------------------


async def test_locmem_keeps_messages_in_the_outbox(sender: Sender) -> None:
    """The locmem backend appends each sent message to the outbox."""
    first, second = simple("One"), simple("Two", bcc=["b@example.com"])

    status = await sender.send(get_connection("locmem"), [first, second])

    assert locmem.outbox == [first, second]
    assert first.status is not None and list(first.status.recipients) == ["rcpt@example.com"]
    assert second.status is not None and second.status.status == {"sent"}
    assert set(status.recipients) == {"rcpt@example.com", "b@example.com"}


async def test_invalid_message_reaches_no_outbox(sender: Sender) -> None:
    """A batch with an invalid message leaves the outbox empty."""
    bad = simple("Bad")
    bad.cc.append("not an address")

    with pytest.raises(InvalidMessageError):
        await sender.send(get_connection("locmem"), [simple("Good"), bad])

    assert locmem.outbox == []


# -- file ------------------------------------------------------------------------------------


async def test_file_backend_writes_one_eml_per_message(sender: Sender, tmp_path: Path) -> None:
    """The file backend writes each message to its own parseable .eml file."""
    directory = tmp_path / "mail" / "out"
    connection = get_connection("file", file_path=directory)

    status = await sender.send(connection, [simple(f"Message {i}") for i in range(3)])

    files = sorted(directory.iterdir())
    assert [f.suffix for f in files] == [".eml"] * 3
    subjects = sorted(parse(f.read_bytes())["Subject"] for f in files)
    assert subjects == ["Message 0", "Message 1", "Message 2"]
    assert all(b"\r\n" in f.read_bytes() for f in files)
    assert status.status == {"sent"}


def test_file_backend_path_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AMSDAL_EMAIL_FILE_PATH gives the directory when file_path is not passed."""
    monkeypatch.setenv("AMSDAL_EMAIL_FILE_PATH", str(tmp_path))

    get_connection("file").send_messages([simple()])

    assert len(list(tmp_path.glob("*.eml"))) == 1


def test_file_backend_needs_a_directory(tmp_path: Path) -> None:
    """Without a path, or with a path that is a file, the file backend refuses to start."""
    with pytest.raises(ConfigurationError, match="AMSDAL_EMAIL_FILE_PATH"):
        get_connection("file")
    a_file = tmp_path / "plain-file"
    a_file.write_text("x")
    with pytest.raises(ConfigurationError, match="not a directory"):
        get_connection("file", file_path=a_file)


# -- dummy -----------------------------------------------------------------------------------


async def test_dummy_reports_sent_and_does_nothing(sender: Sender) -> None:
    """The dummy backend reports every recipient sent."""
    message = simple(to=["a@example.com", "b@example.com"])

    status = await sender.send(get_connection("dummy"), [message])

    assert status.get_successful_recipients() == ["a@example.com", "b@example.com"]
    assert message.status is not None and message.status.is_success


async def test_with_block_works_for_backends_without_a_connection(sender: Sender) -> None:
    """with / async with work on every backend, even those with nothing to open."""
    async with sender.connected(get_connection("locmem")) as connection:
        await sender.send(connection, [simple("in with")])

    assert [m.subject for m in locmem.outbox] == ["in with"]


async def test_send_mail_with_another_backend(sender: Sender) -> None:
    """send_mail / asend_mail deliver through the connection they are given."""
    status = await sender.send_mail(
        "Via send_mail",
        "Body",
        "s@example.com",
        "r@example.com",
        connection=get_connection("locmem"),
    )

    assert [m.subject for m in locmem.outbox] == ["Via send_mail"]
    assert status.recipients["r@example.com"].status == "sent"


# -- finding a backend ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("smtp", SMTPBackend),
        ("console", ConsoleBackend),
        ("dummy", DummyBackend),
        ("locmem", LocmemBackend),
    ],
)
def test_short_names(name: str, cls: type[BaseBackend]) -> None:
    """Each short name gives an instance of its backend."""
    assert type(get_connection(name)) is cls


def test_file_short_name(tmp_path: Path) -> None:
    """'file' gives the file backend."""
    assert type(get_connection("file", file_path=tmp_path)) is FileBackend


def test_dotted_path() -> None:
    """A dotted path to a BaseBackend subclass gives an instance of it."""
    connection = get_connection("tests.test_backends.CountingBackend", prefix="p:")

    assert isinstance(connection, CountingBackend) and connection.prefix == "p:"


def test_default_is_smtp() -> None:
    """Without a name or AMSDAL_EMAIL_BACKEND, the SMTP backend is used."""
    assert type(get_connection()) is SMTPBackend


def test_environment_selects_the_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    """AMSDAL_EMAIL_BACKEND selects the backend when none is named; a name wins over it."""
    monkeypatch.setenv("AMSDAL_EMAIL_BACKEND", "locmem")

    assert type(get_connection()) is LocmemBackend
    assert type(get_connection("dummy")) is DummyBackend


def test_environment_backend_used_by_send_mail(monkeypatch: pytest.MonkeyPatch) -> None:
    """send_mail without a connection uses the backend named by AMSDAL_EMAIL_BACKEND."""
    monkeypatch.setenv("AMSDAL_EMAIL_BACKEND", "locmem")

    send_mail("From env", "Body", "s@example.com", ["r@example.com"])

    assert [m.subject for m in locmem.outbox] == ["From env"]


@pytest.mark.parametrize(
    "name",
    ["smpt", "mailgun", "tests.test_backends.NoSuchBackend", "no_such_module.Backend", "os.path"],
)
def test_unknown_backend_lists_the_known_ones(name: str) -> None:
    """An unknown name fails with UnknownBackendError naming it and listing the known names."""
    with pytest.raises(UnknownBackendError) as excinfo:
        get_connection(name)

    error = excinfo.value
    assert isinstance(error, ConfigurationError) and isinstance(error, LookupError)
    assert isinstance(error, MailError)
    assert repr(name) in str(error)
    if name != "os.path":
        assert ", ".join(KNOWN) in str(error)


def test_dotted_path_to_something_else_is_refused() -> None:
    """A dotted path that is not a BaseBackend subclass is an UnknownBackendError."""
    with pytest.raises(UnknownBackendError, match="BaseBackend"):
        get_connection("tests.test_backends.simple")


def test_unknown_option_is_refused() -> None:
    """A backend refuses options it does not take."""
    with pytest.raises(TypeError, match="colour"):
        get_connection("locmem", colour="blue")


async def test_register_backend_by_class(sender: Sender) -> None:
    """A registered class is found by its short name, with options passed through."""
    register_backend("counting", CountingBackend)

    connection = get_connection("counting", prefix="c:")
    status = await sender.send(connection, [simple("Custom")])

    assert CountingBackend.subjects == ["c:Custom"]
    assert status.status == {"queued"} and status.is_success
    assert "counting" in str(_unknown_error())


def test_register_backend_by_dotted_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """A dotted path can be registered under a short name, also for AMSDAL_EMAIL_BACKEND."""
    register_backend("counting", "tests.test_backends.CountingBackend")
    monkeypatch.setenv("AMSDAL_EMAIL_BACKEND", "counting")

    get_connection().send_messages([simple("By path")])

    assert CountingBackend.subjects == ["By path"]


def test_register_backend_can_replace_a_short_name() -> None:
    """Registering a known short name points it at the new backend."""
    register_backend("smtp", CountingBackend)

    assert type(get_connection("smtp")) is CountingBackend


def test_register_backend_refuses_bad_input() -> None:
    """Registration refuses dotted names, non-backend classes and unloadable classes."""

    class Local(BaseBackend):
        def _send(self, message: EmailMessage) -> SendStatus:
            raise NotImplementedError

    with pytest.raises(ConfigurationError, match="without dots"):
        register_backend("my.backend", CountingBackend)
    with pytest.raises(ConfigurationError, match="BaseBackend"):
        register_backend("notabackend", dict)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="module level"):
        register_backend("local", Local)
    assert "local" not in api.BACKENDS


def _unknown_error() -> UnknownBackendError:
    try:
        get_connection("definitely-unknown")
    except UnknownBackendError as error:
        return error
    raise AssertionError("an unknown backend name was accepted")


@pytest.mark.parametrize("name", ["console", "dummy", "file", "locmem"])
async def test_each_message_is_validated_once_per_send(
    name: str, sender: Sender, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every backend validates each message once per send and renders that result."""
    options: dict[str, Any] = {"file_path": tmp_path} if name == "file" else {}
    if name == "console":
        options["stream"] = io.StringIO()
    connection = get_connection(name, **options)
    messages = [simple("One"), simple("Two")]
    single = simple("Three")
    calls: list[str] = []
    validate = EmailMessage.validate

    def counting(self: EmailMessage) -> Any:
        calls.append(self.subject)
        return validate(self)

    monkeypatch.setattr(EmailMessage, "validate", counting)
    status = await sender.send(connection, messages)
    await sender.send_message(connection, single)

    assert sorted(calls) == ["One", "Three", "Two"]
    assert status.status == {"sent"} and single.status is not None
    assert single.status.status == {"sent"}


async def test_a_custom_backend_with_only_send_gets_each_message(sender: Sender) -> None:
    """The simple hook: a backend implementing only _send(message) works sync and async."""
    CountingBackend.subjects = []
    backend = CountingBackend(prefix="> ")

    await sender.send(backend, [simple("One")])
    await sender.send_message(backend, simple("Two"))

    assert CountingBackend.subjects == ["> One", "> Two"]
