"""The ``amsdal-mail`` command line (also ``python -m amsdal_mail``).

* ``amsdal-mail check [--rcpt ADDR] [--from ADDR] [--json]`` -- connect,
  EHLO, STARTTLS or implicit TLS (version, cipher, certificate subject,
  issuer and expiry), AUTH, and with ``--rcpt`` a MAIL FROM / RCPT TO probe
  ended with RSET (nothing is sent);
* ``amsdal-mail send --from A --to B [--cc] [--bcc] [--subject] [--body |
  --body-file] [--html-file] [--attach ...]`` -- one message;
* ``amsdal-mail send --batch FILE.jsonl [--concurrency K] [--report OUT.jsonl]``
  -- one message per line, a progress bar on a terminal, a summary per
  status, a report row per recipient;
* ``amsdal-mail bounces ...`` -- the delivery-report receiver, where
  delivery tracking is installed.

Exit status: 0 ok, 2 usage or configuration, 3 connect or timeout, 4 TLS,
5 authentication, 6 a recipient refused, 7 another protocol error (see
:mod:`amsdal_mail.cli.diagnose`). :func:`main` is the entry point;
:func:`check` runs the check for other front ends (``manage.py
amsdal_mailcheck``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from ..config import SMTPSettings
from ..exceptions import ConfigurationError, MailError, TransportError
from ..message import Attachment, EmailMessage
from ..status import QUEUED, SENT, UNKNOWN
from .connection import PasswordPrompt, add_connection_flags, backend_from_args, terminal_prompt
from .diagnose import (
    EXIT_CONNECT,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_USAGE,
    Diagnosis,
    configuration_problem,
    diagnose,
)
from .probe import CheckReport, check_flow
from .render import diagnosis_text, report_json, report_text
from .runner import run_check
from .sending import (
    BadLine,
    BatchResult,
    Progress,
    ReportRow,
    read_batch,
    rows_for,
    send_batch,
    summary_lines,
    write_report,
)

__all__ = ["Writer", "check", "configuration_report", "main", "print_report"]


class Writer(Protocol):
    """Where a report goes: anything with ``write(str)`` (a text file, Django's stdout)."""

    def write(self, text: str, /) -> Any:
        """Write ``text``."""


def check(
    settings: SMTPSettings, *, rcpt: str | None = None, mail_from: str | None = None
) -> CheckReport:
    """Check the server of ``settings`` (see :func:`~.probe.check_flow`); return the report.

    Raises:
        InvalidAddressError: ``rcpt`` or ``mail_from`` is not an address.
    """
    return run_check(check_flow(settings, rcpt=rcpt, mail_from=mail_from), settings)


def configuration_report(
    error: BaseException, *, host: str = "", port: int = 0, fix: str | None = None
) -> CheckReport:
    """Return the report of a check that could not start: the settings are unusable."""
    report = CheckReport(host, port, "none")
    return report.failed("configuration", configuration_problem(error, fix=fix))


def print_report(report: CheckReport, *, as_json: bool, out: Writer) -> int:
    """Write ``report`` to ``out`` (text or JSON); return its exit status."""
    out.write(report_json(report) if as_json else report_text(report))
    return report.exit_code


# --- the parser ------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse with our exit status for usage errors (2, as argparse's own)."""

    def error(self, message: str) -> Any:  # noqa: D102 - argparse's hook
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="amsdal-mail",
        description="Check an SMTP server, and send mail through it.",
        epilog="Exit status: 0 ok, 2 usage or configuration, 3 connect or timeout, 4 TLS, "
        "5 authentication, 6 recipient refused, 7 other protocol error.",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    check_cmd = commands.add_parser(
        "check",
        help="connect, show TLS and AUTH, optionally probe a recipient",
        description="Connect to the server, say EHLO, start TLS, log in, and with --rcpt ask "
        "whether the server takes a recipient (MAIL FROM and RCPT TO, then RSET: nothing is "
        "sent).",
    )
    add_connection_flags(check_cmd)
    check_cmd.add_argument("--rcpt", metavar="ADDR", help="probe this recipient (then RSET)")
    check_cmd.add_argument(
        "--from",
        dest="mail_from",
        metavar="ADDR",
        help="sender for the --rcpt probe (default: --user if it is an address, else <>)",
    )
    check_cmd.add_argument("--json", action="store_true", help="print the report as JSON")

    send_cmd = commands.add_parser(
        "send",
        help="send one message, or a batch from a JSON Lines file",
        description="Send one message built from the flags, or with --batch one message per "
        "line of a JSON Lines file (keys: from, to, cc, bcc, subject, body, html, attach).",
    )
    add_connection_flags(send_cmd)
    message = send_cmd.add_argument_group("message")
    message.add_argument("--from", dest="mail_from", metavar="ADDR", help="sender")
    for flag in ("--to", "--cc", "--bcc"):
        message.add_argument(flag, action="append", default=[], metavar="ADDR", help="repeatable")
    message.add_argument("--subject", default="")
    body = message.add_mutually_exclusive_group()
    body.add_argument("--body", help="the text body")
    body.add_argument("--body-file", metavar="FILE", help="read the text body from FILE (- stdin)")
    message.add_argument("--html-file", metavar="FILE", help="an HTML body from FILE")
    message.add_argument("--attach", action="append", default=[], metavar="FILE", help="repeatable")
    batch = send_cmd.add_argument_group("batch")
    batch.add_argument("--batch", metavar="FILE.jsonl", help="send one message per line")
    batch.add_argument(
        "--concurrency", type=_positive, default=1, metavar="K", help="connections at once (1)"
    )
    batch.add_argument("--report", metavar="OUT.jsonl", help="write a JSON line per recipient")
    send_cmd.add_argument("--json", action="store_true", help="print the outcome as JSON")

    commands.add_parser(
        "bounces",
        help="receive delivery reports (see 'amsdal-mail bounces --help')",
        add_help=False,
    )
    return parser


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, not {text!r}")
    return value


# --- the commands -------------------------------------------------------------------------


def _check(args: argparse.Namespace, prompt: PasswordPrompt) -> int:
    out = sys.stdout
    try:
        backend = backend_from_args(args, prompt=prompt)
        report = check(backend.settings, rcpt=args.rcpt, mail_from=args.mail_from)
    except (MailError, ValueError) as exc:
        report = configuration_report(exc, host=args.host or "", port=_int(args.port))
    return print_report(report, as_json=args.json, out=out)


def _int(value: object) -> int:
    try:
        return int(str(value))
    except ValueError:
        return 0


def _fail(diagnosis: Diagnosis, *, as_json: bool, rows: Sequence[ReportRow] = ()) -> int:
    if as_json:
        data = {
            "ok": False,
            "exit_code": diagnosis.exit_code,
            "recipients": [json.loads(row.as_json()) for row in rows],
            "error": diagnosis.as_json(),
        }
        sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    else:
        for row in rows:
            sys.stdout.write(_row_text(row) + "\n")
        sys.stderr.write(f"Error: {diagnosis.error}\n")
        sys.stderr.write("\n".join(diagnosis_text(diagnosis)) + "\n")
    return diagnosis.exit_code


def _row_text(row: ReportRow) -> str:
    code = "" if row.code is None else f" {row.code}"
    return f"{row.status:<9}{row.recipient}{code} {row.response or ''}".rstrip()


def _rows_exit(rows: Sequence[ReportRow]) -> int:
    """Return the exit status for recipients' outcomes: 0 all accepted, 6 any refused."""
    if any(row.status not in (SENT, QUEUED, UNKNOWN) for row in rows):
        return EXIT_REFUSED
    if any(row.status == UNKNOWN for row in rows):
        return EXIT_CONNECT  # the connection was lost after the data: fate unknown
    return EXIT_OK


def _read_text(path: str, what: str) -> str:
    try:
        if path == "-":
            return sys.stdin.read()
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"{what} {path!r} cannot be read: {exc}") from exc


