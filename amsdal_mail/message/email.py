"""The message: :class:`EmailMessage`, checked into a :class:`ValidatedMessage` before sending.

No I/O happens here. Every value that ends up in a header or in an SMTP
command is checked when the message is built and again by :meth:`validate`
(the lists are mutable), which a send calls once per message: CR, LF and NUL
are refused everywhere they could start a new header line or command.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from ..exceptions import InvalidMessageError
from .addresses import Address, address_list, parse_address
from .dsn import DSN
from .parts import Alternative, Attachment, RawPart, check_text

if TYPE_CHECKING:
    from ..status import SendStatus

__all__ = ["EmailMessage", "Layout", "ValidatedMessage"]

#: How the renderer arranges the parts; see :class:`EmailMessage`.
Layout = Literal["standard", "django"]
_LAYOUTS: frozenset[str] = frozenset({"standard", "django"})
_HEADER_NAME = re.compile(r"[!-9;-~]+")  # printable ASCII except ':' and space
_SUBTYPE = re.compile(r"[a-z0-9.+-]+")
_RENDERER_HEADERS = frozenset(
    {"mime-version", "content-type", "content-transfer-encoding", "content-disposition"}
)
_UNSUBSCRIBE_HEADERS = frozenset({"list-unsubscribe", "list-unsubscribe-post"})
_UNSUBSCRIBE_SCHEMES = ("https://", "http://", "mailto:")
_URI_MAX = 900  # one URI per folded line, within the 998-octet line limit
#: RFC 8058: the body of the one-click POST, announced with an https URI.
ONE_CLICK = "List-Unsubscribe=One-Click"


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
    mixed_subtype: str
    encoding: str
    layout: Layout = "standard"
    #: The message's own DSN request (the backend fills in what it leaves out).
    dsn: DSN | None = None
    #: The message's own envelope sender (wins over the backend's ``return_path``).
    return_path: Address | None = None

    @property
    def needs_smtputf8(self) -> bool:
        """Return True when any envelope address has a non-ASCII local part."""
        return self.from_address.needs_smtputf8 or any(a.needs_smtputf8 for a in self.recipients)


class EmailMessage:
    """One e-mail: who it is from and to, what it says, what it carries.

        Addresses may be ``addr@domain`` or ``Display Name <addr@domain>``;
        ``to``/``cc``/``bcc``/``reply_to`` accept one string or a list. Everything
        is validated on construction and again by :meth:`validate`, which each
        send calls once; invalid input raises
        :class:`~amsdal_mail.InvalidMessageError` (an ``InvalidAddressError`` for
        addresses) naming the field, and nothing is sent.

        Keyword-only extras: ``alternatives`` (other renderings of the body),
        ``content_subtype`` (``"html"`` sends ``body`` itself as text/html),
        ``mixed_subtype`` (the subtype of the multipart that holds the
        attachments, default ``"mixed"``), ``encoding`` (charset of text parts,
        default utf-8), ``allow_local_addresses`` (accept bare local names such
        as ``root``), ``dsn`` (a :class:`~amsdal_mail.DSN`: delivery status
        notifications to ask for, over the backend's ``dsn_notify`` / ``dsn_ret``),
        ``unsubscribe`` (an ``https://`` or ``mailto:`` URI, or a list of them:
        adds ``List-Unsubscribe``, and for an https URI ``List-Unsubscribe-Post:
        List-Unsubscribe=One-Click`` as RFC 8058 says; not together with such
        headers in ``headers``), ``return_path`` (the envelope sender, MAIL FROM,
    where bounces go; wins over the backend's ``return_path``) and ``layout``:

        - ``"standard"`` (the default): text and HTML (and other alternatives) in
          multipart/alternative; attachments with a ``content_id`` beside it in
          multipart/related; the other attachments after that in
          ``multipart/<mixed_subtype>``.
        - ``"django"``: the parts as Django's ``EmailMessage.message()`` lays them
          out, for messages converted from Django: body and alternatives in one
          multipart/alternative, every attachment after it in order in one
          ``multipart/<mixed_subtype>``, an empty body left out when there are
          alternatives or attachments. Only inline parts that the HTML references
          by ``cid:`` move into multipart/related with the body (RFC 2387).

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
        layout: Layout = "standard",
        dsn: DSN | None = None,
        unsubscribe: str | Sequence[str] | None = None,
        return_path: str | None = None,
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
        self.layout: Layout = layout
        self.dsn = dsn
        self.unsubscribe = unsubscribe
        self.return_path = return_path
        #: This message's own send status, set after each send attempt.
        self.status: SendStatus | None = None
        self.validate()

    def __repr__(self) -> str:
        return (
            f"EmailMessage(subject={self.subject!r}, from_email={self.from_email!r}, "
            f"to={self.to!r}, cc={self.cc!r}, bcc={self.bcc!r}, "
            f"attachments={len(self.attachments)})"
        )

    def validate(self) -> ValidatedMessage:
        """Check every field afresh and return the parsed form.

        Raises :class:`~amsdal_mail.InvalidMessageError` naming the first bad field.
        """
        local = self.allow_local_addresses
        subject = check_text(self.subject, "subject")
        body = check_text(self.body, "body", allow_newlines=True)
        html = None
        if self.html_body is not None:
            html = check_text(self.html_body, "html_body", allow_newlines=True)
        if not self.from_email:
            raise InvalidMessageError("from_email is required", field="from_email")
        if not isinstance(self.from_email, str):
            raise InvalidMessageError(
                f"from_email must be a str, not {type(self.from_email).__name__}",
                field="from_email",
            )
        from_address = parse_address(self.from_email, field="from_email", allow_local=local)
        to = address_list(self.to, "to", local)
        cc = address_list(self.cc, "cc", local)
        bcc = address_list(self.bcc, "bcc", local)
        reply_to = address_list(self.reply_to, "reply_to", local)
        return ValidatedMessage(
            subject=subject,
            body=body,
            html_body=html,
            from_address=from_address,
            to=tuple(to),
            cc=tuple(cc),
            reply_to=tuple(reply_to),
            recipients=_unique((*to, *cc, *bcc)),
            headers=self._checked_headers() + self._unsubscribe_headers(),
            attachments=self._checked_parts(),
            alternatives=self._checked_alternatives(),
            content_subtype=_subtype(self.content_subtype, "content_subtype"),
            mixed_subtype=_subtype(self.mixed_subtype or "mixed", "mixed_subtype"),
            encoding=self._checked_encoding(),
            layout=self._checked_layout(),
            dsn=self._checked_dsn(),
            return_path=(
                parse_address(self.return_path, field="return_path", allow_local=local)
                if self.return_path
                else None
            ),
        )

    def recipients(self) -> list[str]:
        """Return every recipient address (to, cc, bcc) once, as written."""
        return [a.addr_spec for a in self.validate().recipients]

    def _checked_headers(self) -> tuple[tuple[str, str], ...]:
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
            headers.append((name, check_text(str(value), f"header {name!r}")))
        return tuple(headers)

    def _checked_dsn(self) -> DSN | None:
        if self.dsn is not None and not isinstance(self.dsn, DSN):
            raise InvalidMessageError(
                f"dsn must be an amsdal_mail.DSN, not {type(self.dsn).__name__}", field="dsn"
            )
        return self.dsn

    def _unsubscribe_headers(self) -> tuple[tuple[str, str], ...]:
        """Return the List-Unsubscribe headers of ``unsubscribe`` (RFC 2369, RFC 8058)."""
        value = self.unsubscribe
        if value is None:
            return ()
        uris = [value] if isinstance(value, str) else list(value)
        if not uris:
            return ()
        given = [name for name in self.headers if name.lower() in _UNSUBSCRIBE_HEADERS]
        if given:
            raise InvalidMessageError(
                f"unsubscribe and the header {given[0]!r} in headers both set the "
                "unsubscribe link; give only one of them",
                field="unsubscribe",
            )
        for uri in uris:
            _check_uri(uri)
        headers = [("List-Unsubscribe", ", ".join(f"<{uri}>" for uri in uris))]
        if any(uri.lower().startswith("https://") for uri in uris):
            headers.append(("List-Unsubscribe-Post", ONE_CLICK))
        return tuple(headers)

    def _checked_parts(self) -> tuple[Attachment | RawPart, ...]:
        parts = tuple(self.attachments)
        for part in parts:
            if not isinstance(part, (Attachment, RawPart)):
                raise InvalidMessageError(
                    f"attachments must be Attachment or RawPart objects, not {type(part).__name__}",
                    field="attachments",
                )
        return parts

    def _checked_alternatives(self) -> tuple[Alternative, ...]:
        alternatives = tuple(self.alternatives)
        for alternative in alternatives:
            if not isinstance(alternative, Alternative):
                raise InvalidMessageError(
                    f"alternatives must be Alternative objects, not {type(alternative).__name__}",
                    field="alternatives",
                )
        return alternatives

    def _checked_encoding(self) -> str:
        try:
            "".encode(self.encoding)
        except (LookupError, TypeError) as exc:
            raise InvalidMessageError(
                f"encoding {self.encoding!r} is not a known charset", field="encoding"
            ) from exc
        return self.encoding

    def _checked_layout(self) -> Layout:
        layout = self.layout
        if layout not in _LAYOUTS:
            raise InvalidMessageError(
                f"layout must be 'standard' or 'django', got {layout!r}", field="layout"
            )
        return layout


def _check_uri(uri: object) -> None:
    """Refuse an unsubscribe URI that is not a plain https, http or mailto URI."""
    if not isinstance(uri, str):
        raise InvalidMessageError(
            f"unsubscribe must be a URI string or a list of them, not {type(uri).__name__}",
            field="unsubscribe",
        )
    scheme_ok = uri.lower().startswith(_UNSUBSCRIBE_SCHEMES)
    rest = uri.partition(":")[2].lstrip("/")
    if (
        not scheme_ok
        or not rest
        or not uri.isascii()
        or any(c in uri for c in "<>, ")
        or any(ord(c) < 33 or ord(c) == 127 for c in uri)
        or len(uri) > _URI_MAX
    ):
        raise InvalidMessageError(
            f"unsubscribe URI {uri!r} is not valid: use an https:// URL (one-click, RFC 8058) "
            f"or a mailto: address, ASCII without spaces, '<', '>' or ',', at most "
            f"{_URI_MAX} characters (percent-encode the rest)",
            field="unsubscribe",
        )


def _subtype(value: object, field_name: str) -> str:
    if not isinstance(value, str) or not _SUBTYPE.fullmatch(value):
        raise InvalidMessageError(
            f"{field_name} must be a MIME subtype such as 'plain', 'html' or 'mixed', "
            f"got {value!r}",
            field=field_name,
        )
    return value


def _unique(addresses: tuple[Address, ...]) -> tuple[Address, ...]:
    """Return each envelope address once (compared case-insensitively), first as written."""
    seen: set[str] = set()
    unique: list[Address] = []
    for address in addresses:
        key = address.envelope.lower()
        if key not in seen:
            seen.add(key)
            unique.append(address)
    if not unique:
        raise InvalidMessageError("the message has no recipients (to, cc, bcc)", field="to")
    return tuple(unique)


def _as_list(value: str | Sequence[str] | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return list(value)
