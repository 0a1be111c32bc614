"""A check report as text for people and as JSON for programs (pure functions)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from .diagnose import Diagnosis
from .probe import CheckReport, TLSInfo

__all__ = ["diagnosis_text", "report_json", "report_text"]

_SECURITY = {"starttls": "STARTTLS", "ssl": "implicit TLS", "none": "no TLS"}
_STEP_TITLES = {
    "configuration": "settings",
    "connect": "connect",
    "ehlo": "EHLO",
    "starttls": "STARTTLS",
    "auth": "AUTH",
    "mail": "MAIL FROM",
    "rcpt": "RCPT TO",
}


def _tls_lines(tls: TLSInfo, now: dt.datetime) -> list[str]:
    bits = f" ({tls.bits} bits)" if tls.bits else ""
    lines = [f"       TLS: {tls.version}, cipher {tls.cipher}{bits}"]
    cert = tls.certificate
    if cert is not None:
        lines.append(f"       certificate subject: {cert.subject}")
        lines.append(f"       certificate issuer:  {cert.issuer}")
        if cert.not_after is not None:
            days = cert.days_left(now)
            lines.append(f"       certificate expires: {cert.not_after:%Y-%m-%d} (in {days} days)")
        if cert.names:
            lines.append(f"       valid for: {', '.join(cert.names)}")
    return lines


def diagnosis_text(diagnosis: Diagnosis) -> list[str]:
    """Return the lines that explain a failure: the problem, the fix, the exit status."""
    return [
        f"Problem: {diagnosis.problem}.",
        f"Fix: {diagnosis.fix}.",
        f"(exit status {diagnosis.exit_code})",
    ]


def report_text(report: CheckReport, *, now: dt.datetime | None = None) -> str:
    """Return the report as people read it: one line per step, then the verdict."""
    now = now or dt.datetime.now(dt.UTC)
    security = _SECURITY.get(report.security, report.security)
    login = f", login {report.username!r}" if report.username else ""
    lines = [f"Checking {report.host}:{report.port} ({security}{login})"]
    for step in report.steps:
        mark = "ok  " if step.ok else "FAIL"
        lines.append(f"[{mark}] {_STEP_TITLES.get(step.name, step.name)}: {step.detail}")
        if step.ok and report.tls is not None and step.name in ("connect", "starttls"):
            if step.name == "starttls" or report.security == "ssl":
                lines.extend(_tls_lines(report.tls, now))
    for warning in report.warnings:
        lines.append(f"[warn] {warning}")
    if report.diagnosis is None:
        done = "connection, TLS and login work" if report.username else "the connection works"
        if report.rcpt is not None:
            done += f", and {report.rcpt.recipient} is accepted"
        lines.append(f"OK: {done}.")
    else:
        lines.extend(diagnosis_text(report.diagnosis))
    return "\n".join(lines) + "\n"


def report_json(report: CheckReport, *, now: dt.datetime | None = None) -> str:
    """Return the report as one JSON object (keys in DESIGN's order of the check's steps)."""
    now = now or dt.datetime.now(dt.UTC)
    rcpt: dict[str, Any] | None = None
    if report.rcpt is not None:
        probe = report.rcpt
        rcpt = {
            "recipient": probe.recipient,
            "sender": probe.sender,
            "accepted": probe.accepted,
            "mail_reply": _reply(probe.mail_reply),
            "rcpt_reply": _reply(probe.rcpt_reply),
            "rset_reply": _reply(probe.rset_reply),
        }
    data: dict[str, Any] = {
        "ok": report.ok,
        "exit_code": report.exit_code,
        "host": report.host,
        "port": report.port,
        "security": report.security,
        "peer": report.peer,
        "greeting": _reply(report.greeting),
        "extensions": report.extensions,
        "tls": report.tls.as_json(now) if report.tls is not None else None,
        "auth": {
            "offered": report.auth_offered,
            "username": report.username,
            "mechanism": report.auth_mechanism,
            "reply": _reply(report.auth_reply),
        },
        "rcpt": rcpt,
        "steps": [{"step": s.name, "ok": s.ok, "detail": s.detail} for s in report.steps],
        "warnings": report.warnings,
        "error": report.diagnosis.as_json() if report.diagnosis is not None else None,
    }
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def _reply(reply: Any) -> dict[str, Any] | None:
    if reply is None:
        return None
    return {"code": reply.code, "text": reply.text}
