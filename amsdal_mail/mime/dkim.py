"""DKIM signing (RFC 6376) of rendered messages, with dkimpy (extra ``[dkim]``).

:class:`DKIMSigner` checks its key when it is made, so a bad key is a
:class:`~amsdal_mail.ConfigurationError` when the backend is built, not at
the first send. :meth:`DKIMSigner.sign` takes the rendered chunks and returns
them with a ``DKIM-Signature`` header in front: the signature covers exactly
those bytes (relaxed/relaxed canonicalization), and the chunks themselves are
passed on uncopied, so what is sent is what was signed. The algorithm follows
the key: ``rsa-sha256`` for an RSA key (PKCS#1 or PKCS#8 PEM, at least 1024
bits), ``ed25519-sha256`` for an Ed25519 one (PKCS#8 PEM, RFC 8463).

Signed, when present: :data:`SIGNED_HEADERS` (From always).
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import TYPE_CHECKING, Any, Final

from ..exceptions import ConfigurationError, MissingDependencyError

if TYPE_CHECKING:
    from ..config import SMTPSettings

__all__ = ["SIGNED_HEADERS", "DKIMSigner", "signer_from_settings"]

#: The header fields signed when the message has them, in this order.
SIGNED_HEADERS: Final = (
    "From",
    "To",
    "Cc",
    "Reply-To",
    "Subject",
    "Date",
    "Message-ID",
    "MIME-Version",
    "Content-Type",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
)
_CRLF = b"\r\n"
_PEM = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----\s*(.*?)\s*-----END \1-----", re.DOTALL)
# DER of a PKCS#8 Ed25519 private key (RFC 8410) up to the 32-byte seed.
_ED25519_PKCS8 = bytes.fromhex("302e020100300506032b657004220420")
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?")
_MIN_RSA_BITS = 1024
_PROBE = b"From: probe@example.com\r\nSubject: probe\r\n\r\nprobe\r\n"


def _dkim() -> Any:
    try:
        import dkim  # type: ignore[import-untyped,unused-ignore]
    except ImportError as exc:  # pragma: no cover - the extra is installed in the tests
        raise MissingDependencyError(
            "DKIM signing needs dkimpy: pip install 'amsdal-mail[dkim]'"
        ) from exc
    return dkim


def _check_name(value: str, what: str) -> str:
    labels = value.rstrip(".").split(".")
    if not value.isascii() or not all(_LABEL.fullmatch(label) for label in labels):
        raise ConfigurationError(
            f"{what} must be a DNS name of ASCII labels (an IDN domain in its xn-- form), "
            f"got {value!r}"
        )
    return value.rstrip(".")


def _parse_key(pem: str | bytes, where: str) -> tuple[bytes, bytes]:
    """Return (signature algorithm, key in dkimpy's form) for a PEM private key."""
    text = pem.decode("ascii", "replace") if isinstance(pem, bytes) else pem
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    match = _PEM.search(text)
    if match is None:
        raise ConfigurationError(
            f"{where} is not a PEM private key (no '-----BEGIN ... PRIVATE KEY-----' block)"
        )
    kind, body = match.group(1), match.group(2)
    if "ENCRYPTED" in kind or "Proc-Type: 4,ENCRYPTED" in body:
        raise ConfigurationError(
            f"{where} is an encrypted private key; give it unencrypted "
            "(openssl pkey -in key.pem -out plain.pem)"
        )
    if kind not in ("RSA PRIVATE KEY", "PRIVATE KEY"):
        raise ConfigurationError(
            f"{where} holds a PEM '{kind}' block; DKIM needs an RSA or Ed25519 private key"
        )
    try:
        der = base64.b64decode("".join(body.split()), validate=True)
    except binascii.Error as exc:
        raise ConfigurationError(f"{where}: the PEM block is not valid base64 ({exc})") from None
    if kind == "PRIVATE KEY" and der.startswith(_ED25519_PKCS8) and len(der) == 48:
        return b"ed25519-sha256", base64.b64encode(der[len(_ED25519_PKCS8) :])
    dkim = _dkim()
    try:
        parsed = dkim.crypto.parse_private_key(der)
    except Exception as exc:
        raise ConfigurationError(
            f"{where} is neither an RSA (PKCS#1 or PKCS#8) nor an Ed25519 (PKCS#8) "
            f"private key: {exc}"
        ) from None
    bits = int(parsed["modulus"]).bit_length()
    if bits < _MIN_RSA_BITS:
        raise ConfigurationError(
            f"{where} is a {bits}-bit RSA key; DKIM verifiers refuse keys under "
            f"{_MIN_RSA_BITS} bits (2048 is usual)"
        )
    return b"rsa-sha256", text.encode("ascii")


def _header_names(data: bytes) -> list[str]:
    """Return the names of the header fields of the rendered message ``data``, lower case."""
    end = data.find(b"\r\n\r\n")
    head = data if end < 0 else data[:end]
    names = []
    for line in head.split(_CRLF):
        if line and line[:1] not in (b" ", b"\t"):
            names.append(line.split(b":", 1)[0].strip().decode("ascii", "replace").lower())
    return names


class DKIMSigner:
    """Signs rendered messages with one DKIM key (relaxed/relaxed).

    ``private_key`` is the PEM text of an RSA or Ed25519 private key; the
    algorithm follows from it (:attr:`algorithm`). ``where`` names the key's
    source in error messages. The key never appears in a repr.

    Raises:
        ConfigurationError: the selector, the domain or the key is unusable.
        MissingDependencyError: dkimpy (extra ``[dkim]``) is not installed.
    """

    def __init__(
        self,
        *,
        selector: str,
        domain: str,
        private_key: str | bytes,
        where: str = "dkim_private_key",
    ) -> None:
        self._dkim = _dkim()
        self.selector = _check_name(selector, "dkim_selector")
        self.domain = _check_name(domain, "dkim_domain")
        algorithm, self._key = _parse_key(private_key, where)
        #: ``rsa-sha256`` or ``ed25519-sha256``.
        self.algorithm = algorithm.decode("ascii")
        self._algorithm = algorithm
        try:
            self._signature(_PROBE, [b"from", b"subject"])
        except Exception as exc:
            raise ConfigurationError(f"{where} cannot sign: {exc}") from None

    def __repr__(self) -> str:
        return f"<DKIMSigner d={self.domain} s={self.selector} a={self.algorithm}>"

    def _signature(self, data: bytes, headers: list[bytes]) -> bytes:
        signature: bytes = self._dkim.sign(
            data,
            self.selector.encode("ascii"),
            self.domain.encode("ascii"),
            self._key,
            canonicalize=(b"relaxed", b"relaxed"),
            signature_algorithm=self._algorithm,
            include_headers=headers,
        )
        return signature

    def sign(self, chunks: list[bytes]) -> list[bytes]:
        """Return ``chunks`` with a ``DKIM-Signature`` header first, signed over exactly them.

        A message that does not end with a line break gets one (as a last
        chunk), so the signed bytes are the bytes the DATA command sends.
        """
        data = b"".join(chunks)
        out = list(chunks)
        if not data.endswith(_CRLF):
            data += _CRLF
            out.append(_CRLF)
        present = set(_header_names(data))
        headers = [name.encode("ascii") for name in SIGNED_HEADERS if name.lower() in present]
        return [self._signature(data, headers), *out]


def signer_from_settings(settings: SMTPSettings) -> DKIMSigner | None:
    """Return the signer the DKIM settings describe, or None when DKIM is not configured.

    The settings hold ``dkim_selector``, ``dkim_domain`` and ``dkim_private_key``
    or ``dkim_private_key_file`` (checked to be complete when resolved); the
    key file is read here.

    Raises:
        ConfigurationError: the key file cannot be read, or the key is unusable.
        MissingDependencyError: dkimpy (extra ``[dkim]``) is not installed.
    """
    selector, domain = settings.dkim_selector, settings.dkim_domain
    key: str | bytes | None = settings.dkim_private_key
    key_file = settings.dkim_private_key_file
    if not (selector and domain and (key or key_file)):
        return None
    where = "dkim_private_key"
    if not key:
        where = f"dkim_private_key_file {key_file!r}"
        try:
            with open(str(key_file), "rb") as handle:
                key = handle.read()
        except OSError as exc:
            raise ConfigurationError(f"cannot read {where}: {exc.strerror or exc}") from None
    return DKIMSigner(selector=selector, domain=domain, private_key=key, where=where)
