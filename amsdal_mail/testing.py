"""Test support for projects that send mail with amsdal_mail.

Three tools, usable with or without pytest:

* :func:`script_replies` -- the replies a pretend server gives chosen
  recipients (``{"x@example.com": (550, "No such user")}``), as a context
  manager or a decorator. :class:`ScriptedBackend` (and, for Django,
  :class:`django_amsdal_mail.testing.TestEmailBackend`) turn them into the
  statuses the SMTP backend would report: a 2xx reply is ``sent``, 4xx
  ``failed``, 5xx ``rejected``; a recipient without a script is ``sent``.
* :class:`ScriptedBackend` -- an amsdal_mail backend that keeps messages in
  :data:`amsdal_mail.backends.locmem.outbox`, as the ``locmem`` backend does,
  and reports the scripted statuses.
* :class:`SMTPServer` -- a real SMTP server on 127.0.0.1 (a free port, its own
  thread) that records what it receives and answers chosen recipients with
  chosen replies. It needs aiosmtpd: ``pip install 'amsdal-mail[testing]'``.

The pytest plugin (:mod:`amsdal_mail.pytest_plugin`) wraps them in fixtures.
"""

from __future__ import annotations

import asyncio
import email
import email.message
import email.policy
import functools
import inspect
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, TypeVar

from .backends import locmem
from .backends.base import BaseBackend, addresses
from .exceptions import MissingDependencyError
from .message import EmailMessage, ValidatedMessage
from .mime import render
from .status import SendStatus, SMTPReply, status_from_transaction

__all__ = [
    "DATA_REPLY",
    "ReceivedMessage",
    "Reply",
    "SMTPServer",
    "ScriptedBackend",
    "ScriptedReplies",
    "scripted_reply",
    "scripted_status",
    "script_replies",
]

Reply = tuple[int, str]
"""A scripted SMTP reply: its three-digit code and its text, such as ``(550, "No such user")``."""

#: The reply to the end of DATA, from :class:`SMTPServer` and in scripted statuses.
DATA_REPLY: Final = SMTPReply(250, "2.0.0 OK: queued")
_MAIL_REPLY: Final = SMTPReply(250, "2.1.0 OK")
_RCPT_OK: Final = SMTPReply(250, "2.1.5 OK")

_F = TypeVar("_F", bound=Callable[..., Any])


def _bare(address: str) -> str:
    """Return ``address`` as scripts compare it: no angle brackets, lower case."""
    return address.strip().strip("<>").strip().lower()


def _checked(replies: Mapping[str, Reply], what: str) -> dict[str, SMTPReply]:
    """Return ``replies`` keyed by bare address; raise ValueError naming a bad entry."""
    if not isinstance(replies, Mapping):
        raise TypeError(
            f"{what} takes a mapping of address to (code, text), not {type(replies).__name__}"
        )
    checked: dict[str, SMTPReply] = {}
    for address, reply in replies.items():
        if not isinstance(address, str) or "@" not in address:
            raise ValueError(f"{what}: {address!r} is not an e-mail address")
        try:
            code, text = reply
        except (TypeError, ValueError):
            raise ValueError(
                f"{what}[{address!r}]: {reply!r} is not a (code, text) pair like (550, 'No')"
            ) from None
        if (
            isinstance(code, bool)
            or not isinstance(code, int)
            or not (200 <= code < 300 or 400 <= code < 600)
        ):
            raise ValueError(
                f"{what}[{address!r}]: the code must be an int from 200-299 (accepted), "
                f"400-499 (temporary failure) or 500-599 (rejected), not {code!r}"
            )
        if not isinstance(text, str) or "\r" in text or "\n" in text:
            raise ValueError(f"{what}[{address!r}]: the text must be one line of str, not {text!r}")
        checked[_bare(address)] = SMTPReply(code, text)
    return checked


# --- scripted replies ---------------------------------------------------------------------

_scripts: list[ScriptedReplies] = []
_scripts_lock = threading.Lock()


