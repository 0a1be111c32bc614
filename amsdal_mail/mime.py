"""Render a validated message to RFC 5322 bytes.

The renderer writes MIME directly instead of going through
``email.message``: it is several times faster, it can hand large
attachments to the transport as separate chunks instead of copying them into
one buffer, and every line it produces is known to be CRLF-terminated and at
most 998 octets. Output is what ``email.message_from_bytes`` parses back to an
equal message (the tests check this for generated messages).

:func:`render_chunks` returns a list of byte chunks, each ending with CRLF,
so the transport can dot-stuff and send them one by one; :func:`render`
joins them.
"""

from __future__ import annotations

import binascii
import re
import secrets
import time
from collections.abc import Iterable
from email.utils import formatdate, getaddresses
from urllib.parse import quote

from .message import (
    Address,
    Alternative,
    Attachment,
    EmailMessage,
    RawPart,
    ValidatedMessage,
    parse_address,
)

__all__ = ["make_message_id", "render", "render_chunks"]

CRLF = b"\r\n"
_MAX_LINE = 76  # soft limit for lines we fold ourselves (RFC 5322 asks for 78)
_ADDRESS_HEADERS = frozenset({"from", "to", "cc", "reply-to", "sender", "bcc"})
_REPLACEABLE = frozenset({"from", "to", "cc", "reply-to", "subject", "date", "message-id"})
_NEEDS_QUOTING = re.compile(r'[()<>\[\]:;@\\,."]')
_LINE_BREAKS = re.compile(r"\r\n|\r|\n")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # every control character but TAB
_TOKEN_SAFE = re.compile(r"[A-Za-z0-9!#$%&'*+\-.^_`{|}~ ]*")


_date_cache: tuple[int, str] = (-1, "")


def _current_date() -> str:
    """Return ``formatdate(localtime=True)``, made once per second rather than per message."""
    global _date_cache
    now = time.time()
    second, text = _date_cache
    if int(now) != second:
        text = formatdate(now, localtime=True)
        _date_cache = (int(now), text)
    return text


def make_message_id(domain: str | None = None) -> str:
    """Return a new, globally unique ``<...@domain>`` Message-ID (no DNS look-up)."""
    stamp = int(time.time() * 1000)
    return f"<{stamp}.{secrets.token_hex(10)}@{domain or 'localhost'}>"


# --- headers -----------------------------------------------------------------


def _encoded_words(text: str) -> list[str]:
    """Return RFC 2047 base64 encoded-words for ``text``, each at most 75 characters.

    Characters are never split across words, as RFC 2047 requires.
    """
    words: list[str] = []
    chunk = bytearray()
    for ch in text:
        b = ch.encode("utf-8")
        if len(chunk) + len(b) > 45:
            words.append("=?utf-8?b?" + binascii.b2a_base64(chunk, newline=False).decode() + "?=")
            chunk = bytearray()
        chunk += b
    if chunk or not words:
        words.append("=?utf-8?b?" + binascii.b2a_base64(chunk, newline=False).decode() + "?=")
    return words


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
        return _fold(name, _encoded_words(value))
    if len(name) + 2 + len(value) <= _MAX_LINE:
        return f"{name}: {value}"  # what _fold makes of a line it need not break
    return _fold(name, value.split(" "))


def _format_address(address: Address) -> list[str]:
    """Return the tokens of one address as it appears in a header."""
    spec = (
        f"<{address.local_part}@{address.ascii_domain}>" if address.domain else address.local_part
    )
    name = address.display_name
    if not name:
        return [spec[1:-1] if address.domain else spec]
    if _needs_encoding(name):
        return [*_encoded_words(name), spec]
    if _NEEDS_QUOTING.search(name):
        escaped = name.replace("\\", "\\\\").replace('"', '\\"')
        return [f'"{escaped}"', spec]
    return [*name.split(" "), spec]


def _address_header(name: str, addresses: Iterable[Address]) -> str:
    tokens: list[str] = []
    for address in addresses:
        if tokens:
            tokens[-1] += ","
        tokens.extend(_format_address(address))
    return _fold(name, tokens)


def _header_addresses(name: str, value: str) -> list[Address]:
    """Return the addresses of a custom address header, validated."""
    return [
        parse_address(f"{n} <{a}>" if n else a, field=f"header {name!r}", allow_local=True)
        for n, a in getaddresses([value])
    ]


def _header_lines(msg: ValidatedMessage, message_id: str, date: str) -> list[str]:
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
        else:
            out.append(_unstructured(name, value))
    out.append("MIME-Version: 1.0")
    return out


