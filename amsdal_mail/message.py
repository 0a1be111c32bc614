"""Messages as validated data: :class:`EmailMessage`, :class:`Attachment`, addresses.

No I/O happens here. Every value that ends up in a header or in an SMTP
command is checked when the message is built (and again before it is sent,
since the lists are mutable): CR, LF and NUL are refused everywhere they could
start a new header line or command, and addresses are validated, never
"repaired".
"""

from __future__ import annotations

import mimetypes
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .exceptions import InvalidAddressError, InvalidMessageError

if TYPE_CHECKING:
    from .status import SendStatus

__all__ = ["Address", "Alternative", "Attachment", "EmailMessage", "RawPart", "parse_address"]

_FORBIDDEN = re.compile(r"[\r\n\0]")
_LINE_BREAK = re.compile(rb"\r\n|\r|\n")
# RFC 5322 atext, plus non-ASCII (RFC 6531) for internationalised local parts.
_LOCAL_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~\u0080-\U0010ffff]+")
_ASCII_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
# One search or match per address instead of a loop per character or label:
# whitespace (\s is exactly str.isspace) or a special no bare address holds,
# a whole dot-atom local part, a whole ASCII domain.
_ADDRESS_SPECIALS = re.compile(r'[\s<>,;"()\\]')
_DOT_ATOM = re.compile(rf"{_LOCAL_ATOM.pattern}(?:\.{_LOCAL_ATOM.pattern})*")
_ASCII_DOMAIN = re.compile(rf"{_ASCII_LABEL.pattern}(?:\.{_ASCII_LABEL.pattern})*")
# The common case, a bare ASCII ``local@domain`` that passes every check
# below except the two length limits, recognised in one match.
_ASCII_ATOM = r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+"
_PLAIN_ADDRESS = re.compile(
    rf"({_ASCII_ATOM}(?:\.{_ASCII_ATOM})*)@({_ASCII_LABEL.pattern}(?:\.{_ASCII_LABEL.pattern})*)"
)
_HEADER_NAME = re.compile(r"[!-9;-~]+")  # printable ASCII except ':' and space
_RENDERER_HEADERS = frozenset(
    {"mime-version", "content-type", "content-transfer-encoding", "content-disposition"}
)


def normalize_line_endings(data: bytes) -> bytes:
    """Return ``data`` with every CR, LF and CRLF turned into CRLF."""
    return _LINE_BREAK.sub(b"\r\n", data)


def _check_text(value: object, field_name: str, *, allow_newlines: bool = False) -> str:
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


@dataclass(frozen=True, slots=True)
class Address:
    """A parsed, validated e-mail address.

    ``addr_spec`` is the address as written (used as the key in statuses);
    ``envelope`` is the form used in SMTP commands (IDN domain as punycode).
    """

    display_name: str
    local_part: str
    domain: str

    @property
    def addr_spec(self) -> str:
        """Return ``local@domain`` as written (or the bare local name)."""
        return f"{self.local_part}@{self.domain}" if self.domain else self.local_part

    @property
    def ascii_domain(self) -> str:
        """Return the domain with IDN labels encoded as punycode."""
        if self.domain.isascii():
            return self.domain
        return ".".join(
            label if label.isascii() else "xn--" + label.lower().encode("punycode").decode()
            for label in self.domain.split(".")
        )

    @property
    def envelope(self) -> str:
        """Return the address for ``MAIL FROM`` / ``RCPT TO``."""
        return f"{self.local_part}@{self.ascii_domain}" if self.domain else self.local_part

    @property
    def needs_smtputf8(self) -> bool:
        """Return True when the local part is non-ASCII (RFC 6531 SMTPUTF8 needed)."""
        return not self.local_part.isascii()

    def __str__(self) -> str:
        if self.display_name:
            return f'"{self.display_name}" <{self.addr_spec}>'
        return self.addr_spec


def _invalid(field_name: str, value: str, why: str) -> InvalidAddressError:
    return InvalidAddressError(
        f"invalid address in {field_name}: {value!r} ({why})", field=field_name, address=value
    )