class ScriptedReplies:
    """Replies for chosen recipients while active (made by :func:`script_replies`).

    Use it as a context manager (``with script_replies({...}):``) or as a
    decorator of a function or coroutine function. While several are active,
    the one entered last wins for an address they share. The scripts apply
    to every thread of the process (a test's server threads too).
    """

    def __init__(self, replies: Mapping[str, Reply]) -> None:
        #: The scripted replies, keyed by lower-cased bare address.
        self.replies: dict[str, SMTPReply] = _checked(replies, "script_replies")

    def __repr__(self) -> str:
        shown = ", ".join(f"{a!r}: {r.code}" for a, r in self.replies.items())
        return f"<ScriptedReplies {{{shown}}}>"

    def __enter__(self) -> ScriptedReplies:
        with _scripts_lock:
            _scripts.append(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        with _scripts_lock:
            # The last entry of this script (it may be active more than once).
            for index in range(len(_scripts) - 1, -1, -1):
                if _scripts[index] is self:
                    del _scripts[index]
                    break

    def __call__(self, function: _F) -> _F:
        """Decorate ``function`` (sync or async) so the script is active while it runs."""
        if inspect.iscoroutinefunction(function):

            @functools.wraps(function)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                with self:
                    return await function(*args, **kwargs)

            return run_async  # type: ignore[return-value]

        @functools.wraps(function)
        def run(*args: Any, **kwargs: Any) -> Any:
            with self:
                return function(*args, **kwargs)

        return run  # type: ignore[return-value]


def script_replies(replies: Mapping[str, Reply], /) -> ScriptedReplies:
    """Return a script giving each address in ``replies`` its ``(code, text)`` reply.

    ::

        with script_replies({"x@example.com": (550, "5.1.1 No such user")}):
            status = send_mail("Hi", "Hello", "me@example.com", ["x@example.com"])
        assert status.recipients["x@example.com"].status == "rejected"

    Addresses are compared without display name and case. A code from
    200-299 accepts the recipient (``sent``), 400-499 is a temporary failure
    (``failed``), 500-599 a refusal (``rejected``), as the SMTP backend reports
    a server's RCPT reply.

    Raises:
        ValueError: an entry is not an address with a ``(code, text)`` pair of
            such a code and one line of text.
    """
    return ScriptedReplies(replies)


def scripted_reply(address: str) -> SMTPReply | None:
    """Return the reply the active scripts give ``address``, or None if none scripts it."""
    key = _bare(address)
    with _scripts_lock:
        for script in reversed(_scripts):
            reply = script.replies.get(key)
            if reply is not None:
                return reply
    return None


def scripted_status(recipients: Iterable[str]) -> SendStatus:
    """Return the status the SMTP backend would report for ``recipients`` under the scripts.

    As one SMTP transaction: each recipient's RCPT reply is its scripted one
    (``250`` without a script); when any was accepted, the accepted ones get
    the reply to the end of DATA (:data:`DATA_REPLY`).
    """
    recipients = list(recipients)
    rcpt = {address: scripted_reply(address) or _RCPT_OK for address in recipients}
    accepted = any(reply.is_positive for reply in rcpt.values())
    return status_from_transaction(
        recipients,
        mail_reply=_MAIL_REPLY,
        rcpt_replies=rcpt,
        data_reply=DATA_REPLY if accepted else None,
    )


class ScriptedBackend(BaseBackend):
    """An amsdal_mail backend that keeps messages and reports scripted statuses.

    Like the ``locmem`` backend, each message is rendered (a message that
    could not be rendered fails here as it would with SMTP) and appended to
    :data:`amsdal_mail.backends.locmem.outbox`; its status is
    :func:`scripted_status` under the active :func:`script_replies`. Use it
    with ``get_connection("amsdal_mail.testing.ScriptedBackend")`` or
    ``AMSDAL_EMAIL_BACKEND=amsdal_mail.testing.ScriptedBackend``.
    """

    #: Whether messages are appended to :data:`amsdal_mail.backends.locmem.outbox`.
    records: bool = True

    def _deliver(self, message: EmailMessage, valid: ValidatedMessage) -> SendStatus:
        render(valid)
        if self.records:
            with locmem._lock:
                locmem.outbox.append(message)
        return scripted_status(addresses(valid))


# --- a recording SMTP server --------------------------------------------------------------


@dataclass
class ReceivedMessage:
    """One message an :class:`SMTPServer` accepted at the end of DATA."""

    mail_from: str
    """The envelope sender (MAIL FROM)."""
    rcpt_tos: list[str]
    """The envelope recipients the server accepted, in order."""
    data: bytes
    """The message bytes as received (CRLF line endings)."""
    mail_options: list[str] = field(default_factory=list)
    """ESMTP parameters of MAIL FROM (such as ``SIZE=123``, ``SMTPUTF8``)."""

    @property
    def message(self) -> email.message.EmailMessage:
        """The data parsed with ``email.policy.default`` (``message["Subject"]`` ...)."""
        parsed = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(parsed, email.message.EmailMessage)
        return parsed


def _import_aiosmtpd() -> Any:
    """Return aiosmtpd's ``smtp`` module; raise MissingDependencyError naming the extra."""
    try:
        from aiosmtpd import smtp
    except ImportError as exc:
        raise MissingDependencyError(
            "amsdal_mail.testing.SMTPServer needs aiosmtpd: pip install 'amsdal-mail[testing]'"
        ) from exc
    return smtp


class SMTPServer:
    """A recording SMTP server on ``host`` (127.0.0.1) and a free port, for tests.

    ::

        with SMTPServer({"x@example.com": (550, "5.1.1 No such user")}) as server:
            status = send_mail(..., connection=get_connection(**server.options))
        assert server.messages[0].message["Subject"] == "Hi"

    It runs aiosmtpd in a thread of its own and speaks plain SMTP (EHLO,
    SIZE, 8BITMIME, SMTPUTF8; no TLS, no AUTH). A recipient in ``replies``
    gets that reply to its RCPT; the others get 250. Accepted messages are
    in :attr:`messages` once the client has seen the reply to the end of
    DATA; refused recipients are in :attr:`refused`.

    Raises:
        amsdal_mail.MissingDependencyError: aiosmtpd is not installed
            (``pip install 'amsdal-mail[testing]'``).
    """

    def __init__(
        self,
        replies: Mapping[str, Reply] | None = None,
        /,
        *,
        host: str = "127.0.0.1",
        hostname: str = "amsdal-mail.test",
    ) -> None:
        self._smtp = _import_aiosmtpd()
        #: The scripted RCPT replies, keyed by lower-cased bare address (see :meth:`script`).
        self.replies: dict[str, SMTPReply] = _checked(replies or {}, "SMTPServer replies")
        #: The address the server listens on.
        self.host = host
        #: The port it listens on (0 until started).
        self.port = 0
        self.hostname = hostname
        #: Messages accepted at the end of DATA, in arrival order.
        self.messages: list[ReceivedMessage] = []
        #: Each refused recipient with the reply it was given, in order.
        self.refused: list[tuple[str, SMTPReply]] = []
        self._changed = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._transports: set[asyncio.BaseTransport] = set()

    def __repr__(self) -> str:
        return f"<SMTPServer {self.host}:{self.port} messages={len(self.messages)}>"

    @property
    def options(self) -> dict[str, Any]:
        """Connection options for this server: ``get_connection(**server.options)``."""
        return {"host": self.host, "port": self.port, "use_tls": False, "use_ssl": False}

    # -- scripting and observations --------------------------------------------------------

    def script(self, replies: Mapping[str, Reply], /) -> None:
        """Give each address in ``replies`` that ``(code, text)`` RCPT reply from now on."""
        checked = _checked(replies, "SMTPServer.script")
        with self._changed:
            self.replies.update(checked)

    def clear(self) -> None:
        """Forget the messages and refusals recorded so far (the scripts stay)."""
        with self._changed:
            self.messages.clear()
            self.refused.clear()

    def wait_for_messages(self, count: int, timeout: float = 5.0) -> list[ReceivedMessage]:
        """Wait until ``count`` messages were accepted; return all of them.

        For clients that send in the background (a thread, a worker).

        Raises:
            AssertionError: fewer arrived within ``timeout`` seconds.
        """
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.messages) >= count, timeout):
                raise AssertionError(
                    f"{self!r}: expected {count} message(s) within {timeout} s, "
                    f"got {len(self.messages)} ({len(self.refused)} recipient(s) refused)"
                )
            return list(self.messages)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> SMTPServer:
        """Listen on a free port and wait until the server is ready; return ``self``.

        Raises:
            RuntimeError: the server is running already, or did not start.
            OSError: the address could not be bound.
        """
        if self._thread is not None:
            raise RuntimeError(f"{self!r} is running already")
        ready = threading.Event()
        failure: list[BaseException] = []
        thread = threading.Thread(
            target=self._serve, args=(ready, failure), name=f"SMTPServer {self.host}", daemon=True
        )
        thread.start()
        if not ready.wait(30):
            raise RuntimeError(f"{self!r} did not start within 30 s")
        if failure:
            thread.join(5)
            raise failure[0]
        self._thread = thread
        return self

    def stop(self) -> None:
        """Close every connection and stop the server (nothing if it is not running)."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        if thread.is_alive():
            raise RuntimeError(f"{self!r} did not stop within 30 s")
        self._thread = self._loop = None

    def __enter__(self) -> SMTPServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- internals -------------------------------------------------------------------------

    def _serve(self, ready: threading.Event, failure: list[BaseException]) -> None:
        """The server thread: listen, signal ``ready``, run until stopped, then clean up."""
        loop = asyncio.new_event_loop()
        try:
            server = loop.run_until_complete(loop.create_server(self._protocol, self.host, 0))
        except BaseException as exc:  # handed to start()
            failure.append(exc)
            loop.close()
            ready.set()
            return
        self.port = server.sockets[0].getsockname()[1]
        self._loop = loop
        ready.set()
        try:
            loop.run_forever()
        finally:
            server.close()
            for transport in list(self._transports):
                transport.abort()  # type: ignore[attr-defined]
            loop.run_until_complete(_drain(server))
            loop.close()

    def _protocol(self) -> Any:
        """Return a new aiosmtpd protocol instance for one connection."""
        return _protocol_class(self._smtp.SMTP)(
            self, _Handler(self), hostname=self.hostname, enable_SMTPUTF8=True
        )

    def _rcpt(self, address: str) -> SMTPReply | None:
        """Return the reply scripted for ``address`` (None: accept it); record a refusal."""
        with self._changed:
            reply = self.replies.get(_bare(address))
            if reply is not None and not reply.is_positive:
                self.refused.append((address, reply))
                self._changed.notify_all()
            return reply

    def _record(self, message: ReceivedMessage) -> None:
        with self._changed:
            self.messages.append(message)
            self._changed.notify_all()


async def _drain(server: asyncio.Server) -> None:
    """Cancel the connections' tasks and wait until ``server`` is closed."""
    current = asyncio.current_task()
    pending = [task for task in asyncio.all_tasks() if task is not current]
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    await server.wait_closed()