# --- bodies --------------------------------------------------------------------


def _param(name: str, value: str) -> str:
    """Return a MIME parameter, RFC 2231-encoded (with continuations) when needed."""
    if value.isascii() and _TOKEN_SAFE.fullmatch(value) and len(value) <= 60:
        return f'{name}="{value}"'
    encoded = quote(value, safe="")
    if len(encoded) <= 60:
        return f"{name}*=utf-8''{encoded}"
    pieces: list[str] = []
    start = 0
    while start < len(encoded):
        end = min(start + 60, len(encoded))
        # Never split a %XX escape across two continuations.
        pct = encoded.rfind("%", max(start, end - 2), end)
        if pct != -1 and end < len(encoded):
            end = pct
        pieces.append(encoded[start:end])
        start = end
    params = [f"{name}*0*=utf-8''{pieces[0]}"]
    params += [f"{name}*{i}*={p}" for i, p in enumerate(pieces[1:], start=1)]
    return ";\r\n ".join(params)


# Input bytes per base64 chunk: whole 76-character lines (57 bytes each), about
# 1.2 MB encoded, so a large attachment never exists as one encoded copy plus
# a list of its lines; the transport sends the chunks one after another.
_BASE64_SLICE = 57 * 16384


def _base64_lines(data: bytes) -> list[bytes]:
    """Return ``data`` base64-encoded in CRLF-terminated lines of 76 characters, as chunks."""
    if len(data) <= _BASE64_SLICE:
        return [_base64_slice(data)]
    view = memoryview(data)
    return [
        _base64_slice(view[start : start + _BASE64_SLICE])
        for start in range(0, len(data), _BASE64_SLICE)
    ]


def _base64_slice(data: bytes | memoryview) -> bytes:
    encoded = binascii.b2a_base64(data, newline=False)
    if len(encoded) <= _MAX_LINE:
        return encoded + CRLF
    lines = [encoded[i : i + _MAX_LINE] for i in range(0, len(encoded), _MAX_LINE)]
    lines.append(b"")
    return CRLF.join(lines)


def _text_body(text: str, charset: str) -> tuple[str, bytes]:
    """Return (Content-Transfer-Encoding, encoded body) for a text part."""
    text = _LINE_BREAKS.sub("\n", text)
    data = text.encode(charset)
    if data.isascii() and all(len(line) <= 998 for line in data.split(b"\n")):
        body = data.replace(b"\n", CRLF)
        return "7bit", body if body.endswith(CRLF) else body + CRLF
    qp = binascii.b2a_qp(data, quotetabs=False, istext=True, header=False)
    body = qp.replace(b"\n", CRLF)
    return "quoted-printable", body if body.endswith(CRLF) else body + CRLF


def _text_part(text: str, subtype: str, charset: str) -> list[bytes]:
    cte, body = _text_body(text, charset)
    head = f'Content-Type: text/{subtype}; charset="{charset}"\r\nContent-Transfer-Encoding: {cte}'
    return [head.encode("ascii") + CRLF + CRLF, body]


def _attachment_part(att: Attachment | RawPart, *, inline: bool, charset: str) -> list[bytes]:
    if isinstance(att, RawPart):
        return [att.data]
    lines = [f"Content-Type: {att.mimetype}"]
    main, _, sub = str(att.mimetype).partition("/")
    text_content = main == "text" and isinstance(att.content, str)
    if text_content:
        # Text attachments use the message's charset, as its text parts do.
        lines[0] += f'; charset="{charset}"'
    disposition = "inline" if inline else "attachment"
    if att.filename is not None:
        disposition += ";\r\n " + _param("filename", att.filename)
    lines.append("Content-Disposition: " + disposition)
    if att.content_id:
        lines.append(f"Content-ID: <{att.content_id}>")
    if text_content:
        assert isinstance(att.content, str)
        cte, body = _text_body(att.content, charset)
        bodies = [body]
    else:
        cte, bodies = "base64", _base64_lines(att.data)
    lines.append("Content-Transfer-Encoding: " + cte)
    return ["\r\n".join(lines).encode("utf-8") + CRLF + CRLF, *bodies]


def _alternative_part(alt: Alternative, charset: str) -> list[bytes]:
    main, _, sub = alt.mimetype.partition("/")
    if main == "text" and isinstance(alt.content, str):
        return _text_part(alt.content, sub, charset)
    data = alt.content.encode(charset) if isinstance(alt.content, str) else alt.content
    head = f"Content-Type: {alt.mimetype}\r\nContent-Transfer-Encoding: base64"
    return [head.encode("ascii") + CRLF + CRLF, *_base64_lines(data)]