def _message_from_flags(args: argparse.Namespace) -> EmailMessage:
    body = args.body or ""
    if args.body_file:
        body = _read_text(args.body_file, "--body-file")
    html = _read_text(args.html_file, "--html-file") if args.html_file else None
    attachments: list[Attachment] = []
    for path in args.attach:
        try:
            attachments.append(Attachment.from_path(path))
        except OSError as exc:
            raise ConfigurationError(f"--attach {path!r} cannot be read: {exc.strerror}") from exc
    if not args.mail_from:
        raise ConfigurationError("--from is required (the sender)")
    if not (args.to or args.cc or args.bcc):
        raise ConfigurationError("give at least one recipient: --to, --cc or --bcc")
    message = EmailMessage(
        subject=args.subject,
        body=body,
        from_email=args.mail_from,
        to=args.to,
        cc=args.cc,
        bcc=args.bcc,
        attachments=attachments,
        html_body=html,
    )
    message.validate()
    return message


def _send(args: argparse.Namespace, prompt: PasswordPrompt) -> int:
    if args.batch:
        return _send_batch(args, prompt)
    if args.report or args.concurrency != 1:
        usage = ConfigurationError("--report and --concurrency go with --batch")
        return _fail(configuration_problem(usage), as_json=args.json)
    try:
        message = _message_from_flags(args)
        backend = backend_from_args(args, prompt=prompt)
    except (MailError, ValueError) as exc:
        return _fail(configuration_problem(exc), as_json=args.json)
    try:
        status = backend.send_message(message)
    except TransportError as exc:
        rows = rows_for(None, message.status) if message.status is not None else []
        return _fail(diagnose("send", exc, backend.settings), as_json=args.json, rows=rows)
    finally:
        backend.close()
    rows = rows_for(None, status)
    code = _rows_exit(rows)
    if args.json:
        data = {"ok": code == EXIT_OK, "exit_code": code, "recipients": [_row(r) for r in rows]}
        sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    else:
        for row in rows:
            sys.stdout.write(_row_text(row) + "\n")
        sys.stdout.write(summary_lines(BatchResult(rows), [])[0] + "\n")
    return code


