"""E-mail addresses: :func:`parse_address` checks one and returns an :class:`Address`.

Addresses are validated, never "repaired": what is accepted is sent exactly
as written (an IDN domain aside, which goes out as punycode). Every refusal is
an :class:`~amsdal_mail.InvalidAddressError` whose text starts with the words
Django's own ``ValueError`` uses, "Invalid address", then says why.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from ..exceptions import InvalidAddressError

__all__ = ["Address", "parse_address"]

_FORBIDDEN = re.compile(r"[\r\n\0]")
# RFC 5322 atext, plus non-ASCII (RFC 6531) for internationalised local parts.
_LOCAL_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~\u0080-\U0010ffff]+")
_ASCII_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
# One search or match per address instead of a loop per character or label:
# whitespace (\s is exactly str.isspace) or a special no bare address holds,
# a whole dot-atom local part, a whole ASCII domain.
_ADDRESS_SPECIALS = re.compile(r'[\s<>,;"()\\]')
_DOT_ATOM = re.compile(rf"{_LOCAL_ATOM.pattern}(?:\.{_LOCAL_ATOM.pattern})*")
_ASCII_DOMAIN = re.compile(rf"{_ASCII_LABEL.pattern}(?:\.{_ASCII_LABEL.pattern})*")
# RFC 5321 Quoted-string: qtextSMTP (printable ASCII and space, but not '"'
# or '\'; RFC 6531 adds non-ASCII) or a quoted-pair ('\' and printable ASCII
# or space). No tab and no control character, so nothing can break a command.
_QUOTED_LOCAL = re.compile(r'"(?:[ !#-\[\]-~\u0080-\U0010ffff]|\\[ -~])*"')
# The common case, a bare ASCII ``local@domain`` that passes every check
# below except the two length limits, recognised in one match.
_ASCII_ATOM = r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+"
_PLAIN_ADDRESS = re.compile(
    rf"({_ASCII_ATOM}(?:\.{_ASCII_ATOM})*)@({_ASCII_LABEL.pattern}(?:\.{_ASCII_LABEL.pattern})*)"
)
_DOMAIN_LITERAL = re.compile(r"\[(?:[0-9.]+|IPv6:[0-9A-Fa-f:.]+)\]")


@dataclass(frozen=True, slots=True)
class Address:
    """A parsed, validated e-mail address.

    ``addr_spec`` is the address as written (used as the key in statuses);
    ``envelope`` is the form used in SMTP commands (IDN domain as punycode).
    A quoted local part (``"john doe"@example.com``) keeps its quotes and
    escapes in both.
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


# parse_address is a pure function of an immutable str: the addresses it
# accepted lately are kept (a bounded memo, emptied when full), so a message
# checked when built and again when sent parses each address once.
_PARSED: dict[tuple[str, bool], Address] = {}
_PARSED_MAX = 4096


def _invalid(field_name: str, value: str, why: str) -> InvalidAddressError:
    return InvalidAddressError(
        f"Invalid address in {field_name}: {value!r} ({why})", field=field_name, address=value
    )


def _check_domain(domain: str, field_name: str, value: str) -> None:
    if not domain:
        raise _invalid(field_name, value, "the domain after '@' is missing")
    if domain.startswith("["):
        if not _DOMAIN_LITERAL.fullmatch(domain):
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


def _angle_start(text: str) -> int:
    """Return the index of the ``<`` that opens the address, ignoring quoted strings."""
    if '"' not in text:
        return text.rindex("<")
    start = -1
    quoted = escaped = False
    for index, char in enumerate(text):
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == "<" and not quoted:
            start = index
    return start if start >= 0 else text.rindex("<")


