"""The body: text and binary parts, multiparts, and the two part layouts.

A part is its content type and its byte chunks. No chunk ends inside a
CRLF, and a text part ends where its text ends: the CRLF before a boundary
delimiter belongs to the delimiter (RFC 2046 5.1.1), so nothing is added to a
body that does not end with a line break.
"""

from __future__ import annotations

import binascii
import codecs
import re
import secrets
from collections.abc import Sequence
from urllib.parse import quote

from ..message import Alternative, Attachment, RawPart, ValidatedMessage

__all__ = ["Base64Slice", "body_parts", "materialized"]

CRLF = b"\r\n"
_MAX_LINE = 76  # base64 line length (RFC 2045 6.8)
_MAX_8BIT_LINE = 998  # RFC 5322 2.1.1, what 8bit text may hold per line
_LINE_BREAKS = re.compile(r"\r\n|\r|\n")
_TOKEN_SAFE = re.compile(r"[A-Za-z0-9!#$%&'*+\-.^_`{|}~ ]*")
# Input bytes per base64 chunk: whole 76-character lines (57 bytes each), about
# 1.2 MB encoded, so a large attachment never exists as one encoded copy plus
# a list of its lines; the transport sends the chunks one after another.
_BASE64_SLICE = 57 * 16384

#: A MIME part: its content type and the byte chunks that make it.
_Part = tuple[str, list[bytes]]


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


