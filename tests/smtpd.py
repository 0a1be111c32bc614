"""In-process SMTP server for tests and demos, built on aiosmtpd.

``RecordingServer`` runs an aiosmtpd ``Controller`` (its own event loop in its own
thread) on a free local port and records every message it accepts. It can be
configured to speak plain SMTP, STARTTLS (required or optional) or implicit TLS, to
require AUTH, and to refuse senders, individual recipients or the message data with
chosen replies, so client code can be exercised against each of those situations.

Every message is recorded *before* the server sends its reply to the end of DATA,
so once a client has seen the final ``250`` the message is already in
``RecordingServer.messages``; ``wait_for_messages`` is only needed when the client
runs in the background.

This module depends only on the standard library and aiosmtpd (not on pytest), so
scripts can use it too::

    with RecordingServer() as server:
        with smtplib.SMTP(server.host, server.port, timeout=5) as client:
            client.sendmail("a@example.com", ["b@example.com"], b"Subject: Hi\\r\\n\\r\\nHi\\r\\n")
        print(server.messages[0].message["Subject"])
"""

from __future__ import annotations

import asyncio
import base64
import collections
import email
import email.message
import email.policy
import errno
import json
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Protocol, get_args

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, LoginPassword, Session

__all__ = [
    "GMAIL_BAD_TOKEN",
    "MICROSOFT_BAD_TOKEN",
    "OAUTH_MECHANISMS",
    "SERVER_HOSTNAME",
    "AuthAttempt",
    "OAuthStyle",
    "ReceivedMessage",
    "RecordingServer",
    "ServerFactory",
    "TlsMode",
    "free_port",
]

TlsMode = Literal["plain", "starttls", "starttls_optional", "ssl"]
"""How the server offers TLS: not at all, STARTTLS required before MAIL, STARTTLS
offered but optional, or implicit TLS from the first byte."""

SERVER_HOSTNAME = "mail.test"
"""Name the server uses in its greeting and EHLO reply (avoids ``socket.getfqdn()``)."""

OAUTH_MECHANISMS = ("XOAUTH2", "OAUTHBEARER")
"""The OAuth2 SASL mechanisms the server can offer."""

OAuthStyle = Literal["gmail", "microsoft"]
"""How the server refuses a bad XOAUTH2 token: as Gmail does (a 334 challenge carrying
base64 JSON, then 535 after the client's empty line) or as Exchange Online does (535
at once)."""

GMAIL_BAD_TOKEN = (
    "535-5.7.8 Username and Password not accepted. For more information, go to\r\n"
    "535 5.7.8  https://support.google.com/mail/?p=BadCredentials"
)
"""Gmail's final reply to a refused XOAUTH2 token."""
MICROSOFT_BAD_TOKEN = "535 5.7.3 Authentication unsuccessful [AM0PR02CA0001.eurprd02.prod.test]"
"""Exchange Online's reply to a refused XOAUTH2 token."""
_OAUTHBEARER_BAD_TOKEN = "535 5.7.8 Authentication credentials invalid"
_AUTH_LINE_LIMIT = 12288  # RFC 4954: an AUTH command line may be this long (a large token)

_OK = "250 OK"
_AUTH_REQUIRED = "530 5.7.0 Authentication required"
_BIND_ATTEMPTS = 3


@dataclass
class ReceivedMessage:
    """One message as it reached the end of DATA."""

    mail_from: str
    """Envelope sender (the MAIL FROM address)."""
    rcpt_tos: list[str]
    """Envelope recipients that were accepted, in the order they were given."""
    data: bytes
    """The DATA bytes exactly as received (dot-unstuffed, CRLF line endings kept)."""
    mail_options: list[str]
    """ESMTP parameters of MAIL FROM, upper-cased (e.g. ``["SIZE=123", "SMTPUTF8"]``)."""
    rcpt_options: list[str]
    """ESMTP parameters of all accepted RCPT TO commands, upper-cased."""
    session_id: int
    """Which connection the message arrived on: 1 for the first one, 2 for the next…"""
    peer_cert: dict[str, Any] | None = None
    """The verified TLS client certificate of that connection (``getpeercert()``)."""
    auth_user: str | None = None
    """The login the client authenticated as on that connection, if any."""
    tls: bool = False
    """Whether the message was sent over an encrypted connection."""
    started: float = 0.0
    """``time.monotonic()`` when its MAIL FROM arrived (the start of its transaction)."""

    @property
    def message(self) -> email.message.EmailMessage:
        """The data parsed with the modern ``email.policy.default`` policy.

        Payloads keep the CRLF line endings of the wire: ``get_content()`` of a
        text part ends in ``"\\r\\n"``.
        """
        parsed = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(parsed, email.message.EmailMessage)
        return parsed


