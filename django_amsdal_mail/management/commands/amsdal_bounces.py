"""``manage.py amsdal_bounces serve --listen HOST:PORT | --stdin | --imap URL``: reports in.

Each delivery report (an RFC 3464 DSN, or with the ``[tracking]`` extra a
bounce flufl.bounce reads) becomes delivery events; each event goes to
:func:`django_amsdal_mail.tracking.record_event` (the outbox recipient it is
about gets its ``delivery``, and the ``delivery`` signal is sent) and is
printed as one JSON line.

* ``serve --listen HOST:PORT [--return-path ADDR ...] [--max-size BYTES]``:
  an SMTP server taking reports for the return paths (and their VERP
  addresses) until SIGINT or SIGTERM; point the return path's MX, or a
  transport of your MTA, at it. The return path defaults to
  ``settings.EMAIL_RETURN_PATH``, else ``AMSDAL_EMAIL_RETURN_PATH``.
* ``--stdin``: one report read from standard input, as an MTA's pipe
  transport (Postfix ``pipe``, a ``.forward``, procmail) hands it over.
  A malformed or too large report exits with status 1, saying why, and
  records nothing.
* ``--imap URL [--interval SECONDS]``: the reports delivered to a mailbox
  (``imaps://USER:PASSWORD@HOST/MAILBOX``, or ``imap://`` with STARTTLS
  required), read once each (:func:`amsdal_mail.tracking.imap.poll_imap`:
  a processed message gets the keyword ``$AmsdalTracked``, one whose
  recording failed is left for the next poll). One poll, for cron; with
  ``--interval`` a poll every that many seconds until SIGINT or SIGTERM.
  A summary of each poll goes to standard error.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from amsdal_mail.tracking import MAX_SIZE, DeliveryEvent, ReportError, parse_report
from django_amsdal_mail.tracking import record_event, verp_secret


class Command(BaseCommand):
    """Receive delivery reports and record their events on the outbox."""

    help = (
        "Receive delivery reports: 'serve --listen HOST:PORT' runs an SMTP receiver, "
        "'--stdin' reads one report, '--imap URL' reads a mailbox; each event is recorded "
        "on the outbox and printed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        """``serve`` or ``--stdin``, and their options."""
        parser.add_argument("action", nargs="?", choices=["serve"], help="run an SMTP receiver")
        parser.add_argument("--stdin", action="store_true", help="read one report from stdin")
        parser.add_argument("--listen", metavar="HOST:PORT", help="where serve listens")
        parser.add_argument(
            "--return-path",
            action="append",
            metavar="ADDR",
            help="take reports for this address and its VERP addresses (repeatable)",
        )
        parser.add_argument(
            "--imap",
            metavar="URL",
            help="read the reports in this mailbox: imaps://USER:PASSWORD@HOST[:PORT]/MAILBOX",
        )
        parser.add_argument(
            "--interval",
            type=float,
            metavar="SECONDS",
            help="with --imap: poll every SECONDS until stopped (default: poll once)",
        )
        parser.add_argument("--max-size", type=int, default=MAX_SIZE, metavar="BYTES")

    def handle(self, *args: Any, **options: Any) -> None:
        """Run the chosen way of receiving."""
        if options["max_size"] < 1:
            raise CommandError("--max-size must be a positive number of bytes")
        ways = [options["stdin"], options["action"] == "serve", bool(options["imap"])]
        if sum(ways) != 1:
            raise CommandError(
                "say how reports come in, one way: 'serve --listen HOST:PORT', --stdin "
                "or --imap URL"
            )
        if options["interval"] is not None and not options["imap"]:
            raise CommandError("--interval goes with --imap")
        if options["stdin"]:
            self._stdin(options["max_size"])
        elif options["imap"]:
            self._imap(options["imap"], options["interval"], options["max_size"])
        else:
            self._serve(options)

    def _print(self, event: DeliveryEvent) -> None:
        from amsdal_mail.tracking.receiver import event_json

        self.stdout.write(event_json(event, secret=verp_secret()))
        self.stdout.flush()

    def _stdin(self, max_size: int) -> None:
        raw = sys.stdin.buffer.read(max_size + 1)
        if len(raw) > max_size:
            raise CommandError(
                f"the report on standard input is larger than --max-size ({max_size} bytes): "
                "nothing recorded"
            )
        try:
            events = parse_report(raw, max_size=max_size)
        except ReportError as exc:
            raise CommandError(f"the report on standard input was not recorded: {exc}") from exc
        for event in events:
            record_event(event)
            self._print(event)
        if not events:
            self.stderr.write("no delivery report on standard input: nothing recorded")

    def _imap(self, url: str, interval: float | None, max_size: int) -> None:
        from amsdal_mail.tracking.imap import ImapError, parse_imap_url, poll_imap

        if interval is not None and interval <= 0:
            raise CommandError("--interval must be a positive number of seconds")
        try:
            source = parse_imap_url(url)
        except ImapError as exc:
            raise CommandError(str(exc)) from exc

        def on_event(event: DeliveryEvent) -> None:
            record_event(event)
            self._print(event)

        stop = threading.Event()
        if interval is not None:
            for number in (signal.SIGINT, signal.SIGTERM):
                signal.signal(number, lambda *_: stop.set())
        while True:
            try:
                result = poll_imap(source, on_event, max_size=max_size)
            except ImapError as exc:
                if interval is None:
                    raise CommandError(str(exc)) from exc
                self.stderr.write(f"IMAP poll failed, tried again in {interval:g}s: {exc}")
            else:
                self.stderr.write(
                    f"{source.mailbox} on {source.host}: {result.looked_at} new message(s), "
                    f"{result.events} event(s), {result.not_reports} not a report, "
                    f"{result.malformed} malformed, {result.too_large} too large, "
                    f"{result.failed} left for the next poll"
                )
            if interval is None or stop.wait(interval):
                return

    def _serve(self, options: dict[str, Any]) -> None:
        from amsdal_mail.tracking.receiver import parse_listen, serve

        if not options["listen"]:
            raise CommandError("serve needs --listen HOST:PORT (such as 127.0.0.1:2526)")
        try:
            parse_listen(options["listen"])
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        paths = (
            options["return_path"]
            or [
                p
                for p in (
                    getattr(settings, "EMAIL_RETURN_PATH", None),
                    os.environ.get("AMSDAL_EMAIL_RETURN_PATH"),
                )
                if p
            ][:1]
        )
        if not paths:
            raise CommandError(
                "serve needs the return path it takes reports for: --return-path ADDR, "
                "or settings.EMAIL_RETURN_PATH / AMSDAL_EMAIL_RETURN_PATH"
            )

        def on_event(event: DeliveryEvent) -> None:
            from django.db import close_old_connections

            close_old_connections()
            record_event(event)

        try:
            serve(
                options["listen"],
                return_path=paths,
                max_size=options["max_size"],
                out=self.stdout,  # type: ignore[arg-type]
                secret=verp_secret(),
                on_event=on_event,
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        except OSError as exc:
            raise CommandError(f"cannot listen on {options['listen']}: {exc}") from exc
