"""VERP: a return path per message and recipient, signed so a bounce names them reliably.

``encode_verp("bounces@example.com", message_key(mid), "alice@example.org", secret)``
gives ``bounces+KEY-SIG-alice=example.org@example.com``: the sender's mailbox
with a tag after ``+`` that holds the message's key (:func:`message_key`, a
short hash of its Message-ID), the recipient (``local=domain``, or ``~`` and
base32 when the address would not fit an atom) and an HMAC-SHA256 signature
over both. :func:`decode_verp` checks the signature and returns a
:class:`VerpToken`; anything forged or altered is a ``ValueError``.

Everything is compared case-insensitively (some servers change the case of
a local part), so the key and signature are lower-case base32 and the
signature covers the recipient in lower case.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from dataclasses import dataclass
from typing import Final

__all__ = [
    "VERP_SECRET_ENV",
    "VerpToken",
    "decode_verp",
    "encode_verp",
    "is_verp",
    "message_key",
    "verp_secret",
]

#: The environment variable the secret is read from when none is given.
VERP_SECRET_ENV: Final = "AMSDAL_EMAIL_VERP_SECRET"
_KEY_LEN: Final = 12  # 60 bits of the Message-ID's SHA-256
_SIG_LEN: Final = 13  # 64 bits of HMAC-SHA256
_ATOM: Final = re.compile(r"[A-Za-z0-9!#$%&'*/?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*/?^_`{|}~-]+)*")
_DOMAIN: Final = re.compile(r"[A-Za-z0-9.-]+")
_TOKEN: Final = re.compile(
    rf"\+([a-z2-7]{{{_KEY_LEN}}})-([a-z2-7]{{{_SIG_LEN}}})-(.+)\Z", re.IGNORECASE | re.DOTALL
)


@dataclass(frozen=True, slots=True)
class VerpToken:
    """What a signed VERP address names: the message (by its key) and the recipient."""

    message_key: str
    recipient: str


def _b32(data: bytes) -> str:
    return base64.b32encode(data).decode("ascii").rstrip("=").lower()


def message_key(message_id: str) -> str:
    """Return the short key of the message with ``message_id`` (angle brackets optional).

    Twelve lower-case base32 characters of the SHA-256 of the Message-ID
    without its angle brackets and surrounding space.
    """
    core = message_id.strip().removeprefix("<").removesuffix(">").strip()
    if not core:
        raise ValueError("message_key needs a Message-ID, got an empty one")
    return _b32(hashlib.sha256(core.encode("utf-8", "surrogateescape")).digest())[:_KEY_LEN]


def verp_secret(secret: str | bytes | None = None) -> bytes:
    """Return ``secret`` as bytes, else the ``AMSDAL_EMAIL_VERP_SECRET`` environment variable.

    Raises ``ValueError`` when neither gives a non-empty secret.
    """
    if secret is None:
        secret = os.environ.get(VERP_SECRET_ENV, "")
    value = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
    if not value:
        raise ValueError(
            f"VERP needs a secret to sign its tokens: pass verp_secret (or set "
            f"{VERP_SECRET_ENV}; in Django SECRET_KEY is used)"
        )
    return value


def _signature(secret: bytes, key: str, recipient: str) -> str:
    text = f"amsdal-verp\0{key.lower()}\0{recipient.lower()}".encode("utf-8", "surrogateescape")
    return _b32(hmac.new(secret, text, hashlib.sha256).digest()[:8])[:_SIG_LEN]


def _encode_recipient(recipient: str) -> str:
    local, at, domain = recipient.rpartition("@")
    if at and _ATOM.fullmatch(local) and _DOMAIN.fullmatch(domain):
        return f"{local}={domain}"
    return "~" + _b32(recipient.encode("utf-8"))


def _decode_recipient(text: str) -> str:
    if text.startswith("~"):
        data = text[1:].upper()
        try:
            return base64.b32decode(data + "=" * (-len(data) % 8)).decode("utf-8")
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"VERP token holds no readable recipient: {text!r}") from exc
    local, eq, domain = text.rpartition("=")
    if not eq or not local or not domain:
        raise ValueError(f"VERP token holds no recipient (local=domain): {text!r}")
    return f"{local}@{domain}"


def encode_verp(return_path: str, key: str, recipient: str, secret: str | bytes | None) -> str:
    """Return the VERP address of ``return_path`` for message ``key`` and ``recipient``.

    ``key`` is :func:`message_key` of the message's Message-ID; ``secret``
    signs the token (None: ``AMSDAL_EMAIL_VERP_SECRET``).
    """
    local, at, domain = return_path.rpartition("@")
    if not at or not local or not domain:
        raise ValueError(f"return_path must be an address (local@domain), got {return_path!r}")
    signature = _signature(verp_secret(secret), key, recipient)
    return f"{local}+{key.lower()}-{signature}-{_encode_recipient(recipient)}@{domain}"


def is_verp(address: str) -> bool:
    """Return True when ``address`` carries a VERP token (signed or not; see decode_verp)."""
    local, at, _domain = address.strip().removeprefix("<").removesuffix(">").rpartition("@")
    return bool(at) and _TOKEN.search(local) is not None


def decode_verp(address: str, *, secret: str | bytes | None = None) -> VerpToken:
    """Return what the VERP ``address`` names, after checking its signature.

    ``address`` may be written with angle brackets. ``secret`` as in
    :func:`encode_verp`.

    Raises:
        ValueError: ``address`` holds no VERP token, or its signature does not
            match (forged, altered, or signed with another secret).
    """
    bare = address.strip().removeprefix("<").removesuffix(">")
    local, at, _domain = bare.rpartition("@")
    match = _TOKEN.search(local) if at else None
    if match is None:
        raise ValueError(f"{address!r} is not a VERP address (local+KEY-SIG-recipient@domain)")
    key, signature, encoded = match.group(1).lower(), match.group(2).lower(), match.group(3)
    recipient = _decode_recipient(encoded)
    expected = _signature(verp_secret(secret), key, recipient)
    if not hmac.compare_digest(expected, signature):
        raise ValueError(f"the VERP token of {address!r} is not signed with this secret")
    return VerpToken(message_key=key, recipient=recipient)