def _multipart(subtype: str, parts: list[list[bytes]], *, collapse: bool = True) -> list[bytes]:
    """Return a multipart of ``parts``; with ``collapse``, a lone part stands alone."""
    if collapse and len(parts) == 1 and subtype != "mixed":
        return parts[0]
    boundary = "===============" + secrets.token_hex(12)
    # The CRLF before a delimiter belongs to the delimiter (RFC 2046 5.1.1), so
    # each one after a part starts with an extra CRLF; otherwise a part would
    # lose the line break it ends with.
    first = f"--{boundary}\r\n".encode("ascii")
    delimiter = f"\r\n--{boundary}\r\n".encode("ascii")
    out = [f'Content-Type: multipart/{subtype};\r\n boundary="{boundary}"\r\n\r\n'.encode("ascii")]
    for index, part in enumerate(parts):
        out.append(delimiter if index else first)
        out.extend(part)
    out.append(f"\r\n--{boundary}--\r\n".encode("ascii"))
    return out


def _is_inline(part: Attachment | RawPart) -> bool:
    return isinstance(part, Attachment) and part.content_id is not None


def _django_layout(msg: ValidatedMessage, mixed_subtype: str) -> list[bytes]:
    """Lay the parts out as Django's ``EmailMessage.message()`` does.

    The body and every alternative form one multipart/alternative (even when
    only one of them is left); every attachment follows, in order, in one
    ``multipart/<mixed_subtype>``. An empty body is left out when there are
    alternatives or attachments, as Django leaves it out.
    """
    charset = msg.encoding
    others = [_alternative_part(a, charset) for a in msg.alternatives]
    if msg.html_body is not None:
        others.insert(0, _text_part(msg.html_body, "html", charset))
    bodies = others
    if msg.body or not (others or msg.attachments):
        bodies = [_text_part(msg.body, msg.content_subtype, charset), *others]
    if others:
        bodies = [_multipart("alternative", bodies, collapse=False)]
    if not msg.attachments:
        return bodies[0]
    parts = bodies + [
        _attachment_part(a, inline=_is_inline(a), charset=charset) for a in msg.attachments
    ]
    return _multipart(mixed_subtype, parts, collapse=False)


def _body_parts(msg: ValidatedMessage) -> list[bytes]:
    if msg.mixed_subtype is not None:
        return _django_layout(msg, msg.mixed_subtype)
    charset = msg.encoding
    main = _text_part(msg.body, msg.content_subtype, charset)
    alternatives = [main]
    if msg.html_body is not None:
        alternatives.append(_text_part(msg.html_body, "html", charset))
    alternatives.extend(_alternative_part(a, charset) for a in msg.alternatives)
    body = _multipart("alternative", alternatives) if len(alternatives) > 1 else main
    inline = [a for a in msg.attachments if _is_inline(a)]
    regular = [a for a in msg.attachments if not _is_inline(a)]
    if inline:
        parts = [_attachment_part(a, inline=True, charset=charset) for a in inline]
        body = _multipart("related", [body, *parts])
    if regular:
        parts = [_attachment_part(a, inline=False, charset=charset) for a in regular]
        body = _multipart("mixed", [body, *parts])
    return body


# --- whole messages ------------------------------------------------------------


def render_chunks(
    message: EmailMessage | ValidatedMessage,
    *,
    message_id: str | None = None,
    date: str | None = None,
) -> list[bytes]:
    """Return the message as RFC 5322 byte chunks, each ending with CRLF.

    ``message_id`` and ``date`` default to a new unique Message-ID and the
    current local time. Bcc never appears in the headers.
    """
    msg = message.validate() if isinstance(message, EmailMessage) else message
    if message_id is None:
        message_id = make_message_id(msg.from_address.ascii_domain or None)
    if date is None:
        date = _current_date()
    head = "\r\n".join(_header_lines(msg, message_id, date)) + "\r\n"
    return [head.encode("utf-8"), *_body_parts(msg)]


def render(
    message: EmailMessage | ValidatedMessage,
    *,
    message_id: str | None = None,
    date: str | None = None,
) -> bytes:
    """Return the whole message as RFC 5322 bytes with CRLF line endings."""
    return b"".join(render_chunks(message, message_id=message_id, date=date))