class Base64Slice:
    """A chunk of a large attachment, base64-encoded only when it is written.

    It stands for the bytes ``bytes(chunk)`` gives (whole 76-character lines,
    each ending with CRLF) and knows their length without making them, so a
    large attachment never exists encoded in full: the transport makes one
    slice at a time (about 1.2 MB) as it writes. Base64 holds no dot, so it
    needs no dot-stuffing, and it ends with a line break.
    """

    __slots__ = ("_data", "_size")

    def __init__(self, data: memoryview) -> None:
        self._data = data
        groups = -(-len(data) // 3) * 4  # encoded characters
        self._size = groups + 2 * -(-groups // _MAX_LINE)  # and a CRLF per line

    def __len__(self) -> int:
        return self._size

    def __bytes__(self) -> bytes:
        return _base64_slice(self._data)

    def __repr__(self) -> str:
        return f"<Base64Slice of {len(self._data)} bytes, {self._size} encoded>"

    def endswith(self, suffix: bytes) -> bool:
        """Like ``bytes.endswith``: the encoded slice ends with CRLF."""
        return CRLF.endswith(suffix)

    def startswith(self, prefix: bytes) -> bool:
        """Like ``bytes.startswith`` (a base64 line never starts with a dot)."""
        return bytes(self).startswith(prefix)

    @staticmethod
    def isascii() -> bool:
        """Base64 is ASCII."""
        return True


def materialized(chunks: list[bytes]) -> list[bytes]:
    """Return ``chunks`` with every :class:`Base64Slice` made into its bytes."""
    return [bytes(c) if isinstance(c, Base64Slice) else c for c in chunks]


def _base64_lines(data: bytes) -> list[bytes]:
    """Return ``data`` base64-encoded in CRLF-terminated lines of 76 characters, as chunks.

    Beyond one slice the chunks are :class:`Base64Slice` values, encoded when written.
    """
    if len(data) <= _BASE64_SLICE:
        return [_base64_slice(data)]
    view = memoryview(data)
    return [
        Base64Slice(view[start : start + _BASE64_SLICE])  # type: ignore[misc]
        for start in range(0, len(data), _BASE64_SLICE)
    ]


def _base64_slice(data: bytes | memoryview) -> bytes:
    encoded = binascii.b2a_base64(data, newline=False)
    if len(encoded) <= _MAX_LINE:
        return encoded + CRLF
    lines = [encoded[i : i + _MAX_LINE] for i in range(0, len(encoded), _MAX_LINE)]
    lines.append(b"")
    return CRLF.join(lines)


def _short_lines(data: bytes) -> bool:
    return len(data) <= _MAX_8BIT_LINE or all(
        len(line) <= _MAX_8BIT_LINE for line in data.split(b"\n")
    )


def _text_body(text: str, charset: str) -> tuple[str, bytes]:
    """Return (Content-Transfer-Encoding, encoded body) for a text part.

    As Django writes it: 7bit for ASCII, 8bit for UTF-8 text, both with
    lines of at most 998 octets; quoted-printable otherwise (longer lines,
    or non-ASCII in another charset).
    """
    data = _LINE_BREAKS.sub("\n", text).encode(charset)
    if _short_lines(data):
        if data.isascii():
            return "7bit", data.replace(b"\n", CRLF)
        if codecs.lookup(charset).name == "utf-8":
            return "8bit", data.replace(b"\n", CRLF)
    qp = binascii.b2a_qp(data, quotetabs=False, istext=True, header=False)
    return "quoted-printable", qp.replace(b"\n", CRLF)


def _text_part(text: str, subtype: str, charset: str) -> _Part:
    cte, body = _text_body(text, charset)
    head = f'Content-Type: text/{subtype}; charset="{charset}"\r\nContent-Transfer-Encoding: {cte}'
    chunks = [head.encode("ascii") + CRLF + CRLF]
    if body:
        chunks.append(body)
    return f"text/{subtype}", chunks


def _attachment_part(att: Attachment | RawPart, *, inline: bool, charset: str) -> _Part:
    if isinstance(att, RawPart):
        return "", [att.data]
    lines = [f"Content-Type: {att.mimetype}"]
    text_content = str(att.mimetype).startswith("text/") and isinstance(att.content, str)
    if text_content:
        # Text attachments use the message's charset, as its text parts do.
        lines[0] += f'; charset="{charset}"'
    disposition = "inline" if inline else "attachment"
    if att.filename is not None:
        disposition += ";\r\n " + _param("filename", att.filename)
    lines.append("Content-Disposition: " + disposition)
    if att.content_id:
        lines.append(f"Content-ID: <{att.content_id}>")
    if isinstance(att.content, str) and text_content:
        cte, body = _text_body(att.content, charset)
        bodies = [body] if body else []
    else:
        cte, bodies = "base64", _base64_lines(att.data)
    lines.append("Content-Transfer-Encoding: " + cte)
    return str(att.mimetype), ["\r\n".join(lines).encode("utf-8") + CRLF + CRLF, *bodies]


def _alternative_part(alt: Alternative, charset: str) -> _Part:
    main, _, sub = alt.mimetype.partition("/")
    if main == "text" and isinstance(alt.content, str):
        return _text_part(alt.content, sub, charset)
    data = alt.content.encode(charset) if isinstance(alt.content, str) else alt.content
    head = f"Content-Type: {alt.mimetype}\r\nContent-Transfer-Encoding: base64"
    return alt.mimetype, [head.encode("ascii") + CRLF + CRLF, *_base64_lines(data)]


def _multipart(subtype: str, parts: Sequence[_Part], *, collapse: bool = True) -> _Part:
    """Return a multipart of ``parts``; with ``collapse``, a lone part stands alone.

    multipart/related names its root's type (RFC 2387 3.1).
    """
    if collapse and len(parts) == 1 and subtype != "mixed":
        return parts[0]
    boundary = "===============" + secrets.token_hex(12)
    params = f' type="{parts[0][0]}";' if subtype == "related" and parts[0][0] else ""
    # Each delimiter after a part starts with the CRLF that ends the part's
    # last line (RFC 2046 5.1.1), so a part keeps exactly its own line breaks.
    first = f"--{boundary}\r\n".encode("ascii")
    delimiter = f"\r\n--{boundary}\r\n".encode("ascii")
    head = f'Content-Type: multipart/{subtype};{params}\r\n boundary="{boundary}"\r\n\r\n'
    out = [head.encode("ascii")]
    for index, (_, chunks) in enumerate(parts):
        out.append(delimiter if index else first)
        out.extend(chunks)
    out.append(f"\r\n--{boundary}--\r\n".encode("ascii"))
    return f"multipart/{subtype}", out


def _html_texts(msg: ValidatedMessage) -> list[str]:
    """Return every HTML rendering of the body (where ``cid:`` references live)."""
    texts = [msg.html_body] if msg.html_body is not None else []
    if msg.content_subtype == "html":
        texts.append(msg.body)
    for alternative in msg.alternatives:
        if alternative.mimetype.lower() == "text/html":
            content = alternative.content
            texts.append(content if isinstance(content, str) else content.decode("latin-1"))
    return texts


def _referenced(part: Attachment | RawPart, html: Sequence[str]) -> bool:
    """Return True when an HTML rendering references ``part`` by ``cid:`` (RFC 2392)."""
    cid = part.content_id
    if not cid:
        return False
    wanted = {f"cid:{cid}".lower(), f"cid:{quote(cid, safe='@')}".lower()}
    return any(word in text.lower() for text in html for word in wanted)


def _django_layout(msg: ValidatedMessage) -> _Part:
    """Lay the parts out as Django's ``EmailMessage.message()`` does.

    The body and every alternative form one multipart/alternative (even when
    only one of them is left); every attachment follows, in order, in one
    ``multipart/<mixed_subtype>``. An empty body is left out when there are
    alternatives or attachments, as Django leaves it out. Parts the HTML
    references by ``cid:`` go with the body into multipart/related (RFC 2387)
    instead, unless the attachments' multipart is multipart/related already.
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
    attachments = msg.attachments
    if msg.mixed_subtype != "related" and bodies:
        html = _html_texts(msg)
        related = [a for a in attachments if _referenced(a, html)]
        if related:
            bodies = [_multipart("related", [*bodies, *_parts(related, charset, inline=True)])]
            moved = {id(a) for a in related}
            attachments = tuple(a for a in attachments if id(a) not in moved)
    if not attachments:
        return bodies[0]
    return _multipart(msg.mixed_subtype, [*bodies, *_parts(attachments, charset)], collapse=False)


def _parts(
    parts: Sequence[Attachment | RawPart], charset: str, *, inline: bool | None = None
) -> list[_Part]:
    """Return the MIME parts of attachments; ``inline`` None: inline when they have a cid."""
    out = []
    for part in parts:
        is_inline = inline
        if is_inline is None:
            is_inline = isinstance(part, Attachment) and part.content_id is not None
        out.append(_attachment_part(part, inline=is_inline, charset=charset))
    return out


def _standard_layout(msg: ValidatedMessage) -> _Part:
    """Text, HTML and alternatives; inline parts in related; attachments in mixed."""
    charset = msg.encoding
    alternatives = [_text_part(msg.body, msg.content_subtype, charset)]
    if msg.html_body is not None:
        alternatives.append(_text_part(msg.html_body, "html", charset))
    alternatives.extend(_alternative_part(a, charset) for a in msg.alternatives)
    body = _multipart("alternative", alternatives)
    if not msg.attachments:
        return body
    html = _html_texts(msg)
    inline = [
        a
        for a in msg.attachments
        if (isinstance(a, Attachment) and a.content_id is not None) or _referenced(a, html)
    ]
    moved = {id(a) for a in inline}
    regular = [a for a in msg.attachments if id(a) not in moved]
    if inline:
        body = _multipart("related", [body, *_parts(inline, charset, inline=True)])
    if regular:
        body = _multipart(msg.mixed_subtype, [body, *_parts(regular, charset, inline=False)])
    return body


def body_parts(msg: ValidatedMessage) -> list[bytes]:
    """Return the chunks of the message's body part, in the message's layout."""
    part = _django_layout(msg) if msg.layout == "django" else _standard_layout(msg)
    return part[1]
