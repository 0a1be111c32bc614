"""The connection check as pure logic: what to ask the server, in which order, and what it said.

:func:`check_flow` is a generator, like the sending flows of
:mod:`amsdal_mail.smtp.flow`: it yields :data:`ProbeAction` objects
(:class:`Open`, :class:`Ehlo`, :class:`StartTLS`, :class:`Login`,
:class:`Command`, :class:`Quit`), is sent each one's result or has the
:class:`~amsdal_mail.TransportError` it raised thrown in, and returns a
:class:`CheckReport`. The decisions it takes are those of the sending path
(:mod:`amsdal_mail.smtp.handshake`: STARTTLS required with ``use_tls``, the
AUTH mechanism chosen the same way), so a check that passes means sending
will connect the same way. :mod:`amsdal_mail.cli.runner` carries the actions
out over the sync driver's smtplib connection.

The ``--rcpt`` probe is ``MAIL FROM`` and ``RCPT TO`` followed by ``RSET``:
no ``DATA`` is ever sent, so nothing is delivered.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..config import SMTPSettings
from ..exceptions import (
    AuthenticationError,
    ConnectError,
    NotSupportedError,
    ProtocolError,
    TransportError,
)
from ..message.addresses import Address, parse_address
from ..smtp.handshake import OAUTH_MECHANISMS, auth_mechanism, ehlo_features, wants_starttls
from ..smtp.transaction import Envelope, mail_command, rcpt_command
from ..status import SMTPReply
from .diagnose import Diagnosis, diagnose, refused_recipient

__all__ = [
    "STEPS",
    "CertificateInfo",
    "CheckReport",
    "Command",
    "Ehlo",
    "EhloResult",
    "Login",
    "Open",
    "Opened",
    "ProbeAction",
    "Quit",
    "RcptProbe",
    "StartTLS",
    "Step",
    "TLSInfo",
    "check_flow",
    "security_mode",
]

#: The steps of a check, in order (a report names the one that failed).
STEPS = ("configuration", "connect", "ehlo", "starttls", "auth", "mail", "rcpt")
#: A certificate that expires in fewer days than this is worth a warning.
EXPIRY_WARNING_DAYS = 14


# --- what the driver is asked to do -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Open:
    """Connect (implicit TLS: handshake too), read the greeting; answered :class:`Opened`."""


@dataclass(frozen=True, slots=True)
class Ehlo:
    """Say EHLO; answered with an :class:`EhloResult`."""


@dataclass(frozen=True, slots=True)
class StartTLS:
    """Issue STARTTLS and upgrade the connection; answered with the :class:`TLSInfo`."""


@dataclass(frozen=True, slots=True)
class Login:
    """Log in with ``mechanism`` as the settings say; answered with the final :class:`SMTPReply`.

    A refusal is raised by the driver as :class:`~amsdal_mail.AuthenticationError`.
    """

    mechanism: str


@dataclass(frozen=True, slots=True)
class Command:
    """Write one command line (CRLF included); answered with its :class:`SMTPReply`."""

    line: bytes


@dataclass(frozen=True, slots=True)
class Quit:
    """Say QUIT and close (a dead connection is just closed); answered with None."""


ProbeAction = Open | Ehlo | StartTLS | Login | Command | Quit


# --- what the driver answers -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CertificateInfo:
    """The server certificate, as the verified TLS connection presented it."""

    subject: str
    issuer: str
    not_before: dt.datetime | None
    not_after: dt.datetime | None
    #: DNS names and IP addresses the certificate is valid for.
    names: tuple[str, ...] = ()

    def days_left(self, now: dt.datetime) -> int | None:
        """Return the whole days from ``now`` until the certificate expires (None: unknown)."""
        if self.not_after is None:
            return None
        return (self.not_after - now).days

    @classmethod
    def from_peercert(cls, cert: Mapping[str, Any]) -> CertificateInfo:
        """Build from ``ssl.SSLSocket.getpeercert()`` (the dict of a verified certificate)."""
        return cls(
            subject=_dn(cert.get("subject", ())),
            issuer=_dn(cert.get("issuer", ())),
            not_before=_cert_time(cert.get("notBefore")),
            not_after=_cert_time(cert.get("notAfter")),
            names=tuple(str(value) for _, value in cert.get("subjectAltName", ())),
        )

    def as_json(self, now: dt.datetime) -> dict[str, Any]:
        """Return the certificate as JSON-ready values (times in ISO 8601, UTC)."""
        return {
            "subject": self.subject,
            "issuer": self.issuer,
            "not_before": self.not_before.isoformat() if self.not_before else None,
            "not_after": self.not_after.isoformat() if self.not_after else None,
            "days_left": self.days_left(now),
            "names": list(self.names),
        }


def _dn(rdns: Any) -> str:
    """Return a distinguished name from getpeercert()'s nested tuples: ``CN=x, O=y``."""
    short = {"commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU"}
    short |= {"countryName": "C", "localityName": "L", "stateOrProvinceName": "ST"}
    parts = [f"{short.get(key, key)}={value}" for rdn in rdns for key, value in rdn]
    return ", ".join(parts)