def _parse_domain(domain: str, field_name: str, value: str) -> None:
    if not domain:
        raise _invalid(field_name, value, "the domain after '@' is missing")
    if domain.startswith("["):
        if not re.fullmatch(r"\[(?:[0-9.]+|IPv6:[0-9A-Fa-f:.]+)\]", domain):
            raise _invalid(field_name, value, "malformed domain literal")
        return
    if len(domain) > 253:
        raise _invalid(field_name, value, "the domain is longer than 253 characters")
    if domain.isascii() and _ASCII_DOMAIN.fullmatch(domain):
        return
    for label in domain.split("."):
        if not label:
            raise _invalid(field_name, value, "the domain has an empty label")
        if label.isascii():
            if not _ASCII_LABEL.fullmatch(label):
                raise _invalid(field_name, value, f"the domain label {label!r} is not valid")
            continue
        try:
            encoded = label.encode("idna")
        except UnicodeError as exc:
            raise _invalid(field_name, value, f"the domain label {label!r} is not valid") from exc
        if len(encoded) > 63:
            raise _invalid(field_name, value, f"the domain label {label!r} is too long")


def parse_address(
    value: str | Address, *, field: str = "address", allow_local: bool = False
) -> Address:
    """Parse ``addr@domain`` or ``Display Name <addr@domain>`` into an :class:`Address`.

    ``allow_local`` accepts a bare local name without ``@`` (``root``), as a
    local MTA does. Raises :class:`InvalidAddressError` naming ``field``.
    """
    if isinstance(value, Address):
        return value
    plain = _PLAIN_ADDRESS.fullmatch(value) if type(value) is str else None
    if plain is not None:
        local, domain = plain.groups()
        if len(local) <= 64 and len(domain) <= 253:
            return Address("", local, domain)
    if not isinstance(value, str):
        raise InvalidAddressError(
            f"{field} must hold addresses as str, not {type(value).__name__}: {value!r}",
            field=field,
            address=repr(value),
        )
    if _FORBIDDEN.search(value):
        raise _invalid(field, value, "contains a line break or NUL character")
    text = value.strip()
    display = ""
    addr = text
    if text.endswith(">") and "<" in text:
        cut = text.rindex("<")
        display, addr = text[:cut].strip(), text[cut + 1 : -1].strip()
        if len(display) >= 2 and display[0] == display[-1] == '"':
            display = re.sub(r"\\(.)", r"\1", display[1:-1])
        if "<" in display or ">" in display:
            raise _invalid(field, value, "more than one <address>")
    if not addr:
        raise _invalid(field, value, "empty address")
    if _ADDRESS_SPECIALS.search(addr):
        raise _invalid(field, value, "spaces or special characters in the address")
    if addr.count("@") != 1:
        if "@" not in addr and allow_local:
            if not _LOCAL_ATOM.fullmatch(addr.replace(".", "x")):
                raise _invalid(field, value, "malformed local name")
            return Address(display, addr, "")
        why = "no '@'" if "@" not in addr else "more than one '@'"
        raise _invalid(field, value, why)
    local, domain = addr.split("@")
    if not local:
        raise _invalid(field, value, "the local part before '@' is missing")
    if len(local.encode()) > 64:
        raise _invalid(field, value, "the local part is longer than 64 octets")
    if local.startswith(".") or local.endswith(".") or ".." in local:
        raise _invalid(field, value, "misplaced '.' in the local part")
    if not _DOT_ATOM.fullmatch(local):  # the dots were checked just above
        raise _invalid(field, value, "characters not allowed in the local part")
    _parse_domain(domain, field, value)
    return Address(display, local, domain)


def _address_list(
    values: str | Iterable[str | Address] | None, field_name: str, allow_local: bool
) -> list[Address]:
    if values is None:
        return []
    if isinstance(values, (str, Address)):
        values = [values]
    return [parse_address(v, field=field_name, allow_local=allow_local) for v in values]