@dataclass
class AuthAttempt:
    """One OAuth2 AUTH exchange as the server saw it (``RecordingServer.auth_attempts``)."""

    mechanism: str
    """``XOAUTH2`` or ``OAUTHBEARER``."""
    user: str
    """The login the client gave (``user=`` or the GS2 ``a=``, unescaped)."""
    token: str
    """The bearer token the client gave."""
    accepted: bool
    """Whether the token was the valid one for that user."""
    fields: dict[str, str] = field(default_factory=dict)
    """The key=value fields of the client response (``host``, ``port``, ``auth``)."""
    gs2_header: str = ""
    """OAUTHBEARER's GS2 header as sent (``n,a=user,``)."""
    continuation: bytes | None = None
    """What the client answered the error challenge with (decoded), if one was sent."""
    session_id: int = 0
    """Which connection the attempt was made on."""


class ServerFactory(Protocol):
    """Type of the ``smtp_server`` fixture: starts a server with the given options."""

    def __call__(self, **options: Any) -> RecordingServer: ...


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that was free a moment ago."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _bare_address(address: str) -> str:
    """Normalise an address for comparison: no angle brackets, lower case."""
    return address.strip().strip("<>").strip().lower()


def _check_reply(reply: str, option: str) -> str:
    """Reject a reply line that does not start with a three-digit SMTP code."""
    if not (len(reply) >= 3 and reply[:3].isdigit() and reply[0] in "2345"):
        raise ValueError(f"{option}: {reply!r} is not an SMTP reply like '550 5.1.1 No such user'")
    return reply