def _cert_time(value: object) -> dt.datetime | None:
    """Parse a getpeercert() time (``Jun  1 12:00:00 2030 GMT``) as an aware UTC datetime."""
    if not isinstance(value, str):
        return None
    try:
        parsed = dt.datetime.strptime(value, "%b %d %H:%M:%S %Y %Z")
    except ValueError:
        return None
    return parsed.replace(tzinfo=dt.UTC)


@dataclass(frozen=True, slots=True)
class TLSInfo:
    """The TLS connection: protocol version, cipher and the server's certificate."""

    version: str
    cipher: str
    bits: int | None
    certificate: CertificateInfo | None

    def as_json(self, now: dt.datetime) -> dict[str, Any]:
        """Return the TLS details as JSON-ready values."""
        return {
            "version": self.version,
            "cipher": self.cipher,
            "bits": self.bits,
            "certificate": self.certificate.as_json(now) if self.certificate else None,
        }


@dataclass(frozen=True, slots=True)
class Opened:
    """A connection was made: the greeting, and the TLS details with implicit TLS."""

    greeting: SMTPReply
    #: The address connected to (``ip:port``).
    peer: str
    tls: TLSInfo | None = None


@dataclass(frozen=True, slots=True)
class EhloResult:
    """The reply to EHLO and the extensions it lists (keywords as sent, with parameters)."""

    reply: SMTPReply
    extensions: Mapping[str, str]


# --- the report ---------------------------------------------------------------------------


@dataclass(slots=True)
class Step:
    """One step of the check and how it went."""

    name: str
    ok: bool
    #: One line for people: what the server said or what was found.
    detail: str


@dataclass(slots=True)
class RcptProbe:
    """The ``--rcpt`` probe: MAIL FROM and RCPT TO, then RSET (nothing sent)."""

    recipient: str
    sender: str
    mail_reply: SMTPReply | None = None
    rcpt_reply: SMTPReply | None = None
    rset_reply: SMTPReply | None = None

    @property
    def accepted(self) -> bool:
        """Return True when the server accepted the recipient."""
        return self.rcpt_reply is not None and self.rcpt_reply.is_positive


def security_mode(settings: SMTPSettings) -> str:
    """Return how the connection is protected: ``starttls``, ``ssl`` or ``none``."""
    return "ssl" if settings.use_ssl else "starttls" if settings.use_tls else "none"


