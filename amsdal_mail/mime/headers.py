"""The header section: RFC 2047 encoded-words, folding, address and custom headers."""

from __future__ import annotations

import binascii
import re
from collections.abc import Iterable
from email.utils import getaddresses
from string import ascii_letters, digits

from ..message import Address, ValidatedMessage, parse_address

__all__ = ["encoded_words", "header_lines"]

_MAX_LINE = 76  # soft limit for continuation lines we fold ourselves
_FIRST_LINE = 78  # RFC 5322 2.1.1: no line longer than 78 characters, the name included
_WORD_MAX = 75  # RFC 2047 2: an encoded-word is at most 75 characters
_WORD_OVERHEAD = len("=?utf-8?q??=")
# Below this much room on the first line (a header name of 50+ characters),
# the first encoded-word takes the room one character needs rather than
# folding right after the colon, which readers would keep as a leading space.
_MIN_FIRST_WORD = _WORD_OVERHEAD + 12
_ADDRESS_HEADERS = frozenset({"from", "to", "cc", "reply-to", "sender", "bcc"})
_REPLACEABLE = frozenset({"from", "to", "cc", "reply-to", "subject", "date", "message-id"})
# Structured headers of URIs in angle brackets (RFC 2369, RFC 8058): written as
# given when ASCII, folded only between URIs, never as encoded-words.
_URI_HEADERS = frozenset({"list-unsubscribe", "list-unsubscribe-post"})
_NEEDS_QUOTING = re.compile(r'[()<>\[\]:;@\\,."]')
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # every control character but TAB


def _q_tables(literal: bytes) -> tuple[dict[int, str], bytes]:
    """Return (str.translate table from latin-1 code points to Q text, Q length per byte)."""
    table: dict[int, str] = {}
    for byte in range(256):
        if byte == 0x20:
            table[byte] = "_"
        elif byte in literal:
            table[byte] = chr(byte)
        else:
            table[byte] = f"={byte:02X}"
    return table, bytes(len(table[byte]) for byte in range(256))


# RFC 2047 5(3): in a phrase (a display name) only letters, digits and
# "!*+-/" may stand for themselves (what Python's email package writes too).
_Q_PHRASE = _q_tables((ascii_letters + digits + "!*+-/").encode("ascii"))
# RFC 2047 4.2 and 5(1): in unstructured text every printable ASCII character
# but "=", "?" and "_" may stand for itself; space is "_".
_Q_TEXT = _q_tables(bytes(b for b in range(0x21, 0x7F) if b not in b"=?_"))