class RecordingServer:
    """An SMTP server on a free local port that records what clients send it.

    Use it as a context manager (``with RecordingServer() as server:``) or call
    ``start()`` and ``stop()``. ``host`` and ``port`` tell clients where to connect;
    ``port`` is chosen by ``start()``.

    Options (all keyword-only):

    * ``tls`` -- ``"plain"``, ``"starttls"`` (offered and required before MAIL),
      ``"starttls_optional"`` (offered, not required) or ``"ssl"`` (implicit TLS).
    * ``server_context`` -- the server-side ``ssl.SSLContext``; required unless
      ``tls == "plain"``. If it requests client certificates, the verified one is
      recorded as ``ReceivedMessage.peer_cert``.
    * ``auth`` -- username to password. When given, AUTH PLAIN and LOGIN are
      advertised (also without TLS) and required before MAIL; wrong credentials get
      ``535``. When not given, AUTH is not advertised.
    * ``oauth`` -- username to the one access token the server accepts for it (the
      dict is kept: a test may change a token while the server runs). When given,
      the ``oauth_mechanisms`` are advertised and AUTH is required before MAIL; each
      exchange is recorded in ``auth_attempts``. A bad token is refused as
      ``oauth_style`` says for XOAUTH2, and as RFC 7628 says for OAUTHBEARER (a 334
      error challenge, the client's ``^A``, then 535).
    * ``rcpt_replies`` -- recipient address to a full reply line (``"550 5.1.1 No such
      user"``, ``"450 4.2.0 Try later"``) used instead of ``250 OK``; addresses are
      compared case-insensitively.
    * ``mail_reply`` -- reply that refuses every MAIL FROM.
    * ``data_reply`` -- reply that refuses every message at the end of DATA; such
      messages go to ``refused_data`` instead of ``messages``.
    * ``data_size_limit`` -- maximum message size, advertised as ``SIZE``.
    * ``enable_smtputf8`` -- whether ``SMTPUTF8`` is advertised and accepted.
    * ``hostname`` -- the address to listen on.
    """

    def __init__(
        self,
        *,
        tls: TlsMode = "plain",
        server_context: ssl.SSLContext | None = None,
        auth: dict[str, str] | None = None,
        rcpt_replies: dict[str, str] | None = None,
        mail_reply: str | None = None,
        data_reply: str | None = None,
        data_size_limit: int | None = None,
        enable_smtputf8: bool = True,
        hostname: str = "127.0.0.1",
        oauth: dict[str, str] | None = None,
        oauth_mechanisms: tuple[str, ...] = OAUTH_MECHANISMS,
        oauth_style: OAuthStyle = "gmail",
    ) -> None:
        if tls not in get_args(TlsMode):
            raise ValueError(f"tls must be one of {get_args(TlsMode)}, not {tls!r}")
        if tls != "plain" and server_context is None:
            raise ValueError(f"tls={tls!r} needs a server_context")
        self.tls: TlsMode = tls
        self.server_context = server_context
        self.auth = dict(auth) if auth is not None else None
        unknown = set(oauth_mechanisms) - set(OAUTH_MECHANISMS)
        if unknown or oauth_style not in get_args(OAuthStyle):
            raise ValueError(
                f"oauth_mechanisms from {OAUTH_MECHANISMS}, oauth_style gmail|microsoft"
            )
        self.oauth = oauth
        self.oauth_mechanisms = tuple(oauth_mechanisms)
        self.oauth_style: OAuthStyle = oauth_style
        self.auth_attempts: list[AuthAttempt] = []
        """Every OAuth2 AUTH exchange, in order."""
        self.rcpt_replies = {
            _bare_address(address): _check_reply(reply, "rcpt_replies")
            for address, reply in (rcpt_replies or {}).items()
        }
        self.mail_reply = _check_reply(mail_reply, "mail_reply") if mail_reply else None
        self.data_reply = _check_reply(data_reply, "data_reply") if data_reply else None
        self.data_size_limit = data_size_limit
        self.enable_smtputf8 = enable_smtputf8
        self.host = hostname
        self.port = 0

        self.messages: list[ReceivedMessage] = []
        """Messages accepted at the end of DATA, in arrival order."""
        self.refused_data: list[ReceivedMessage] = []
        """Messages that were refused with ``data_reply`` at the end of DATA."""

        self._changed = threading.Condition()
        self._connections = 0
        self._ehlo_count = 0
        self._controller: _Controller | None = None

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> RecordingServer:
        """Listen on a free port and wait until the server is ready; return ``self``."""
        if self._controller is not None:
            raise RuntimeError("the server is already running")
        connections_before = self.connections
        self._controller = self._start_controller()
        self.port = self._controller.port
        # Controller.start() opens a connection of its own to check that the server
        # answers (it has been accepted by now); that one is not a client's.
        with self._changed:
            self._connections = connections_before
        return self

    def stop(self) -> None:
        """Stop the server and its thread (does nothing if it is not running)."""
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    def __enter__(self) -> RecordingServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<RecordingServer tls={self.tls} {self.host}:{self.port}>"

    # -- observations ----------------------------------------------------------------

    @property
    def connections(self) -> int:
        """Number of TCP connections accepted from clients (a STARTTLS upgrade is not a new one)."""
        with self._changed:
            return self._connections

    @property
    def ehlo_count(self) -> int:
        """Number of EHLO commands received, on all connections together."""
        with self._changed:
            return self._ehlo_count

    def wait_for_messages(self, n: int, timeout: float = 5.0) -> list[ReceivedMessage]:
        """Wait until at least ``n`` messages were accepted and return them all.

        Raises ``AssertionError`` if that does not happen within ``timeout`` seconds.
        """
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.messages) >= n, timeout):
                raise AssertionError(
                    f"{self!r} expected {n} accepted message(s) within {timeout}s, "
                    f"got {len(self.messages)} (and {len(self.refused_data)} refused at "
                    f"end of DATA, {self._connections} connection(s))"
                )
            return list(self.messages)

    # -- internals ----------------------------------------------------------------------

    def _start_controller(self) -> _Controller:
        attempts_left = _BIND_ATTEMPTS
        while True:
            controller = self._make_controller(free_port(self.host))
            try:
                controller.start()
                return controller
            except OSError as error:
                # Retry if another process took the port between free_port() and bind().
                controller.loop.close()
                attempts_left -= 1
                if error.errno != errno.EADDRINUSE or not attempts_left:
                    raise

    def _make_controller(self, port: int) -> _Controller:
        smtp_options: dict[str, Any] = {
            "data_size_limit": self.data_size_limit,
            "enable_SMTPUTF8": self.enable_smtputf8,
            # AUTH is enforced by _RecordingSMTP.check_auth_needed instead of
            # aiosmtpd's auth_required, which warns when combined with this.
            "auth_require_tls": False,
            "authenticator": self._authenticate,
            "require_auth": self.auth is not None or self.oauth is not None,
            "long_auth": self.oauth is not None,
        }
        if self.tls in ("starttls", "starttls_optional"):
            smtp_options["tls_context"] = self.server_context
            smtp_options["require_starttls"] = self.tls == "starttls"
        return _Controller(
            _Handler(self),
            hostname=self.host,
            port=port,
            ssl_context=self.server_context if self.tls == "ssl" else None,
            server_hostname=SERVER_HOSTNAME,
            **smtp_options,
        )

    def _connection_opened(self) -> int:
        with self._changed:
            self._connections += 1
            self._changed.notify_all()
            return self._connections

    def _ehlo_received(self) -> None:
        with self._changed:
            self._ehlo_count += 1
            self._changed.notify_all()

    def _record_auth(self, attempt: AuthAttempt) -> None:
        with self._changed:
            self.auth_attempts.append(attempt)
            self._changed.notify_all()

    def _advertised(self) -> list[str]:
        """Return the AUTH mechanisms the EHLO reply lists."""
        mechanisms = ["LOGIN", "PLAIN"] if self.auth is not None else []
        if self.oauth is not None:
            mechanisms += self.oauth_mechanisms
        return mechanisms

    def _record(self, message: ReceivedMessage, *, accepted: bool) -> None:
        with self._changed:
            (self.messages if accepted else self.refused_data).append(message)
            self._changed.notify_all()

    def _authenticate(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        mechanism: str,
        auth_data: Any,
    ) -> AuthResult:
        """aiosmtpd authenticator: check a login/password against ``auth``."""
        if self.auth is not None and isinstance(auth_data, LoginPassword):
            login = auth_data.login.decode("utf-8", "replace")
            password = auth_data.password.decode("utf-8", "replace")
            if login in self.auth and self.auth[login] == password:
                return AuthResult(success=True, auth_data=login)
        return AuthResult(success=False, handled=False)