@dataclass(slots=True)
class CheckReport:
    """Everything a check found, in the order it was found, and its verdict."""

    host: str
    port: int
    security: str
    username: str | None = None
    steps: list[Step] = field(default_factory=list)
    greeting: SMTPReply | None = None
    peer: str | None = None
    #: The EHLO extensions of the connection as it is used (after STARTTLS when there is one).
    extensions: dict[str, str] = field(default_factory=dict)
    tls: TLSInfo | None = None
    #: The AUTH mechanisms the server offers (when it offers AUTH).
    auth_offered: list[str] = field(default_factory=list)
    auth_mechanism: str | None = None
    auth_reply: SMTPReply | None = None
    rcpt: RcptProbe | None = None
    #: Things that work but deserve attention (no failure).
    warnings: list[str] = field(default_factory=list)
    #: Why the check failed (None when it passed).
    diagnosis: Diagnosis | None = None

    @property
    def ok(self) -> bool:
        """Return True when every step passed."""
        return self.diagnosis is None

    @property
    def exit_code(self) -> int:
        """Return the process exit status (0 ok; the codes are in :mod:`.diagnose`)."""
        return 0 if self.diagnosis is None else self.diagnosis.exit_code

    def passed(self, name: str, detail: str) -> None:
        """Record a step that went well."""
        self.steps.append(Step(name, True, detail))

    def failed(self, name: str, diagnosis: Diagnosis) -> CheckReport:
        """Record the step that failed and why; return the report (the check ends)."""
        self.steps.append(Step(name, False, diagnosis.error))
        self.diagnosis = diagnosis
        return self


# --- the check ------------------------------------------------------------------------------


def check_flow(
    settings: SMTPSettings,
    *,
    rcpt: str | None = None,
    mail_from: str | None = None,
    now: dt.datetime | None = None,
) -> Generator[ProbeAction, object, CheckReport]:
    """Check the server ``settings`` name, step by step; return the report.

    Steps: connect and read the greeting (with ``use_ssl``: the TLS handshake,
    certificate verified), EHLO, STARTTLS with ``use_tls`` (then EHLO again),
    AUTH when a username is set, and with ``rcpt`` the probe MAIL FROM
    (``mail_from``, else the username when it is an address, else the null
    sender ``<>``) and RCPT TO, ended with RSET. The first step that fails
    ends the check (after QUIT when the connection is still up) and is the
    report's :attr:`~CheckReport.diagnosis`. ``now`` is the clock the
    certificate's expiry is measured against (default: the current time).

    Raises:
        InvalidAddressError: ``rcpt`` or ``mail_from`` is not an address
            (before anything is sent).
    """
    where = f"{settings.host}:{settings.port}"
    report = CheckReport(settings.host, settings.port, security_mode(settings), settings.username)
    recipient = parse_address(rcpt, field="--rcpt") if rcpt is not None else None
    sender = _probe_sender(settings, mail_from)
    try:
        opened = yield Open()
    except TransportError as error:
        return _fail(report, settings, "connect", error)
    assert isinstance(opened, Opened)
    report.greeting, report.peer, report.tls = opened.greeting, opened.peer, opened.tls
    if opened.greeting.code != 220:
        yield Quit()
        refusal = ConnectError(f"{where} greeted with {opened.greeting}")
        return _fail(report, settings, "connect", refusal)
    detail = f"{opened.peer}: {opened.greeting}"
    if opened.tls is not None:
        detail += f" (implicit TLS: {opened.tls.version}, {opened.tls.cipher})"
    report.passed("connect", detail)

    step = "ehlo"
    try:
        features = yield from _ehlo(report)
        step = "starttls"
        if wants_starttls(settings, features, where):
            tls = yield StartTLS()
            assert isinstance(tls, TLSInfo)
            report.tls = tls
            report.passed("starttls", "the connection is now encrypted")
            step = "ehlo"
            features = yield from _ehlo(report)
        elif not settings.use_ssl and "starttls" in features:
            report.warnings.append(
                "the server offers STARTTLS but it is not used: the connection, and any "
                "password, is in plain text; add --starttls (use_tls=True)"
            )
        step = "auth"
        if "auth" in features:
            report.auth_offered = features["auth"].upper().split()
        mechanism = auth_mechanism(settings, features, where)
    except TransportError as error:
        if isinstance(error, NotSupportedError):  # the connection is fine: say goodbye
            yield Quit()
        return _fail(report, settings, step, error)
    if report.tls is not None and report.tls.certificate is not None:
        _expiry_warning(report, report.tls.certificate, now or dt.datetime.now(dt.UTC))

    if mechanism is None:
        if report.auth_offered:
            report.warnings.append(
                f"the server offers AUTH ({' '.join(report.auth_offered)}) and no login is "
                "made: give --user if the server needs one to relay your mail"
            )
    else:
        report.auth_mechanism = mechanism
        try:
            reply = yield Login(mechanism)
        except TransportError as error:
            return _fail(report, settings, "auth", error)
        assert isinstance(reply, SMTPReply)
        report.auth_reply = reply
        kind = "token" if mechanism in OAUTH_MECHANISMS else "password"
        report.passed("auth", f"{mechanism} as {settings.username!r} ({kind}): {reply}")

    if recipient is not None:
        failed = yield from _rcpt_probe(report, settings, features, recipient, sender)
        if failed is not None:
            return failed
    yield Quit()
    return report


