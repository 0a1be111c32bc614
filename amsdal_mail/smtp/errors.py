"""Translate what smtplib, aiosmtplib, ssl and sockets raise into amsdal_mail errors.

The decision is made by exception class, from explicit tables: one for the
standard library, one for aiosmtplib (built on first use, since aiosmtplib is
an optional extra). The whole chain of causes is consulted for TLS,
timeouts and hang-ups, because both libraries wrap them: smtplib turns a
socket error into ``SMTPServerDisconnected``, aiosmtplib a timeout before the
greeting into ``SMTPConnectError``. So the sync and async drivers raise the
same error for the same event.
"""

from __future__ import annotations

import functools
import smtplib
import ssl
from dataclasses import dataclass

from ..exceptions import (
    AuthenticationError,
    ConnectError,
    MailTimeoutError,
    NotSupportedError,
    ProtocolError,
    ServerDisconnectedError,
    TLSError,
    TransportError,
)

__all__ = ["translate"]

_Classes = tuple[type[BaseException], ...]


@dataclass(frozen=True, slots=True)
class _Table:
    """The exception classes of one library, by what they mean."""

    authentication: _Classes
    not_supported: _Classes
    timeout: _Classes
    disconnected: _Classes
    #: Classes carrying an SMTP reply, with the names of their code and text attributes.
    reply: tuple[tuple[type[BaseException], str, str], ...]


_STDLIB = _Table(
    authentication=(smtplib.SMTPAuthenticationError,),
    not_supported=(smtplib.SMTPNotSupportedError,),
    timeout=(TimeoutError,),  # socket.timeout is TimeoutError
    disconnected=(smtplib.SMTPServerDisconnected,),
    reply=((smtplib.SMTPResponseException, "smtp_code", "smtp_error"),),
)


@functools.cache
def _aiosmtplib_table() -> _Table | None:
    """Return aiosmtplib's table, or None when aiosmtplib is not installed."""
    try:
        import aiosmtplib
    except ImportError:  # pragma: no cover - exercised in the no-extras test run
        return None
    return _Table(
        authentication=(aiosmtplib.SMTPAuthenticationError,),
        not_supported=(aiosmtplib.SMTPNotSupported,),
        timeout=(aiosmtplib.SMTPTimeoutError,),
        disconnected=(aiosmtplib.SMTPServerDisconnected,),
        reply=((aiosmtplib.SMTPResponseException, "code", "message"),),
    )


def _tables() -> list[_Table]:
    extra = _aiosmtplib_table()
    return [_STDLIB] if extra is None else [_STDLIB, extra]


def _merged(tables: list[_Table], kind: str) -> _Classes:
    return tuple(cls for table in tables for cls in getattr(table, kind))


def _causes(exc: BaseException) -> list[BaseException]:
    """Return ``exc`` and the exceptions it was raised from or during, outermost first."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        if current.__cause__ is not None or current.__suppress_context__:
            current = current.__cause__
        else:
            current = current.__context__
    return chain


def _reply(exc: BaseException, tables: list[_Table]) -> tuple[int | None, str]:
    """Return the SMTP code (None without one) and the text that ``exc`` carries."""
    for table in tables:
        for cls, code_name, text_name in table.reply:
            if isinstance(exc, cls):
                code, text = getattr(exc, code_name, None), getattr(exc, text_name, "")
                if isinstance(text, bytes):
                    text = text.decode("utf-8", "replace")
                return (code if isinstance(code, int) else None), str(text or exc)
    return None, str(exc)


def translate(exc: BaseException, *, where: str, timeout: float | None) -> TransportError:
    """Return the amsdal_mail error for ``exc``, raised while talking to ``where``.

    An amsdal_mail :class:`~amsdal_mail.TransportError` is returned as it is.
    The result does not show ``exc`` as its context (the cause is in the text).
    """
    error = _translate(exc, where, timeout)
    error.__suppress_context__ = True
    return error


def _translate(exc: BaseException, where: str, timeout: float | None) -> TransportError:
    if isinstance(exc, TransportError):
        return exc
    tables = _tables()
    chain = _causes(exc)
    if any(isinstance(c, ssl.SSLError) for c in chain):
        cause = next(c for c in chain if isinstance(c, ssl.SSLError))
        return TLSError(f"TLS with {where} failed: {cause}")
    code, text = _reply(exc, tables)
    if isinstance(exc, _merged(tables, "authentication")):
        return AuthenticationError(code or 535, text)
    if isinstance(exc, _merged(tables, "not_supported")):
        return NotSupportedError(f"{where}: {text}")
    if any(isinstance(c, _merged(tables, "timeout")) for c in chain):
        return MailTimeoutError(f"timed out after {timeout}s talking to {where}: {exc}")
    if any(isinstance(c, _merged(tables, "disconnected")) for c in chain):
        return ServerDisconnectedError(f"{where} closed the connection: {text}")
    if code is not None and code > 0:
        return ProtocolError(code, f"{text} (from {where})")
    return ConnectError(f"could not talk to {where}: {exc}")