class _Handler:
    """aiosmtpd handler hooks that apply the server's options and record messages."""

    def __init__(self, recorder: RecordingServer) -> None:
        self.recorder = recorder

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname  # the hook has to do this itself
        self.recorder._ehlo_received()
        offered = self.recorder._advertised()
        responses = [line for line in responses if not line.startswith("250-AUTH ")]
        if offered:
            responses.insert(-1, "250-AUTH " + " ".join(offered))
        return responses

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:
        """XOAUTH2 (Google, Microsoft): ``user=U^Aauth=Bearer T^A^A``."""
        return await self._oauth(server, args, "XOAUTH2")

    async def auth_OAUTHBEARER(self, server: SMTP, args: list[str]) -> AuthResult:
        """OAUTHBEARER (RFC 7628): ``n,a=U,^Ahost=H^Aport=P^Aauth=Bearer T^A^A``."""
        return await self._oauth(server, args, "OAUTHBEARER")

    async def _oauth(self, server: SMTP, args: list[str], mechanism: str) -> AuthResult:
        recorder = self.recorder
        if recorder.oauth is None or mechanism not in recorder.oauth_mechanisms:
            await server.push("504 5.5.4 Unrecognized authentication type")
            return AuthResult(success=False, handled=True)
        if len(args) == 1:
            response = await server.challenge_auth("")
            if response is MISSING:
                return AuthResult(success=False, handled=True)
            assert isinstance(response, bytes)
        else:
            try:
                response = base64.b64decode(args[1], validate=True)
            except ValueError:
                await server.push("501 5.5.2 Can't decode base64")
                return AuthResult(success=False, handled=True)
        attempt = _parse_oauth(mechanism, response)
        if attempt is None:
            await server.push("501 5.5.2 Malformed " + mechanism + " client response")
            return AuthResult(success=False, handled=True)
        assert isinstance(server, _RecordingSMTP)
        attempt.session_id = server.connection_id
        attempt.accepted = recorder.oauth.get(attempt.user) == attempt.token
        if attempt.accepted:
            recorder._record_auth(attempt)
            return AuthResult(success=True, auth_data=attempt.user)
        if mechanism == "XOAUTH2" and recorder.oauth_style == "microsoft":
            recorder._record_auth(attempt)
            return AuthResult(success=False, handled=False, message=MICROSOFT_BAD_TOKEN)
        if mechanism == "XOAUTH2":
            error = {"status": "400", "schemes": "Bearer", "scope": "https://mail.google.com/"}
            final = GMAIL_BAD_TOKEN
        else:
            error = {"status": "invalid_token", "scope": "mail", "schemes": "Bearer"}
            final = _OAUTHBEARER_BAD_TOKEN
        answer = await server.challenge_auth(json.dumps(error))
        attempt.continuation = answer if isinstance(answer, bytes) else None
        recorder._record_auth(attempt)
        if answer is MISSING:  # "*" or bad base64: already answered
            return AuthResult(success=False, handled=True)
        return AuthResult(success=False, handled=False, message=final)

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        if self.recorder.mail_reply:
            return self.recorder.mail_reply
        envelope.amsdal_started = time.monotonic()  # type: ignore[attr-defined]
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return _OK

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        reply = self.recorder.rcpt_replies.get(_bare_address(address))
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return _OK

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(server, _RecordingSMTP)
        assert server.transport is not None
        assert envelope.mail_from is not None and envelope.original_content is not None
        auth_user = session.auth_data if session.authenticated else None
        message = ReceivedMessage(
            mail_from=envelope.mail_from,
            rcpt_tos=list(envelope.rcpt_tos),
            data=envelope.original_content,
            mail_options=list(envelope.mail_options),
            rcpt_options=list(envelope.rcpt_options),
            session_id=server.connection_id,
            # With STARTTLS server.transport is the TLS layer as well, so this
            # covers both ways of encrypting.
            peer_cert=server.transport.get_extra_info("peercert") or None,
            auth_user=auth_user if isinstance(auth_user, str) else None,
            tls=server.transport.get_extra_info("ssl_object") is not None,
            started=getattr(envelope, "amsdal_started", 0.0),
        )
        reply = self.recorder.data_reply
        self.recorder._record(message, accepted=reply is None)
        return reply or _OK