def _fail(
    report: CheckReport, settings: SMTPSettings, step: str, error: TransportError
) -> CheckReport:
    """Record ``error`` at ``step`` with its diagnosis; return the report."""
    return report.failed(step, diagnose(step, error, settings))


def _ehlo(report: CheckReport) -> Generator[ProbeAction, object, dict[str, str]]:
    """Say EHLO; record the extensions; return them as the handshake policy reads them."""
    result = yield Ehlo()
    assert isinstance(result, EhloResult)
    if not result.reply.is_positive:
        raise ProtocolError(result.reply.code, f"{result.reply.text} (the reply to EHLO)")
    report.extensions = dict(result.extensions)
    shown = ", ".join(
        f"{key} {value}".strip() if key.upper() != "AUTH" else f"AUTH {value}".strip()
        for key, value in result.extensions.items()
    )
    report.passed("ehlo", shown or "(no extensions)")
    return ehlo_features(result.extensions)


def _expiry_warning(report: CheckReport, cert: CertificateInfo, now: dt.datetime) -> None:
    """Warn of a certificate that expires within :data:`EXPIRY_WARNING_DAYS` of ``now``."""
    days = cert.days_left(now)
    if days is not None and cert.not_after is not None and days < EXPIRY_WARNING_DAYS:
        report.warnings.append(
            f"the server's certificate expires in {days} day(s) ({cert.not_after:%Y-%m-%d}); "
            "whoever runs the server must renew it"
        )


def _rcpt_probe(
    report: CheckReport,
    settings: SMTPSettings,
    features: Mapping[str, str],
    recipient: Address,
    sender: str,
) -> Generator[ProbeAction, object, CheckReport | None]:
    """MAIL FROM, RCPT TO, RSET; return the failed report, or None when all went well."""
    probe = report.rcpt = RcptProbe(recipient.addr_spec, sender)
    smtputf8 = recipient.needs_smtputf8 or not sender.isascii()
    envelope = Envelope(sender=sender, recipients=(), chunks=[], smtputf8=smtputf8)
    step = "mail"
    try:
        mail = yield Command(mail_command(envelope, features))
        assert isinstance(mail, SMTPReply)
        probe.mail_reply = mail
        if not mail.is_positive:
            yield Quit()
            said = f"{mail.text} (the reply to MAIL FROM:<{sender}>)"
            if mail.code == 530:
                raise AuthenticationError(mail.code, said)
            raise ProtocolError(mail.code, said)
        report.passed("mail", f"MAIL FROM:<{sender}>: {mail}")
        step = "rcpt"
        reply = yield Command(rcpt_command(envelope, recipient.envelope, features))
        assert isinstance(reply, SMTPReply)
        probe.rcpt_reply = reply
        rset = yield Command(b"RSET\r\n")
        assert isinstance(rset, SMTPReply)
        probe.rset_reply = rset
    except TransportError as error:
        return _fail(report, settings, step, error)
    if not reply.is_positive:
        yield Quit()
        return report.failed("rcpt", refused_recipient(recipient.addr_spec, reply))
    report.passed("rcpt", f"RCPT TO:<{recipient.addr_spec}>: {reply}; then RSET: nothing sent")
    return None


def _probe_sender(settings: SMTPSettings, mail_from: str | None) -> str:
    """Return the envelope sender of the probe: ``mail_from``, the username, or ``""``."""
    if mail_from:
        return parse_address(mail_from, field="--from").envelope
    if settings.username and "@" in settings.username:
        try:
            return parse_address(settings.username, field="username").envelope
        except ValueError:
            return ""
    return ""