@functools.cache
def _protocol_class(base: type[Any]) -> type[Any]:
    """Return aiosmtpd's SMTP protocol that tells its server of each connection."""

    class _Protocol(base):  # type: ignore[misc]
        def __init__(self, owner: SMTPServer, *args: Any, **kwargs: Any) -> None:
            self.owner = owner
            super().__init__(*args, **kwargs)

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.owner._transports.add(transport)
            super().connection_made(transport)

        def connection_lost(self, error: Exception | None) -> None:
            self.owner._transports.discard(self.transport)
            super().connection_lost(error)

    return _Protocol


class _Handler:
    """aiosmtpd handler hooks of an :class:`SMTPServer`."""

    def __init__(self, server: SMTPServer) -> None:
        self.server = server

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, smtp: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        reply = self.server._rcpt(address)
        if reply is not None and not reply.is_positive:
            return str(reply)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return str(reply or _RCPT_OK)

    async def handle_DATA(  # noqa: N802 - aiosmtpd's hook name
        self, smtp: Any, session: Any, envelope: Any
    ) -> str:
        data = envelope.original_content or envelope.content or b""
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        self.server._record(
            ReceivedMessage(
                mail_from=envelope.mail_from or "",
                rcpt_tos=list(envelope.rcpt_tos),
                data=bytes(data),
                mail_options=list(envelope.mail_options),
            )
        )
        return str(DATA_REPLY)
