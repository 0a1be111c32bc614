"""Delivery status notification requests (RFC 3461): the :class:`DSN` value and its encodings.

No I/O happens here. :func:`parse_notify` and :func:`parse_ret` read the
words users write (``"failure,delay"``, ``"headers"``) and raise
``ValueError`` naming what is wrong; :class:`DSN` turns that into an
:class:`~amsdal_mail.InvalidMessageError`, the settings into a
:class:`~amsdal_mail.ConfigurationError`. :func:`xtext` and
:func:`utf8_addr_xtext` encode parameter values as they go into MAIL FROM
and RCPT TO (RFC 3461 section 4, RFC 6533 section 3).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from ..exceptions import InvalidMessageError

__all__ = [
    "DSN",
    "ENVID_MAX",
    "NOTIFY_WORDS",
    "RET_WORDS",
    "merge_dsn",
    "parse_notify",
    "parse_ret",
    "utf8_addr_xtext",
    "xtext",
]

#: The NOTIFY words of RFC 3461 section 4.1; ``never`` stands alone.
NOTIFY_WORDS: Final = ("success", "failure", "delay", "never")
#: The RET values as written in settings, and the keyword each sends.
RET_WORDS: Final = {"headers": "HDRS", "full": "FULL"}
_RET_ALIASES: Final = {"hdrs": "headers"}
#: RFC 3461 section 4.4: an ENVID is at most 100 characters.
ENVID_MAX: Final = 100


def parse_notify(value: str | Sequence[str]) -> tuple[str, ...]:
    """Return the NOTIFY words of ``value`` (``"failure,delay"`` or a list), lower case.

    Each word once, in the order of :data:`NOTIFY_WORDS`. Raises ``ValueError``
    for an unknown word, ``never`` together with another word, or no word.
    """
    if isinstance(value, str):
        words = [w.strip().lower() for w in value.split(",")]
    elif isinstance(value, Sequence) and all(isinstance(w, str) for w in value):
        words = [w.strip().lower() for w in value]
    else:
        raise ValueError(
            "must be a comma-separated string or a list of the words "
            f"{', '.join(NOTIFY_WORDS)}, got {value!r}"
        )
    words = [w for w in words if w]
    unknown = sorted({w for w in words if w not in NOTIFY_WORDS})
    if unknown:
        raise ValueError(
            f"unknown NOTIFY word(s) {', '.join(map(repr, unknown))} in {value!r}; "
            f"use never, or any of success, failure, delay"
        )
    if not words:
        raise ValueError(
            f"needs at least one word (never, or any of success, failure, delay), got {value!r}"
        )
    if "never" in words and len(set(words)) > 1:
        raise ValueError(
            f"NOTIFY=never cannot be combined with other words, got {value!r}; "
            "use never alone, or any of success, failure, delay"
        )
    return tuple(w for w in NOTIFY_WORDS if w in words)


def parse_ret(value: str) -> str:
    """Return ``"headers"`` or ``"full"`` for ``value`` (``hdrs`` is ``headers``).

    Raises ``ValueError`` for anything else.
    """
    word = value.strip().lower() if isinstance(value, str) else None
    word = _RET_ALIASES.get(word or "", word)
    if word not in RET_WORDS:
        raise ValueError(f"must be 'headers' or 'full', got {value!r}")
    return word


def xtext(text: str) -> str:
    """Return ``text`` xtext-encoded (RFC 3461 section 4).

    ``+``, ``=`` and every character outside ``!`` .. ``~`` (33..126) become
    ``+XX`` (upper-case hex of the octet). ``text`` must be ASCII; raises
    ``ValueError`` otherwise.
    """
    if not text.isascii():
        raise ValueError(f"xtext holds US-ASCII only, got {text!r}")
    out = []
    for char in text:
        code = ord(char)
        if 33 <= code <= 126 and char not in "+=":
            out.append(char)
        else:
            out.append(f"+{code:02X}")
    return "".join(out)


def utf8_addr_xtext(address: str) -> str:
    """Return ``address`` as RFC 6533's ``utf-8-addr-xtext`` (for ``ORCPT=utf-8;...``).

    Printable ASCII but ``\\``, ``+`` and ``=`` stands for itself; every other
    character is ``\\x{HEX}`` (its code point, upper case, no leading zeros).
    The result is ASCII, so it is valid whether or not SMTPUTF8 is in use.
    """
    out = []
    for char in address:
        code = ord(char)
        if 33 <= code <= 126 and char not in "\\+=":
            out.append(char)
        else:
            out.append(f"\\x{{{code:X}}}")
    return "".join(out)


def _check_envid(envid: object) -> str:
    if not isinstance(envid, str):
        raise ValueError(f"must be a string, got {type(envid).__name__}")
    if not envid or not all(32 <= ord(c) <= 126 for c in envid):
        raise ValueError(f"must be printable US-ASCII text, got {envid!r}")
    if len(xtext(envid)) > ENVID_MAX:
        raise ValueError(
            f"is {len(xtext(envid))} characters xtext-encoded, more than the {ENVID_MAX} "
            f"RFC 3461 allows: {envid!r}"
        )
    return envid


@dataclass(frozen=True, slots=True)
class DSN:
    """What delivery status notifications to ask for (RFC 3461), for one message.

    ``notify``: when the recipients' servers should report, ``"never"`` or any
    of ``"success"``, ``"failure"``, ``"delay"`` (a comma-separated string or
    a list; kept as a tuple of lower-case words). ``ret``: how much of the
    message a failure report returns, ``"headers"`` or ``"full"``. ``envid``:
    the envelope identifier the reports quote (printable ASCII, at most 100
    characters encoded); by default the message's Message-ID.

    A field left None takes the backend's ``dsn_notify`` / ``dsn_ret``. The
    request is sent only to servers that offer DSN. Raises
    :class:`~amsdal_mail.InvalidMessageError` (``field="dsn"``) naming the
    bad value.
    """

    notify: tuple[str, ...] | str | Sequence[str] | None = None
    ret: str | None = None
    envid: str | None = None

    def __post_init__(self) -> None:
        try:
            if self.notify is not None:
                object.__setattr__(self, "notify", parse_notify(self.notify))
        except ValueError as exc:
            raise InvalidMessageError(f"DSN notify {exc}", field="dsn") from None
        try:
            if self.ret is not None:
                object.__setattr__(self, "ret", parse_ret(self.ret))
        except ValueError as exc:
            raise InvalidMessageError(f"DSN ret {exc}", field="dsn") from None
        try:
            if self.envid is not None:
                _check_envid(self.envid)
        except ValueError as exc:
            raise InvalidMessageError(f"DSN envid {exc}", field="dsn") from None

    @property
    def notify_words(self) -> tuple[str, ...]:
        """Return the NOTIFY words (empty when not given)."""
        notify = self.notify
        return notify if isinstance(notify, tuple) else ()

    @property
    def requested(self) -> bool:
        """Return True when anything is asked for (a notify or ret value)."""
        return bool(self.notify_words) or self.ret is not None


def merge_dsn(message: DSN | None, default: DSN | None, message_id: str | None) -> DSN | None:
    """Return the request for one message: its own fields, else the backend's; None if none.

    ENVID is the message's own, else ``message_id`` when it is a valid ENVID
    (printable ASCII, at most 100 characters encoded), else left out.
    """
    notify = (message.notify_words if message else ()) or (default.notify_words if default else ())
    ret = (message.ret if message else None) or (default.ret if default else None)
    if not notify and ret is None:
        return None
    envid = message.envid if message else None
    if envid is None and message_id is not None:
        try:
            envid = _check_envid(message_id.strip())
        except ValueError:
            envid = None
    return DSN(notify=notify or None, ret=ret, envid=envid)
