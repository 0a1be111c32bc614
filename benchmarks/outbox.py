"""The outbox's figures: what a view pays per message, and worker throughput.

``python -m benchmarks.outbox`` (also a part of ``python -m benchmarks``):

* **In the view.** ``enqueue()`` (engine ``"tasks"``, django-tasks-db on
  PostgreSQL: the outbox rows and the task row, committed) against a
  synchronous ``send_mail()`` -- through our Django backend and through
  Django's SMTP backend -- to a server that waits 20 ms before every reply and
  requires STARTTLS and AUTH (an aiosmtpd child process, its certificate made
  with trustme), a new connection per call as a request makes it. Target:
  ``enqueue()`` costs at most 1/20 of the synchronous send.
* **Throughput.** Messages committed to the outbox at once, then sent by 1
  and by 2 ``db_worker`` processes to Postfix's ``smtp-sink``, timed from
  the commit until every message is ``done``. Target: 2 workers at least
  1.6x one.

The database is a throwaway PostgreSQL cluster on 127.0.0.1, the workers run
with the live tests' settings (``tests/outbox/live``), every wait is bounded.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
USER = "bench@outbox.test"
PASSWORD = "bench-password"
DELAY = 0.020
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["email"]}}
OUTBOX = {"ENGINE": "tasks", "LEASE": 30, "RETRY_BACKOFF": 1}
SENDER = "app@outbox.test"
_DONE_TIMEOUT = float(os.environ.get("AMSDAL_BENCH_OUTBOX_TIMEOUT", 300))

__all__ = ["measure", "unavailable"]


def unavailable() -> str | None:
    """Say why the outbox benchmark cannot run here, or None."""
    from tests.outbox.live.postgres import find_binaries

    if find_binaries() is None:
        return "PostgreSQL is not installed (make services installs it)"
    for module in ("django_tasks_db", "trustme", "psycopg"):
        try:
            __import__(module)
        except ImportError:
            return f"{module} is not installed (pip install -e '.[dev]')"
    return None


@contextlib.contextmanager
def _database() -> Iterator[dict[str, Any]]:
    """A migrated database on a throwaway cluster; Django set up in this process on it."""
    from tests.outbox.live.database import postgres_database, worker_environment
    from tests.outbox.live.postgres import find_binaries, start_postgres

    binaries = find_binaries()
    assert binaries is not None
    cluster = start_postgres(binaries)
    try:
        entry = cluster.create_database("outbox_bench")
        overrides = {"DATABASES": {"default": entry}, "TASKS": TASKS, "AMSDAL_EMAIL_OUTBOX": OUTBOX}
        os.environ.update(worker_environment(overrides))
        sys.path[:0] = [str(ROOT), str(ROOT / "example_project")]
        import importlib

        import django

        import tests.outbox.live.settings

        # worker_environment imported the settings module before the overrides were set.
        importlib.reload(tests.outbox.live.settings)
        from django.core.management import call_command

        django.setup()
        call_command("migrate", verbosity=0, interactive=False)
        postgres_database(entry)  # checks the entry's shape
        yield entry
    finally:
        from django.db import connections

        connections.close_all()
        cluster.stop()


def _message(n: int, to: str = "rcpt@outbox.test") -> Any:
    from django.core.mail import EmailMessage

    return EmailMessage(f"Order {n}", f"Your order {n} has shipped.\n", SENDER, [to])


def _empty() -> None:
    from django_tasks_db.models import DBTaskResult

    from django_amsdal_mail.outbox.models import OutboxMessage, OutboxRecipient

    OutboxRecipient.objects.all().delete()
    OutboxMessage.objects.all().delete()
    DBTaskResult.objects.all().delete()


# -- in the view ------------------------------------------------------------------------


def _view_senders(port: int) -> dict[str, Callable[[int], None]]:
    """Each way a view hands over message ``n``, by name."""
    from django.core.mail import get_connection

    from django_amsdal_mail.outbox import enqueue

    options = {"host": HOST, "port": port, "username": USER, "password": PASSWORD}

    def inline(path: str) -> Callable[[int], None]:
        def send(n: int) -> None:
            connection = get_connection(path, use_tls=True, timeout=30, **options)
            assert connection.send_messages([_message(n)]) == 1

        return send

    def queue(n: int) -> None:
        (row,) = enqueue(_message(n))  # autocommit: the rows and the task row committed
        assert row.pk is not None

    return {
        "enqueue": queue,
        "ours-inline": inline("django_amsdal_mail.backend.EmailBackend"),
        "django-inline": inline("django.core.mail.backends.smtp.EmailBackend"),
    }


def measure_view(port: int, counts: dict[str, int], rounds: int) -> dict[str, list[float]]:
    """Return milliseconds per message for each way, one value per round (interleaved)."""
    senders = _view_senders(port)
    out: dict[str, list[float]] = {name: [] for name in senders}
    for send in senders.values():  # warm-up: imports, the first connection
        send(0)
    n = 0
    for _ in range(rounds):
        for name, send in senders.items():
            started = time.perf_counter()
            for _ in range(counts[name]):
                n += 1
                send(n)
            out[name].append((time.perf_counter() - started) * 1000 / counts[name])
        _empty()
    return out


# -- throughput -------------------------------------------------------------------------


def _wait_done(count: int) -> float:
    """Wait until ``count`` messages are done; return the time it happened (monotonic)."""
    from django_amsdal_mail.outbox.models import OutboxMessage

    deadline = time.monotonic() + _DONE_TIMEOUT
    while OutboxMessage.objects.filter(state="done").count() < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the workers did not finish {count} messages in {_DONE_TIMEOUT}s")
        time.sleep(0.02)  # the polling interval of a bounded wait
    return time.monotonic()


def measure_throughput(
    sink_port: int, entry: dict[str, Any], count: int, rounds: int, log_dir: Path
) -> dict[str, list[float]]:
    """Return messages per second with 1 and with 2 workers, one value per round."""
    from django.db import transaction

    from django_amsdal_mail.outbox import enqueue
    from django_amsdal_mail.outbox.models import OutboxRecipient
    from tests.outbox.live.db_workers import start_db_workers

    worker_settings = {
        "DATABASES": {"default": entry},
        "EMAIL_BACKEND": "django_amsdal_mail.backend.EmailBackend",
        "EMAIL_HOST": HOST,
        "EMAIL_PORT": sink_port,
        "EMAIL_TIMEOUT": 30,
        "AMSDAL_EMAIL_OUTBOX": OUTBOX,
        "TASKS": TASKS,
    }
    out: dict[str, list[float]] = {"1 worker": [], "2 workers": []}
    messages = [_message(n, f"user{n % 97}@outbox.test") for n in range(count)]
    for _ in range(rounds):
        for name, workers in (("1 worker", 1), ("2 workers", 2)):
            _empty()
            started_workers = start_db_workers(workers, worker_settings, log_dir)
            try:
                with transaction.atomic():  # every task visible to the workers at once
                    enqueue(messages)
                committed = time.monotonic()
                finished = _wait_done(count)
            except RuntimeError as error:
                logs = "\n".join(
                    f"--- {w.worker_id}:\n{w.log_text()[-3000:]}" for w in started_workers
                )
                raise RuntimeError(f"{error}\n{logs}") from None
            finally:
                for worker in started_workers:
                    worker.stop()
            sent = OutboxRecipient.objects.filter(status="sent").count()
            if sent != count:
                raise RuntimeError(f"{name}: {sent} of {count} recipients sent")
            out[name].append(count / (finished - committed))
    _empty()
    return out


# -- the whole run ----------------------------------------------------------------------


def measure(
    *, view_messages: int, inline_messages: int, messages: int, rounds: int
) -> dict[str, dict[str, list[float]]]:
    """Start PostgreSQL, the delaying TLS + AUTH server and smtp-sink; return both figures."""
    import trustme

    from .sinks import AiosmtpdSink, SmtpSink

    with tempfile.TemporaryDirectory(prefix="bench-outbox-") as tmp:
        directory = Path(tmp)
        authority = trustme.CA()
        certificate = authority.issue_cert(HOST)
        chain, key = directory / "chain.pem", directory / "key.pem"
        certificate.private_key_and_cert_chain_pem.write_to_path(str(chain))
        certificate.private_key_pem.write_to_path(str(key))
        authority.cert_pem.write_to_path(str(directory / "ca.pem"))
        # The clients of this process (ours and Django's) trust the benchmark's CA.
        os.environ["SSL_CERT_FILE"] = str(directory / "ca.pem")
        distant = AiosmtpdSink(
            lifetime=_DONE_TIMEOUT * 2, delay=DELAY, tls=(chain, key), auth=(USER, PASSWORD)
        )
        with _database() as entry, distant, SmtpSink(lifetime=_DONE_TIMEOUT * 2) as sink:
            counts = {
                "enqueue": view_messages,
                "ours-inline": inline_messages,
                "django-inline": inline_messages,
            }
            print(f"==> outbox: in the view, {counts} x {rounds}", flush=True)
            view = measure_view(distant.port, counts, rounds)
            print(f"==> outbox: throughput, {messages} messages x {rounds}", flush=True)
            throughput = measure_throughput(sink.port, entry, messages, rounds, directory)
    return {"view": view, "throughput": throughput}


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def targets(figures: dict[str, dict[str, list[float]]]) -> list[tuple[str, float, bool]]:
    """Each target: what, the measured ratio, met."""
    view, throughput = figures["view"], figures["throughput"]
    share = _median(view["enqueue"]) / _median(view["ours-inline"])
    scale = _median(throughput["2 workers"]) / _median(throughput["1 worker"])
    return [
        ("enqueue() / synchronous send_mail() in the view (≤ 0.05)", share, share <= 0.05),
        ("2 workers / 1 worker throughput (≥ 1.6)", scale, scale >= 1.6),
    ]


def main(argv: list[str] | None = None) -> int:
    """Run both measurements, print them; with --report, update that report's section."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.outbox", description=__doc__)
    p.add_argument("--view-messages", type=int, default=200, help="enqueue() calls per round")
    p.add_argument(
        "--inline-messages", type=int, default=20, help="synchronous send_mail() per round"
    )
    p.add_argument("--messages", type=int, default=1000, help="messages per throughput round")
    p.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    p.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    p.add_argument("--report", type=Path, help="put the figures in this report (its section)")
    a = p.parse_args(argv)
    why = unavailable()
    if why:
        print(f"outbox benchmark unavailable: {why}", file=sys.stderr)
        return 2
    figures = measure(
        view_messages=a.view_messages,
        inline_messages=a.inline_messages,
        messages=a.messages,
        rounds=a.rounds,
    )
    for part, unit in (("view", "ms/message"), ("throughput", "messages/s")):
        for name, values in figures[part].items():
            shown = ", ".join(f"{v:.2f}" for v in values)
            print(f"{part:10s} {name:14s} {unit}: median {_median(values):.2f}  [{shown}]")
    for what, ratio, met in targets(figures):
        print(f"    {what}: {ratio:.3f} ({'met' if met else 'NOT met'})")
    if a.json:
        a.json.write_text(json.dumps(figures, indent=2))
    if a.report:
        from .report import outbox_section, splice_section

        old = a.report.read_text() if a.report.is_file() else "# Benchmarks\n"
        a.report.write_text(splice_section(old, outbox_section(figures, a.messages)))
        print(f"==> updated {a.report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
