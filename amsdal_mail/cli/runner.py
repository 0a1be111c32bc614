"""Carry out a :func:`~amsdal_mail.cli.probe.check_flow` over one smtplib connection.

The connection is the sync driver's (:mod:`amsdal_mail.smtp.sync`): smtplib
with every reply read through the library's reply parser within ``timeout``
seconds. This module adds only what a check needs to see: the greeting, the
TLS session (version, cipher, certificate), each reply. Errors are
translated by :func:`amsdal_mail.smtp.errors.translate`, as when sending.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Generator
from typing import Any

from ..config import SMTPSettings
from ..smtp.driver import local_hostname
from ..smtp.errors import translate
from ..smtp.handshake import FetchToken, checked_token, oauth_login, provider_kwargs
from ..smtp.sync import _Connection, _SSLConnection
from ..status import SMTPReply
from .probe import (
    CertificateInfo,
    CheckReport,
    Command,
    Ehlo,
    EhloResult,
    Login,
    Open,
    Opened,
    ProbeAction,
    Quit,
    StartTLS,
    TLSInfo,
)

__all__ = ["run_check", "tls_info"]


def tls_info(sock: object) -> TLSInfo | None:
    """Return the TLS details of ``sock``, or None when it is not a TLS socket."""
    if not isinstance(sock, ssl.SSLSocket):
        return None
    cipher = sock.cipher()
    cert = sock.getpeercert()
    return TLSInfo(
        version=sock.version() or "TLS",
        cipher=cipher[0] if cipher else "",
        bits=cipher[2] if cipher else None,
        certificate=CertificateInfo.from_peercert(cert) if cert else None,
    )


class _Greeted:
    """Keep the greeting smtplib reads on connect (smtplib itself drops it)."""

    greeting: tuple[int, bytes] = (0, b"")

    def connect(self, host: str = "localhost", port: int = 0, source_address: Any = None) -> Any:
        result = super().connect(host, port, source_address)  # type: ignore[misc]
        self.greeting = result
        return result


class _Plain(_Greeted, _Connection):
    """A plain connection (STARTTLS may follow) that keeps its greeting."""


class _Implicit(_Greeted, _SSLConnection):
    """An implicit-TLS connection that keeps its greeting."""


class _Probe:
    """The I/O of one check: one connection, each action a method."""

    def __init__(self, settings: SMTPSettings) -> None:
        self.settings = settings
        self.conn: _Plain | _Implicit | None = None
        self.where = f"{settings.host}:{settings.port}"
        self.context = settings.make_ssl_context() if settings.is_encrypted else None

    def do(self, action: ProbeAction) -> object:
        """Carry out ``action``; return what the flow is sent."""
        if isinstance(action, Open):
            return self.open()
        conn = self.conn
        if isinstance(action, Quit):
            self.close(polite=True)
            return None
        assert conn is not None, f"{action!r} without a connection"
        if isinstance(action, Ehlo):
            code, text = conn.ehlo()
            return EhloResult(SMTPReply(code, text.decode("utf-8", "replace")), _extensions(conn))
        if isinstance(action, StartTLS):
            conn.starttls(context=self.context)
            info = tls_info(conn.sock)
            assert info is not None
            return info
        if isinstance(action, Login):
            return self.login(conn, action.mechanism)
        assert isinstance(action, Command)
        conn.send_chunks([action.line])
        return conn.next_reply()

    def open(self) -> Opened:
        s = self.settings
        local = s.local_hostname or local_hostname()
        timeout: Any = s.timeout
        conn: _Plain | _Implicit
        try:
            if s.use_ssl:
                conn = _Implicit(
                    s.host, s.port, local_hostname=local, timeout=timeout, context=self.context
                )
            else:
                conn = _Plain(s.host, s.port, local_hostname=local, timeout=timeout)
        except smtplib.SMTPConnectError as exc:  # a greeting other than 220: the flow decides
            text = exc.smtp_error
            said = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
            return Opened(SMTPReply(exc.smtp_code, said), f"{s.host}:{s.port}")
        self.conn = conn
        code, text = conn.greeting
        peer = conn.sock.getpeername() if conn.sock is not None else (s.host, s.port)
        return Opened(
            SMTPReply(code, text.decode("utf-8", "replace")),
            f"{peer[0]}:{peer[1]}",
            tls_info(conn.sock),
        )

    def login(self, conn: _Connection, mechanism: str) -> SMTPReply:
        s = self.settings
        if s.oauth2_token is not None:
            return self._oauth(conn, mechanism)
        conn.user, conn.password = s.username or "", s.password or ""
        method = getattr(conn, "auth_" + mechanism.lower().replace("-", "_"))
        code, text = conn.auth(mechanism, method)
        return SMTPReply(code, text.decode("utf-8", "replace"))

    def _oauth(self, conn: _Connection, mechanism: str) -> SMTPReply:
        """Log in with an OAuth2 token, as :func:`~amsdal_mail.smtp.handshake.oauth_login` says."""
        source = self.settings.oauth2_token
        login = oauth_login(mechanism, self.settings, self.where)
        value: object = None
        last = SMTPReply(235, "Authentication successful")
        while True:
            try:
                step = login.send(value)
            except StopIteration:
                return last
            if isinstance(step, FetchToken):
                assert source is not None
                value = (
                    source
                    if isinstance(source, str)
                    else checked_token(source(**provider_kwargs(source, False)), source)
                )
            else:
                conn.send_chunks([step.line])
                value = last = conn.next_reply()

    def close(self, *, polite: bool) -> None:
        conn, self.conn = self.conn, None
        if conn is None:
            return
        if polite:
            try:
                conn.quit()
                return
            except (OSError, smtplib.SMTPException):
                pass
        conn.close()


def _extensions(conn: smtplib.SMTP) -> dict[str, str]:
    """Return the EHLO keywords as the server listed them (upper case), with parameters."""
    return {name.upper(): value.strip() for name, value in conn.esmtp_features.items()}


def run_check(
    flow: Generator[ProbeAction, object, CheckReport], settings: SMTPSettings
) -> CheckReport:
    """Carry out ``flow`` against the server of ``settings``; return its report.

    The connection is closed when the flow ends, whatever happened.
    """
    probe = _Probe(settings)
    try:
        action = next(flow)
        while True:
            try:
                value = probe.do(action)
            except (OSError, smtplib.SMTPException) as exc:
                probe.close(polite=False)
                action = flow.throw(translate(exc, where=probe.where, timeout=settings.timeout))
            else:
                action = flow.send(value)
    except StopIteration as stop:
        report: CheckReport = stop.value
        return report
    finally:
        probe.close(polite=False)