def _guess_mimetype(filename: str | None) -> str:
    if filename:
        guessed, _ = mimetypes.guess_type(filename, strict=False)
        if guessed:
            return guessed
    return "application/octet-stream"


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file attached to a message.

    ``content`` is bytes (sent byte for byte) or str (sent as UTF-8).
    ``mimetype`` is guessed from ``filename`` when omitted. ``content_id``
    makes it an inline part, referenced as ``cid:<content_id>`` from the HTML
    body and placed with it in a multipart/related part.
    """

    filename: str | None
    content: bytes | str
    mimetype: str | None = None
    content_id: str | None = None

    def __post_init__(self) -> None:
        if self.filename is not None:
            _check_text(self.filename, "attachment filename")
        if not isinstance(self.content, (bytes, bytearray, memoryview, str)):
            raise InvalidMessageError(
                f"attachment {self.filename!r}: content must be bytes or str, "
                f"not {type(self.content).__name__}",
                field="attachments",
            )
        if isinstance(self.content, (bytearray, memoryview)):
            object.__setattr__(self, "content", bytes(self.content))
        mimetype = self.mimetype or _guess_mimetype(self.filename)
        _check_text(mimetype, "attachment mimetype")
        if not re.fullmatch(r"[\w.+-]+/[\w.+-]+", mimetype):
            raise InvalidMessageError(
                f"attachment {self.filename!r}: mimetype must look like 'type/subtype', "
                f"got {mimetype!r}",
                field="attachments",
            )
        object.__setattr__(self, "mimetype", mimetype.lower())
        if self.content_id is not None:
            cid = _check_text(self.content_id, "attachment content_id").strip()
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
    attachment. Line endings are normalised to CRLF; a line longer than 998
    octets, or a NUL, is refused.
    """

    data: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.data, bytes):
            raise InvalidMessageError("RawPart.data must be bytes", field="attachments")
        data = normalize_line_endings(self.data)
        if not data.endswith(b"\r\n"):
            data += b"\r\n"
        if b"\0" in data:
            raise InvalidMessageError("a raw MIME part contains a NUL byte", field="attachments")
        if b"\r\n\r\n" not in data and not data.startswith(b"\r\n"):
            raise InvalidMessageError(
                "a raw MIME part needs headers, a blank line, then its body", field="attachments"
            )
        if any(len(line) > 998 for line in data.split(b"\r\n")):
            raise InvalidMessageError(
                "a raw MIME part has a line longer than 998 octets", field="attachments"
            )
        object.__setattr__(self, "data", data)


@dataclass(frozen=True, slots=True)
class Alternative:
    """Another rendering of the body (beyond text and HTML), e.g. ``text/calendar``."""

    content: str | bytes
    mimetype: str

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[\w.+-]+/[\w.+-]+", _check_text(self.mimetype, "alternative")):
            raise InvalidMessageError(
                f"alternative mimetype must look like 'type/subtype', got {self.mimetype!r}",
                field="alternatives",
            )


@dataclass(frozen=True, slots=True)
class ValidatedMessage:
    """The checked, parsed form of an :class:`EmailMessage`, ready to render."""

    subject: str
    body: str
    html_body: str | None
    from_address: Address
    to: tuple[Address, ...]
    cc: tuple[Address, ...]
    reply_to: tuple[Address, ...]
    recipients: tuple[Address, ...]  # to + cc + bcc, each address once
    headers: tuple[tuple[str, str], ...]
    attachments: tuple[Attachment | RawPart, ...]
    alternatives: tuple[Alternative, ...]
    content_subtype: str
    mixed_subtype: str | None
    encoding: str

    @property
    def needs_smtputf8(self) -> bool:
        """Return True when any envelope address has a non-ASCII local part."""
        return self.from_address.needs_smtputf8 or any(a.needs_smtputf8 for a in self.recipients)