def _b_length(size: int) -> int:
    return 4 * ((size + 2) // 3)


def _word(data: bytes, q_length: int, table: dict[int, str]) -> str:
    """Return one encoded-word for ``data``: Q when not longer than B, as the stdlib chooses."""
    if q_length <= _b_length(len(data)):
        return "=?utf-8?q?" + data.decode("latin-1").translate(table) + "?="
    return "=?utf-8?b?" + binascii.b2a_base64(data, newline=False).decode("ascii") + "?="


def encoded_words(text: str, *, phrase: bool, first: int = _WORD_MAX) -> list[str]:
    """Return RFC 2047 encoded-words for ``text``, each Q or B, whichever is shorter.

    The first word is at most ``first`` characters, every other one at most
    75; a character is never split across two words. ``phrase`` selects the
    restricted Q alphabet of display names.
    """
    table, costs = _Q_PHRASE if phrase else _Q_TEXT
    data = text.encode("utf-8")
    room = min(max(first, _MIN_FIRST_WORD), _WORD_MAX) - _WORD_OVERHEAD
    q_length = sum(data.translate(costs))
    if min(q_length, _b_length(len(data))) <= room:
        return [_word(data, q_length, table)]
    words: list[str] = []
    start = size = q_length = 0
    for char in text:
        if char < "\x80":
            width, cost = 1, costs[ord(char)]
        else:
            width = len(char.encode("utf-8"))
            cost = 3 * width
        if size and min(q_length + cost, _b_length(size + width)) > room:
            words.append(_word(data[start : start + size], q_length, table))
            start, size, q_length = start + size, 0, 0
            room = _WORD_MAX - _WORD_OVERHEAD
        size += width
        q_length += cost
    words.append(_word(data[start : start + size], q_length, table))
    return words


def _first_room(name: str) -> int:
    """Return how long the first token after ``name: `` may be on a 78-character line."""
    return _FIRST_LINE - len(name) - 2


def _needs_encoding(text: str) -> bool:
    # Text that looks like an encoded-word is encoded itself, so a reader can
    # never decode user input into something else (such as new header lines).
    # Control characters are encoded too: RFC 5322 forbids generating them raw.
    return (
        not text.isascii()
        or "=?" in text
        or _CONTROL.search(text) is not None
        or (len(text) > 70 and any(len(w) > 70 for w in text.split(" ")))
    )


def _fold(name: str, tokens: Iterable[str]) -> str:
    """Write ``name:`` and the tokens separated by spaces, folding between tokens.

    A line is broken before a token that would take it past 76 characters,
    so no line is longer than the header name plus the longest token.
    """
    line = name + ":"
    lines: list[str] = []
    started = False
    for token in tokens:
        if started and len(line) + 1 + len(token) > _MAX_LINE:
            lines.append(line)
            line = " " + token
        else:
            line += " " + token
        started = True
    lines.append(line)
    return "\r\n".join(lines)


def _unstructured(name: str, value: str) -> str:
    if _needs_encoding(value):
        return _fold(name, encoded_words(value, phrase=False, first=_first_room(name)))
    if len(name) + 2 + len(value) <= _MAX_LINE:
        return f"{name}: {value}"  # what _fold makes of a line it need not break
    return _fold(name, value.split(" "))


def _format_address(address: Address, first: int) -> list[str]:
    """Return the tokens of one address as it appears in a header.

    ``first`` is the room for the first token, when it starts the header.
    """
    spec = (
        f"<{address.local_part}@{address.ascii_domain}>" if address.domain else address.local_part
    )
    name = address.display_name
    if not name:
        return [spec[1:-1] if address.domain else spec]
    if _needs_encoding(name):
        return [*encoded_words(name, phrase=True, first=first), spec]
    if _NEEDS_QUOTING.search(name):
        escaped = name.replace("\\", "\\\\").replace('"', '\\"')
        return [f'"{escaped}"', spec]
    return [*name.split(" "), spec]


def _address_header(name: str, addresses: Iterable[Address]) -> str:
    tokens: list[str] = []
    for address in addresses:
        if tokens:
            tokens[-1] += ","
        tokens.extend(_format_address(address, _first_room(name) if not tokens else _WORD_MAX))
    return _fold(name, tokens)


def _header_addresses(name: str, value: str) -> list[Address]:
    """Return the addresses of a custom address header, validated."""
    return [
        parse_address(f"{n} <{a}>" if n else a, field=f"header {name!r}", allow_local=True)
        for n, a in getaddresses([value])
    ]


def header_lines(msg: ValidatedMessage, message_id: str, date: str) -> list[str]:
    """Return the message's header lines (folded, without the final CRLF), MIME-Version last."""
    # A custom header named like one the renderer writes replaces it.
    custom = {
        name.lower(): (name, value) for name, value in msg.headers if name.lower() in _REPLACEABLE
    }
    out: list[str] = []

    def address_header(name: str, addresses: tuple[Address, ...]) -> None:
        override = custom.get(name.lower())
        if override is not None:
            out.append(_address_header(override[0], _header_addresses(*override)))
        elif addresses:
            out.append(_address_header(name, addresses))

    address_header("From", (msg.from_address,))
    address_header("To", msg.to)
    address_header("Cc", msg.cc)
    address_header("Reply-To", msg.reply_to)
    subject = custom.get("subject", ("Subject", msg.subject))
    out.append(_unstructured(subject[0], subject[1]))
    date_header = custom.get("date", ("Date", date))
    out.append(_unstructured(date_header[0], date_header[1]))
    mid = custom.get("message-id", ("Message-ID", message_id))
    out.append(_unstructured(mid[0], mid[1]))
    # Every other custom header, each one: two names that differ only in
    # case are two header lines (as Django writes them), never one lost.
    for name, value in msg.headers:
        lower = name.lower()
        if lower in _REPLACEABLE:
            continue
        if lower in _ADDRESS_HEADERS:
            out.append(_address_header(name, _header_addresses(name, value)))
        elif lower in _URI_HEADERS and value.isascii() and not _CONTROL.search(value):
            out.append(_fold(name, value.split(" ")))
        else:
            out.append(_unstructured(name, value))
    out.append("MIME-Version: 1.0")
    return out