def _row(row: ReportRow) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(row.as_json())
    data.pop("line")
    return data


def _send_batch(args: argparse.Namespace, prompt: PasswordPrompt) -> int:
    single = [flag for flag in ("to", "cc", "bcc", "attach") if getattr(args, flag)]
    single += [flag for flag in ("body", "body_file", "html_file") if getattr(args, flag)]
    if single or args.subject:
        flags = ", ".join(
            "--" + f.replace("_", "-") for f in single + (["subject"] * bool(args.subject))
        )
        usage = ConfigurationError(
            f"{flags} cannot go with --batch: each line gives its own (only --from is a "
            "default for lines without one)"
        )
        return _fail(configuration_problem(usage), as_json=args.json)
    path = Path(args.batch)
    try:
        text = _read_text(args.batch, "--batch")
        good, bad = read_batch(text.splitlines(), base_dir=path.parent, default_from=args.mail_from)
        backend = backend_from_args(args, prompt=prompt) if good else None
    except (MailError, ValueError) as exc:
        return _fail(configuration_problem(exc), as_json=args.json)
    for line in bad:
        sys.stderr.write(f"{args.batch}:{line.line}: bad line, not sent: {line.error}\n")
    progress = Progress(len(good), sys.stderr, enabled=sys.stderr.isatty() and not args.json)
    diagnosis: Diagnosis | None = None
    rows: list[ReportRow] = []
    if backend is not None:
        try:
            result = send_batch(backend, good, concurrency=args.concurrency, progress=progress)
        except MailError as exc:  # such as the [smtp] extra missing for --concurrency
            return _fail(configuration_problem(exc), as_json=args.json)
        rows = result.rows
        if result.error is not None:
            diagnosis = diagnose("send", result.error, backend.settings)
    else:
        result = BatchResult([])
    all_rows = sorted(rows + [row for line in bad for row in line.rows()], key=_line_of)
    if args.report:
        try:
            write_report(args.report, all_rows)
        except OSError as exc:
            sys.stderr.write(f"--report {args.report!r} cannot be written: {exc}\n")
            return EXIT_USAGE
    code = (
        diagnosis.exit_code
        if diagnosis is not None
        else EXIT_USAGE
        if bad
        else _rows_exit(all_rows)
    )
    _batch_output(args, result.rows, bad, diagnosis, code)
    return code


def _line_of(row: ReportRow) -> int:
    return row.line or 0


def _batch_output(
    args: argparse.Namespace,
    rows: list[ReportRow],
    bad: Sequence[BadLine],
    diagnosis: Diagnosis | None,
    code: int,
) -> None:
    if args.json:
        counts: dict[str, int] = {}
        for row in rows + [r for line in bad for r in line.rows()]:
            counts[row.status] = counts.get(row.status, 0) + 1
        data = {
            "ok": code == EXIT_OK,
            "exit_code": code,
            "messages": len({row.line for row in rows}),
            "bad_lines": [{"line": line.line, "error": line.error} for line in bad],
            "statuses": dict(sorted(counts.items())),
            "error": diagnosis.as_json() if diagnosis is not None else None,
        }
        sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
        return
    sys.stdout.write("\n".join(summary_lines(BatchResult(rows), bad)) + "\n")
    if diagnosis is not None:
        sys.stderr.write(f"Error: {diagnosis.error}\n")
        sys.stderr.write("\n".join(diagnosis_text(diagnosis)) + "\n")


def _bounces(argv: Sequence[str]) -> int:
    """Run ``amsdal-mail bounces``: the delivery-tracking receiver, imported on use."""
    try:
        from amsdal_mail.tracking.receiver import main as receiver_main  # type: ignore[import-not-found,unused-ignore]
    except ImportError as exc:
        sys.stderr.write(
            f"amsdal-mail bounces: delivery tracking is not available in this installation "
            f"({exc})\n"
        )
        return EXIT_USAGE
    try:
        result = receiver_main(list(argv))
    except SystemExit as exit_:  # its argparse: --help, a usage error
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    return int(result or 0)


def main(argv: Sequence[str] | None = None, *, prompt: PasswordPrompt = terminal_prompt) -> int:
    """Run ``amsdal-mail`` with ``argv`` (default: the process's arguments); return the status.

    ``prompt`` asks for the password when a login name is set and the
    environment gives none (default: on the terminal, not echoed).
    """
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["bounces"]:
        return _bounces(arguments[1:])
    try:
        args = _parser().parse_args(arguments)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    if args.command == "check":
        return _check(args, prompt)
    return _send(args, prompt)