class EmailMessage:
    """One e-mail: who it is from and to, what it says, what it carries.

    Addresses may be ``addr@domain`` or ``Display Name <addr@domain>``;
    ``to``/``cc``/``bcc``/``reply_to`` accept one string or a list. Everything
    is validated on construction and again when sent; invalid input raises
    :class:`~amsdal_mail.InvalidMessageError` (an ``InvalidAddressError`` for
    addresses) naming the field, and nothing is sent.

    Keyword-only extras: ``alternatives`` (other renderings of the body),
    ``content_subtype`` (``"html"`` sends ``body`` itself as text/html),
    ``mixed_subtype`` (when given, the parts are laid out as Django lays them
    out: body and alternatives in one multipart/alternative, every attachment
    in one ``multipart/<mixed_subtype>`` after them, and an empty body left
    out when there are alternatives or attachments),
    ``encoding`` (charset of text parts, default utf-8) and
    ``allow_local_addresses`` (accept bare local names such as ``root``).

    After sending, :attr:`status` holds this message's own
    :class:`~amsdal_mail.SendStatus`.
    """

    def __init__(
        self,
        subject: str = "",
        body: str = "",
        from_email: str | None = None,
        to: str | Sequence[str] | None = None,
        cc: str | Sequence[str] | None = None,
        bcc: str | Sequence[str] | None = None,
        reply_to: str | Sequence[str] | None = None,
        attachments: Sequence[Attachment | RawPart] | None = None,
        headers: Mapping[str, str] | None = None,
        html_body: str | None = None,
        *,
        alternatives: Sequence[Alternative] | None = None,
        content_subtype: str = "plain",
        mixed_subtype: str | None = None,
        encoding: str = "utf-8",
        allow_local_addresses: bool = False,
    ) -> None:
        self.subject = subject
        self.body = body
        self.from_email = from_email
        self.to: list[str] = _as_list(to)
        self.cc: list[str] = _as_list(cc)
        self.bcc: list[str] = _as_list(bcc)
        self.reply_to: list[str] = _as_list(reply_to)
        self.attachments: list[Attachment | RawPart] = list(attachments or [])
        self.headers: dict[str, str] = dict(headers or {})
        self.html_body = html_body
        self.alternatives: list[Alternative] = list(alternatives or [])
        self.content_subtype = content_subtype
        self.mixed_subtype = mixed_subtype
        self.encoding = encoding
        self.allow_local_addresses = allow_local_addresses
        #: This message's own send status, set after each send attempt.
        self.status: SendStatus | None = None
        self.validate()

    #: The last validate() result and the snapshot of the fields it was made from.
    _validated: tuple[tuple[object, ...], ValidatedMessage] | None = None

    def __repr__(self) -> str:
        return (
            f"EmailMessage(subject={self.subject!r}, from_email={self.from_email!r}, "
            f"to={self.to!r}, cc={self.cc!r}, bcc={self.bcc!r}, "
            f"attachments={len(self.attachments)})"
        )

    def validate(self) -> ValidatedMessage:
        """Check every field and return the parsed form.

        The result is kept and returned again while every field is the same
        object (lists and the headers compared item by item), so the checks
        at construction, before a batch and before sending run once for an
        unchanged message; any change is checked afresh.

        Raises :class:`~amsdal_mail.InvalidMessageError` naming the first bad field.
        """
        snapshot = self._snapshot()
        kept = self._validated
        if snapshot is not None and kept is not None and kept[0] == snapshot:
            return kept[1]
        valid = self._validate()
        if snapshot is not None:
            self._validated = (snapshot, valid)
        return valid

    def _snapshot(self) -> tuple[object, ...] | None:
        """Return every field validate() reads, or None when a cached result can't be trusted.

        Only values whose content cannot change behind an unchanged identity
        qualify: exact ``str`` (not a subclass or a lazy object whose text
        may change), ``Address``, the frozen part classes, ``None``, ``bool``.
        """
        fields = (
            self.subject,
            self.body,
            self.from_email,
            self.html_body,
            self.content_subtype,
            self.mixed_subtype,
            self.encoding,
        )
        for value in fields:
            if value is not None and type(value) is not str:
                return None
        if type(self.allow_local_addresses) is not bool:
            return None
        lists: list[tuple[object, ...]] = []
        address_fields: tuple[object, ...] = (self.to, self.cc, self.bcc, self.reply_to)
        for values in address_fields:
            if type(values) is str or values is None:
                lists.append((values,))
                continue
            if not isinstance(values, (list, tuple)) or type(values) not in (list, tuple):
                # Any other iterable (a generator, a custom sequence) may not
                # read the same twice.
                return None
            items: tuple[object, ...] = tuple(values)
            for item in items:
                if type(item) not in (str, Address):
                    return None
            lists.append(items)
        parts = tuple(self.attachments) if type(self.attachments) in (list, tuple) else None
        alternatives = (
            tuple(self.alternatives) if type(self.alternatives) in (list, tuple) else None
        )
        if parts is None or alternatives is None or type(self.headers) is not dict:
            return None
        for part in parts:
            if type(part) is not Attachment and type(part) is not RawPart:
                return None
        for alternative in alternatives:
            if type(alternative) is not Alternative:
                return None
        headers = tuple(self.headers.items())
        for name, value in headers:
            if type(name) is not str or type(value) is not str:
                return None
        return (
            fields,
            self.allow_local_addresses,
            *lists,
            parts,
            alternatives,
            headers,
        )

    def _validate(self) -> ValidatedMessage:
        local = self.allow_local_addresses
        subject = _check_text(self.subject, "subject")
        body = _check_text(self.body, "body", allow_newlines=True)
        html = None
        if self.html_body is not None:
            html = _check_text(self.html_body, "html_body", allow_newlines=True)
        if not self.from_email:
            raise InvalidMessageError("from_email is required", field="from_email")
        if not isinstance(self.from_email, str):
            raise InvalidMessageError(
                f"from_email must be a str, not {type(self.from_email).__name__}",
                field="from_email",
            )
        from_address = parse_address(self.from_email, field="from_email", allow_local=local)
        to = _address_list(self.to, "to", local)
        cc = _address_list(self.cc, "cc", local)
        bcc = _address_list(self.bcc, "bcc", local)
        reply_to = _address_list(self.reply_to, "reply_to", local)
        seen: set[str] = set()
        recipients: list[Address] = []
        for address in (*to, *cc, *bcc):
            key = address.envelope.lower()
            if key not in seen:
                seen.add(key)
                recipients.append(address)
        if not recipients:
            raise InvalidMessageError("the message has no recipients (to, cc, bcc)", field="to")
        headers = []
        for name, value in self.headers.items():
            if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name) or len(name) > 200:
                raise InvalidMessageError(
                    f"header name {name!r} is not valid "
                    "(1-200 printable ASCII characters, no ':' or spaces)",
                    field="headers",
                )
            if name.lower() in _RENDERER_HEADERS:
                raise InvalidMessageError(
                    f"header {name!r} is set by the renderer and cannot be given in headers",
                    field="headers",
                )
            headers.append((name, _check_text(str(value), f"header {name!r}")))
        for attachment in self.attachments:
            if not isinstance(attachment, (Attachment, RawPart)):
                raise InvalidMessageError(
                    "attachments must be Attachment or RawPart objects, "
                    f"not {type(attachment).__name__}",
                    field="attachments",
                )
        for alternative in self.alternatives:
            if not isinstance(alternative, Alternative):
                raise InvalidMessageError(
                    f"alternatives must be Alternative objects, not {type(alternative).__name__}",
                    field="alternatives",
                )
        if not re.fullmatch(r"[a-z0-9.+-]+", str(self.content_subtype)):
            raise InvalidMessageError(
                f"content_subtype must be a MIME subtype such as 'plain' or 'html', "
                f"got {self.content_subtype!r}",
                field="content_subtype",
            )
        if self.mixed_subtype is not None and not re.fullmatch(
            r"[a-z0-9.+-]+", str(self.mixed_subtype)
        ):
            raise InvalidMessageError(
                f"mixed_subtype must be a MIME subtype, got {self.mixed_subtype!r}",
                field="mixed_subtype",
            )
        try:
            "".encode(self.encoding)
        except (LookupError, TypeError) as exc:
            raise InvalidMessageError(
                f"encoding {self.encoding!r} is not a known charset", field="encoding"
            ) from exc
        return ValidatedMessage(
            subject=subject,
            body=body,
            html_body=html,
            from_address=from_address,
            to=tuple(to),
            cc=tuple(cc),
            reply_to=tuple(reply_to),
            recipients=tuple(recipients),
            headers=tuple(headers),
            attachments=tuple(self.attachments),
            alternatives=tuple(self.alternatives),
            content_subtype=self.content_subtype,
            mixed_subtype=self.mixed_subtype,
            encoding=self.encoding,
        )

    def recipients(self) -> list[str]:
        """Return every recipient address (to, cc, bcc) once, as written."""
        return [a.addr_spec for a in self.validate().recipients]


def _as_list(value: str | Sequence[str] | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return list(value)
