"""``manage.py amsdal_outbox status | retry [--failed] [--unknown] | prune --older-than DAYS``
and ``deliver``.

* ``status [--json]`` -- messages per state, recipients per status, how many
  messages are due now, how many are ``sending`` past their lease, the
  oldest queued message and the next due time.
* ``retry [--failed] [--unknown]`` -- "Retry now" for the whole outbox: the
  failed and/or unknown recipients (neither flag: both) back to queued, due
  now, their count started again; the engine is told. Messages being sent
  are left alone (said on stderr).
* ``prune --older-than DAYS [--dry-run]`` -- delete done and cancelled
  messages whose last change (``updated_at``: when they became done or
  cancelled) is more than DAYS days old; queued and sending messages are
  never deleted.
* ``deliver [--limit N]`` -- the sweep: one attempt at every message that is
  due or whose worker's lease ran out (at most N, default 100), in this
  process, as :func:`~django_amsdal_mail.outbox.worker.deliver_due` does; for
  the ``"immediate"`` engine's retries, or from cron as a safety net.

Exit status: 0 when the command did its work (messages left alone are
reported, not an error); 1 with ``CommandError`` for a bad value or bad
outbox settings; 2 for a usage error from the command line (argparse's).
The rules are those of :mod:`django_amsdal_mail.outbox.operations`.
"""

from __future__ import annotations

import argparse
import json
import math
from datetime import datetime, timedelta
from typing import Any, Final

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from django_amsdal_mail.outbox import operations

#: The largest ``--older-than`` accepted, in days (a thousand years).
MAX_DAYS: Final = 365_000


def days(text: str) -> float:
    """Parse ``--older-than``: a number of days, 0 or more (``30``, ``0.5``).

    Raises:
        argparse.ArgumentTypeError: not a number, negative, or too large.
    """
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not 0 <= value <= MAX_DAYS:
        raise argparse.ArgumentTypeError(
            f"--older-than takes a number of days from 0 to {MAX_DAYS} (such as 30 or 0.5), "
            f"not {text!r}"
        )
    return value


def _limit(text: str) -> int:
    """Parse ``--limit``: a whole number of messages, 1 or more."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(
            f"--limit takes a whole number of messages, 1 or more, not {text!r}"
        )
    return value


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _when(value: datetime | None, now: datetime) -> str:
    if value is None:
        return "-"
    seconds = int((now - value).total_seconds())
    if seconds >= 0:
        return f"{value.isoformat()} ({_duration(seconds)} ago)"
    return f"{value.isoformat()} (in {_duration(-seconds)})"


def _duration(seconds: int) -> str:
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    days_, hours = divmod(hours, 24)
    if days_:
        return f"{days_} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"


class Command(BaseCommand):
    """Show the outbox's counts, retry failed or unknown recipients, prune old messages."""

    help = (
        "Watch and operate the outbox: 'status' (counts), 'retry' (failed and/or unknown "
        "recipients back to queued, due now), 'prune --older-than DAYS' (delete done and "
        "cancelled messages), 'deliver' (one attempt at every due message, in this process)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        """Declare the three subcommands and their options."""
        sub = parser.add_subparsers(dest="action", metavar="{status,retry,prune,deliver}")
        sub.required = True
        status = sub.add_parser("status", help="messages per state, recipients per status")
        status.add_argument("--json", action="store_true", help="print the counts as JSON")
        retry = sub.add_parser("retry", help="failed/unknown recipients back to queued, due now")
        retry.add_argument("--failed", action="store_true", help="retry failed recipients")
        retry.add_argument("--unknown", action="store_true", help="retry unknown recipients")
        prune = sub.add_parser("prune", help="delete done and cancelled messages")
        prune.add_argument(
            "--older-than",
            type=days,
            required=True,
            metavar="DAYS",
            help="delete those finished more than DAYS days ago (by updated_at)",
        )
        prune.add_argument("--dry-run", action="store_true", help="say how many, delete nothing")
        deliver = sub.add_parser("deliver", help="one attempt at every due message, here and now")
        deliver.add_argument(
            "--limit",
            type=_limit,
            default=100,
            metavar="N",
            help="at most N messages (default 100)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        """Run the subcommand named by ``action``."""
        action = options["action"]
        try:
            if action == "status":
                self._status(as_json=options["json"])
            elif action == "retry":
                self._retry(failed=options["failed"], unknown=options["unknown"])
            elif action == "prune":
                self._prune(older_than=options["older_than"], dry_run=options["dry_run"])
            elif action == "deliver":
                self._deliver(limit=options["limit"])
            else:  # call_command() with an action the parser did not check
                raise CommandError(
                    f"unknown action {action!r}; use one of status, retry, prune, deliver"
                )
        except ImproperlyConfigured as error:
            raise CommandError(f"the outbox is not configured correctly: {error}") from error

    def _status(self, *, as_json: bool) -> None:
        counts = operations.counts()
        if as_json:
            self.stdout.write(json.dumps(counts.as_dict(), indent=2, sort_keys=True))
            return
        total = sum(counts.messages.values())
        lines = [f"Messages: {total}"]
        for state, n in counts.messages.items():
            note = ""
            if state == "queued":
                note = f"  (due now: {counts.due_now})"
            elif state == "sending":
                note = f"  (lease expired: {counts.lease_expired})"
            lines.append(f"  {state:<10} {n:>8}{note}")
        lines.append(f"Recipients: {sum(counts.recipients.values())}")
        lines.extend(f"  {status:<10} {n:>8}" for status, n in counts.recipients.items())
        lines.append(f"Due now: {counts.due_now}")
        lines.append(f"Oldest queued: {_when(counts.oldest_queued_at, counts.now)}")
        lines.append(f"Next due: {_when(counts.next_due_at, counts.now)}")
        self.stdout.write("\n".join(lines))

    def _retry(self, *, failed: bool, unknown: bool) -> None:
        statuses = {s for s, wanted in (("failed", failed), ("unknown", unknown)) if wanted}
        statuses = statuses or set(operations.RETRYABLE)
        result = operations.retry(statuses=statuses)
        self.stdout.write(
            f"Retried {_plural(result.recipients, 'recipient')} "
            f"({', '.join(sorted(statuses))}) of {_plural(result.messages, 'message')}: "
            "queued, due now."
        )
        if result.busy:
            self.stderr.write(
                f"{_plural(result.busy, 'message')} being sent left alone: run retry again "
                "once the attempt has ended (within the outbox's LEASE seconds)."
            )
        if result.cancelled:
            self.stderr.write(f"{_plural(result.cancelled, 'cancelled message')} not retried.")

    def _prune(self, *, older_than: float, dry_run: bool) -> None:
        now = timezone.now()
        result = operations.prune(timedelta(days=older_than), now=now, dry_run=dry_run)
        verb = "Would delete" if dry_run else "Deleted"
        self.stdout.write(
            f"{verb} {_plural(result.messages, 'message')} "
            f"({_plural(result.recipients, 'recipient row')}) done or cancelled "
            f"before {result.cutoff.isoformat()}."
        )

    def _deliver(self, *, limit: int) -> None:
        from django_amsdal_mail.outbox.worker import deliver_due

        ran = deliver_due(limit=limit)
        self.stdout.write(f"Attempted {_plural(ran, 'message')}.")