class _RecordingSMTP(SMTP):
    """aiosmtpd's SMTP protocol, plus connection numbering and optional required AUTH."""

    def __init__(
        self, handler: _Handler, *, require_auth: bool, long_auth: bool = False, **options: Any
    ) -> None:
        if long_auth:
            # An AUTH line carrying a large OAuth2 token may be as long as RFC 4954
            # allows: the stream reader's buffer must take it (it is made in
            # __init__); the 1000-octet check of DATA lines stays.
            self.line_length_limit = _AUTH_LINE_LIMIT
        super().__init__(handler, **options)
        self.line_length_limit = SMTP.line_length_limit
        self.require_auth = require_auth
        self.connection_id = 0
        if long_auth:
            # An instance's own limits (aiosmtpd keeps a class-wide dict).
            self.command_size_limits = collections.defaultdict(lambda: SMTP.command_size_limit)
            self.command_size_limits["AUTH"] = _AUTH_LINE_LIMIT

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # aiosmtpd calls this again, with the TLS transport, after STARTTLS; only
        # the first call (self.transport still unset) is a new TCP connection.
        if self.transport is None:
            handler = self.event_handler
            assert isinstance(handler, _Handler)
            self.connection_id = handler.recorder._connection_opened()
        super().connection_made(transport)

    async def check_auth_needed(self, caller_method: str) -> bool:
        """Refuse MAIL, RCPT, DATA, … with 530 until the client has authenticated."""
        if self.require_auth and not (self.session and self.session.authenticated):
            await self.push(_AUTH_REQUIRED)
            return True
        return False


def _parse_oauth(mechanism: str, response: bytes) -> AuthAttempt | None:
    """Return the attempt a client response describes, or None when it is malformed."""
    try:
        text = response.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if not text.endswith("\x01\x01"):
        return None
    gs2 = ""
    if mechanism == "OAUTHBEARER":
        gs2, sep, text = text.partition("\x01")
        parts = gs2.split(",")
        if not sep or len(parts) != 3 or parts[0] != "n" or not parts[1].startswith("a="):
            return None
        user = parts[1][2:].replace("=2C", ",").replace("=3D", "=")
    fields = dict(item.partition("=")[::2] for item in text[:-2].split("\x01") if item)
    if mechanism == "XOAUTH2":
        user = fields.get("user", "")
    auth = fields.get("auth", "")
    if not auth.startswith("Bearer "):
        return None
    return AuthAttempt(mechanism, user, auth[len("Bearer ") :], False, fields, gs2)


class _Controller(Controller):
    """Controller that builds ``_RecordingSMTP`` protocols on its own loop."""

    def factory(self) -> _RecordingSMTP:
        # Passing the loop keeps aiosmtpd from looking one up (and from touching
        # the global warning filters while doing so) in this thread.
        return _RecordingSMTP(self.handler, loop=self.loop, **self.SMTP_kwargs)
