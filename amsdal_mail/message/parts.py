"""What a message carries besides its text: attachments, ready-made parts, alternatives."""

from __future__ import annotations

import mimetypes
import os
import re
from dataclasses import dataclass, field

from ..exceptions import InvalidMessageError

__all__ = ["Alternative", "Attachment", "RawPart", "check_text", "normalize_line_endings"]

_FORBIDDEN = re.compile(r"[\r\n\0]")
_LINE_BREAK = re.compile(rb"\r\n|\r|\n")
_MIMETYPE = re.compile(r"[\w.+-]+/[\w.+-]+")
# The Content-ID header of a raw part's header section (folded lines joined).
_RAW_CONTENT_ID = re.compile(rb"(?im)^content-id:[ \t]*<?([^\s<>]+)>?[ \t]*\r?$")


def normalize_line_endings(data: bytes) -> bytes:
    """Return ``data`` with every CR, LF and CRLF turned into CRLF."""
    return _LINE_BREAK.sub(b"\r\n", data)


def check_text(value: object, field_name: str, *, allow_newlines: bool = False) -> str:
    """Return ``value`` if it is a str safe for its place, else raise naming the field."""
    if not isinstance(value, str):
        raise InvalidMessageError(
            f"{field_name} must be a str, not {type(value).__name__}", field=field_name
        )
    if allow_newlines:
        if "\0" in value:
            raise InvalidMessageError(f"{field_name} contains a NUL character", field=field_name)
    elif _FORBIDDEN.search(value):
        raise InvalidMessageError(
            f"{field_name} contains a line break or NUL character, which could inject "
            f"headers: {value!r}",
            field=field_name,
        )
    return value


def _guess_mimetype(filename: str | None) -> str:
    if filename:
        guessed, _ = mimetypes.guess_type(filename, strict=False)
        if guessed:
            return guessed
    return "application/octet-stream"


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file attached to a message.

    ``content`` is bytes (sent byte for byte) or str (a ``text/*`` one in the
    message's charset, any other as UTF-8). ``mimetype`` is guessed from ``filename`` when omitted.
    ``content_id`` makes it an inline part, referenced as ``cid:<content_id>``
    from the HTML body and placed with it in a multipart/related part.
    """

    filename: str | None
    content: bytes | str
    mimetype: str | None = None
    content_id: str | None = None

    def __post_init__(self) -> None:
        if self.filename is not None:
            check_text(self.filename, "attachment filename")
        if not isinstance(self.content, (bytes, bytearray, memoryview, str)):
            raise InvalidMessageError(
                f"attachment {self.filename!r}: content must be bytes or str, "
                f"not {type(self.content).__name__}",
                field="attachments",
            )
        if isinstance(self.content, (bytearray, memoryview)):
            object.__setattr__(self, "content", bytes(self.content))
        mimetype = self.mimetype or _guess_mimetype(self.filename)
        check_text(mimetype, "attachment mimetype")
        if not _MIMETYPE.fullmatch(mimetype):
            raise InvalidMessageError(
                f"attachment {self.filename!r}: mimetype must look like 'type/subtype', "
                f"got {mimetype!r}",
                field="attachments",
            )
        object.__setattr__(self, "mimetype", mimetype.lower())
        if self.content_id is not None:
            cid = check_text(self.content_id, "attachment content_id").strip()
            if cid.startswith("<") and cid.endswith(">"):
                cid = cid[1:-1]
            if not cid or any(c in cid for c in "<> \t") or not cid.isascii():
                raise InvalidMessageError(
                    f"attachment content_id must be a non-empty ASCII token without spaces "
                    f"or angle brackets, got {self.content_id!r}",
                    field="attachments",
                )
            object.__setattr__(self, "content_id", cid)

    @classmethod
    def from_path(
        cls,
        path: str | os.PathLike[str],
        mimetype: str | None = None,
        content_id: str | None = None,
    ) -> Attachment:
        """Return an attachment with the content and name of the file at ``path``."""
        with open(path, "rb") as f:
            content = f.read()
        return cls(os.path.basename(os.fspath(path)), content, mimetype, content_id)

    @property
    def data(self) -> bytes:
        """Return the content as bytes (str content encoded as UTF-8)."""
        content = self.content
        return content.encode("utf-8") if isinstance(content, str) else content

    def __repr__(self) -> str:
        return (
            f"Attachment(filename={self.filename!r}, mimetype={self.mimetype!r}, "
            f"size={len(self.data)}, content_id={self.content_id!r})"
        )


@dataclass(frozen=True, slots=True)
class RawPart:
    """A ready-made MIME part (its headers, a blank line, its body), attached as is.

    For content another library already built, such as a Django ``MIMEBase``
    attachment. Line endings are normalised to CRLF and nothing else changes
    (no line break is added at the end); a line longer than 998 octets, or a
    NUL, is refused. :attr:`content_id` is the part's own Content-ID header
    (without angle brackets), if it has one: an HTML body that references it
    as ``cid:`` gets it beside itself in multipart/related.
    """

    data: bytes
    content_id: str | None = field(init=False, default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.data, bytes):
            raise InvalidMessageError("RawPart.data must be bytes", field="attachments")
        data = normalize_line_endings(self.data)
        if b"\0" in data:
            raise InvalidMessageError("a raw MIME part contains a NUL byte", field="attachments")
        head, blank, _ = data.partition(b"\r\n\r\n")
        if data.startswith(b"\r\n"):
            head = b""  # no headers at all: a blank line, then the body
        elif not blank:
            raise InvalidMessageError(
                "a raw MIME part needs headers, a blank line, then its body", field="attachments"
            )
        if any(len(line) > 998 for line in data.split(b"\r\n")):
            raise InvalidMessageError(
                "a raw MIME part has a line longer than 998 octets", field="attachments"
            )
        object.__setattr__(self, "data", data)
        found = _RAW_CONTENT_ID.search(re.sub(rb"\r\n[ \t]+", b" ", head))
        if found is not None and found.group(1).isascii():
            object.__setattr__(self, "content_id", found.group(1).decode("ascii"))


@dataclass(frozen=True, slots=True)
class Alternative:
    """Another rendering of the body (beyond text and HTML), e.g. ``text/calendar``."""

    content: str | bytes
    mimetype: str

    def __post_init__(self) -> None:
        if not _MIMETYPE.fullmatch(check_text(self.mimetype, "alternative")):
            raise InvalidMessageError(
                f"alternative mimetype must look like 'type/subtype', got {self.mimetype!r}",
                field="alternatives",
            )