def _split_local(addr: str, field_name: str, value: str) -> tuple[str, str]:
    """Return (local part, domain) of ``addr``, the local part as written."""
    if addr.startswith('"'):
        quoted = _QUOTED_LOCAL.match(addr)
        if quoted is None:
            raise _invalid(field_name, value, "malformed quoted local part")
        local, rest = quoted.group(), addr[quoted.end() :]
        if not rest.startswith("@"):
            why = "no '@'" if not rest else "characters after the quoted local part"
            raise _invalid(field_name, value, why)
        domain = rest[1:]
        if "@" in domain:
            raise _invalid(field_name, value, "more than one '@'")
        if _ADDRESS_SPECIALS.search(domain):
            raise _invalid(field_name, value, "spaces or special characters in the domain")
        return local, domain
    if _ADDRESS_SPECIALS.search(addr):
        raise _invalid(field_name, value, "spaces or special characters in the address")
    if addr.count("@") != 1:
        raise _invalid(field_name, value, "no '@'" if "@" not in addr else "more than one '@'")
    local, domain = addr.split("@")
    if not local:
        raise _invalid(field_name, value, "the local part before '@' is missing")
    if local.startswith(".") or local.endswith(".") or ".." in local:
        raise _invalid(field_name, value, "misplaced '.' in the local part")
    if not _DOT_ATOM.fullmatch(local):  # the dots were checked just above
        raise _invalid(field_name, value, "characters not allowed in the local part")
    return local, domain


def parse_address(
    value: str | Address, *, field: str = "address", allow_local: bool = False
) -> Address:
    """Parse ``addr@domain`` or ``Display Name <addr@domain>`` into an :class:`Address`.

    The local part may be a dot-atom (``first.last``) or a quoted string
    (``"john..doe"``, ``"john doe"``, with ``\\"`` and ``\\\\`` escapes), kept
    exactly as written. ``allow_local`` accepts a bare local name without
    ``@`` (``root``), as a local MTA does. Raises :class:`InvalidAddressError`
    naming ``field``; its text contains "Invalid address".
    """
    if type(value) is str:  # not a subclass, whose text could change
        key = (value, allow_local)
        parsed = _PARSED.get(key)
        if parsed is None:
            parsed = _parse(value, field, allow_local)
            if len(_PARSED) >= _PARSED_MAX:
                _PARSED.clear()
            _PARSED[key] = parsed
        return parsed
    if isinstance(value, Address):
        return value
    return _parse(value, field, allow_local)


def _parse(value: object, field: str, allow_local: bool) -> Address:
    plain = _PLAIN_ADDRESS.fullmatch(value) if type(value) is str else None
    if plain is not None:
        local, domain = plain.groups()
        if len(local) <= 64 and len(domain) <= 253:
            return Address("", local, domain)
    if not isinstance(value, str):
        raise InvalidAddressError(
            f"Invalid address in {field}: {value!r} "
            f"(addresses must be str, not {type(value).__name__})",
            field=field,
            address=repr(value),
        )
    if _FORBIDDEN.search(value):
        raise _invalid(field, value, "contains a line break or NUL character")
    text = value.strip()
    display = ""
    addr = text
    if text.endswith(">") and "<" in text:
        cut = _angle_start(text)
        display, addr = text[:cut].strip(), text[cut + 1 : -1].strip()
        if len(display) >= 2 and display[0] == display[-1] == '"':
            display = re.sub(r"\\(.)", r"\1", display[1:-1])
        if "<" in display or ">" in display:
            raise _invalid(field, value, "more than one <address>")
    if not addr:
        raise _invalid(field, value, "empty address")
    if allow_local and "@" not in addr and not _ADDRESS_SPECIALS.search(addr):
        if not _LOCAL_ATOM.fullmatch(addr.replace(".", "x")):
            raise _invalid(field, value, "malformed local name")
        return Address(display, addr, "")
    local, domain = _split_local(addr, field, value)
    if len(local.encode()) > 64:
        raise _invalid(field, value, "the local part is longer than 64 octets")
    _check_domain(domain, field, value)
    return Address(display, local, domain)


def address_list(
    values: str | Iterable[str | Address] | None, field_name: str, allow_local: bool
) -> list[Address]:
    """Return every address of ``values`` (one string or several) parsed."""
    if values is None:
        return []
    if isinstance(values, (str, Address)):
        values = [values]
    return [parse_address(v, field=field_name, allow_local=allow_local) for v in values]
