"""Sending over a link with real latency: per-call send_mail() and one-connection bulk.

``python -m benchmarks.latency [--rtt 0,10,20,50] [--report docs/benchmarks.md]``
(also a part of ``python -m benchmarks``).

The server is a real Postfix (:class:`benchmarks.real_postfix.SubmissionPostfix`:
STARTTLS and AUTH through Dovecot SASL required; PIPELINING and CHUNKING
offered; mail discarded). Between it and the clients, on 127.0.0.1, a proxy
(:mod:`benchmarks._delay_proxy`, a child process) delays every byte by half
the round trip each way: the latency is on the wire, so a pipelined group
pays one round trip and a lock-step dialogue one per command. (A network
namespace pair with ``tc netem`` would do the same where the kernel has
netem; this machine's has not.)

For each round trip:

* **per call**: ``send_mail()`` as a request makes it, milliseconds per call
  (median and p95) for Django's SMTP backend, ours without the pool (a new
  connection each call) and ours with ``pool=True``;
* **bulk on one connection**: messages per second for Django's backend
  (``send_messages``), smtplib (``sendmail`` in a loop, pre-rendered),
  aiosmtplib (``send_message`` in a loop), ours with CHUNKING (BDAT pipelined
  with MAIL and RCPT) and ours with ``chunking=False``; and ours async over 8
  connections.

Targets (at a 20 ms round trip): pooled ``send_mail()`` at most 1/5 of
Django's per call; one-connection bulk at least 4x Django's (8x with
CHUNKING); async over 8 connections at least 20x Django's one connection.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .real_postfix import (
    HOST,
    PASSWORD,
    USER,
    SubmissionPostfix,
    unavailable,
    unverified_context,
)

__all__ = ["measure", "targets", "unavailable"]

ROOT = Path(__file__).resolve().parent.parent
RCPT = "rcpt@example.test"
TARGET_RTT = 20.0


#: One context for every client (the benchmark's Postfix has a self-signed certificate):
#: pooled connections are shared by backends whose TLS settings are the same, the same
#: ``ssl_context`` object included.
_CONTEXT = unverified_context()


@contextlib.contextmanager
def delay_proxy(upstream_port: int, rtt_ms: float) -> Iterator[int]:
    """Run the delaying proxy in front of ``upstream_port``; yield its port."""
    fd, port_file = tempfile.mkstemp(prefix="bench-proxy-")
    os.close(fd)
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks._delay_proxy", "--upstream", f"{HOST}:{upstream_port}"]
        + ["--rtt-ms", str(rtt_ms), "--port-file", port_file],
        stdin=subprocess.PIPE,  # closed when this process ends: the proxy then exits
        cwd=ROOT,
    )
    try:
        deadline = time.monotonic() + 20
        while not Path(port_file).read_text().strip():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the delay proxy did not start")
            time.sleep(0.02)  # the polling interval of a bounded wait
        yield int(Path(port_file).read_text())
    finally:
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        os.unlink(port_file)


def _ours(port: int, **options: Any) -> Any:
    import amsdal_mail

    return amsdal_mail.get_connection(
        "smtp", host=HOST, port=port, username=USER, password=PASSWORD, use_tls=True,
        ssl_context=_CONTEXT, timeout=30, **options,
    )  # fmt: skip


def _django_connection(port: int) -> Any:
    from django.core.mail import get_connection
    from django.core.mail.backends import smtp

    smtp.EmailBackend.ssl_context = _CONTEXT  # type: ignore[assignment]
    return get_connection(
        "django.core.mail.backends.smtp.EmailBackend", host=HOST, port=port, username=USER,
        password=PASSWORD, use_tls=True, timeout=30,
    )  # fmt: skip


def _setup_django() -> None:
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend")
        django.setup()


# -- per call ----------------------------------------------------------------------------


def _per_call(send: Callable[[int], None], calls: int) -> list[float]:
    send(-1)  # warm-up (and, pooled, the connection the next calls reuse)
    out = []
    for n in range(calls):
        started = time.perf_counter()
        send(n)
        out.append((time.perf_counter() - started) * 1000)
    return out


def per_call(port: int, calls: int) -> dict[str, list[float]]:
    """Milliseconds per send_mail() call, each way, one value per call."""
    from django.core.mail import send_mail

    import amsdal_mail

    def django_call(n: int) -> None:
        assert send_mail(f"c{n}", "body\n", USER, [RCPT], connection=_django_connection(port)) == 1

    def ours(pool: bool) -> Callable[[int], None]:
        def call(n: int) -> None:
            connection = _ours(port, pool=pool)
            status = amsdal_mail.send_mail(f"c{n}", "body\n", USER, [RCPT], connection=connection)
            assert not status.has_failures, status

        return call

    return {
        "django": _per_call(django_call, calls),
        "ours": _per_call(ours(False), calls),
        "ours-pool": _per_call(ours(True), calls),
    }


# -- bulk ---------------------------------------------------------------------------------


def _messages(count: int) -> list[Any]:
    import amsdal_mail

    return [amsdal_mail.EmailMessage(f"b{n}", "body\n", USER, [RCPT]) for n in range(count)]


def _bulk_ours(port: int, count: int, **options: Any) -> float:
    backend = _ours(port, **options)
    messages = _messages(count)
    started = time.perf_counter()
    with backend:
        status = backend.send_messages(messages)
    elapsed = time.perf_counter() - started
    assert status.status == {"sent"}, status
    return count / elapsed


def _bulk_ours_async(port: int, count: int, concurrency: int) -> float:
    backend = _ours(port)
    messages = _messages(count)

    async def run() -> float:
        started = time.perf_counter()
        status = await backend.asend_messages(messages, concurrency=concurrency)
        elapsed = time.perf_counter() - started
        assert status.status == {"sent"}, status
        return count / elapsed

    return asyncio.run(run())


def _bulk_django(port: int, count: int) -> float:
    from django.core.mail import EmailMessage

    messages = [EmailMessage(f"b{n}", "body\n", USER, [RCPT]) for n in range(count)]
    connection = _django_connection(port)
    started = time.perf_counter()
    assert connection.send_messages(messages) == count
    connection.close()
    return count / (time.perf_counter() - started)


def _rendered(count: int) -> list[bytes]:
    return [
        f"From: {USER}\r\nTo: {RCPT}\r\nSubject: b{n}\r\n\r\nbody\r\n".encode()
        for n in range(count)
    ]


def _bulk_smtplib(port: int, count: int) -> float:
    import smtplib

    payloads = _rendered(count)
    started = time.perf_counter()
    with smtplib.SMTP(HOST, port, timeout=30) as client:
        client.starttls(context=_CONTEXT)
        client.login(USER, PASSWORD)
        for payload in payloads:
            client.sendmail(USER, [RCPT], payload)
    return count / (time.perf_counter() - started)


def _bulk_aiosmtplib(port: int, count: int) -> float:
    import aiosmtplib

    payloads = _rendered(count)

    async def run() -> float:
        started = time.perf_counter()
        client = aiosmtplib.SMTP(
            hostname=HOST, port=port, start_tls=True, tls_context=_CONTEXT, timeout=30
        )
        async with client:
            await client.login(USER, PASSWORD)
            for payload in payloads:
                await client.sendmail(USER, [RCPT], payload)
        return count / (time.perf_counter() - started)

    return asyncio.run(run())


def bulk(port: int, count: int) -> dict[str, float]:
    """Messages per second on one connection (async: over 8), each sender."""
    return {
        "django": _bulk_django(port, count),
        "smtplib": _bulk_smtplib(port, count),
        "aiosmtplib": _bulk_aiosmtplib(port, count),
        "ours-data": _bulk_ours(port, count, chunking=False),
        "ours": _bulk_ours(port, count),
        # As many messages on each of the 8 connections as the others send on their one.
        "ours-async-8": _bulk_ours_async(port, count * 8, 8),
    }


# -- the run ------------------------------------------------------------------------------


def measure(rtts: list[float], calls: int, count: int) -> dict[str, Any]:
    """Start Postfix; for each round trip, a proxy and both measurements."""
    _setup_django()
    figures: dict[str, Any] = {"rtts": rtts, "calls": calls, "messages": count, "runs": {}}
    with (
        tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp,
        SubmissionPostfix(Path(tmp)) as server,
    ):
        for rtt in rtts:
            with delay_proxy(server.port, rtt) as port:
                print(f"==> latency: {rtt:g} ms round trip", flush=True)
                run = {"per_call": per_call(port, calls), "bulk": bulk(port, count)}
                figures["runs"][f"{rtt:g}"] = run
                summary = ", ".join(f"{k} {v:.0f}/s" for k, v in run["bulk"].items())
                medians = ", ".join(
                    f"{k} {statistics.median(v):.0f} ms" for k, v in run["per_call"].items()
                )
                print(f"      per call: {medians}\n      bulk: {summary}", flush=True)
    return figures


def p95(values: list[float]) -> float:
    """The 95th percentile (nearest rank)."""
    ordered = sorted(values)
    return ordered[max(0, int(round(0.95 * len(ordered))) - 1)]


def targets(figures: dict[str, Any]) -> list[tuple[str, float | None, bool | None]]:
    """Each target at the 20 ms round trip: what, the measured ratio, met (None: not run)."""
    run = figures["runs"].get(f"{TARGET_RTT:g}")
    if run is None:
        return [("targets need the 20 ms round trip", None, None)]
    call = {k: statistics.median(v) for k, v in run["per_call"].items()}
    rate = run["bulk"]
    pooled = call["ours-pool"] / call["django"]
    data = rate["ours-data"] / rate["django"]
    chunked = rate["ours"] / rate["django"]
    lanes = rate["ours-async-8"] / rate["django"]
    return [
        ("pooled send_mail() / Django's, per call (≤ 0.2)", pooled, pooled <= 0.2),
        ("one-connection bulk, DATA, / Django's (≥ 4)", data, data >= 4),
        ("one-connection bulk, CHUNKING, / Django's (≥ 8)", chunked, chunked >= 8),
        ("async over 8 connections / Django's one (≥ 20)", lanes, lanes >= 20),
    ]


def main(argv: list[str] | None = None) -> int:
    """Measure at each round trip; print; with --report, update its section and chart."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.latency", description=__doc__)
    p.add_argument("--rtt", default="0,10,20,50", help="round trips in ms (default 0,10,20,50)")
    p.add_argument("--calls", type=int, default=20, help="send_mail() calls per way (20)")
    p.add_argument("--messages", type=int, default=40, help="bulk messages per sender (40)")
    p.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    p.add_argument("--report", type=Path, help="put the figures in this report (its section)")
    a = p.parse_args(argv)
    why = unavailable()
    if why:
        print(f"latency benchmark unavailable: {why}", file=sys.stderr)
        return 2
    rtts = [float(r) for r in a.rtt.split(",") if r.strip()]
    figures = measure(rtts, a.calls, a.messages)
    for what, ratio, met in targets(figures):
        shown = "—" if ratio is None else f"{ratio:.2f}"
        print(f"    {what}: {shown} ({ {True: 'met', False: 'NOT met', None: 'n/a'}[met] })")
    if a.json:
        a.json.write_text(json.dumps(figures, indent=2))
    if a.report:
        from .report import latency_chart, latency_section, splice_section

        chart = a.report.with_name("benchmarks-latency.png")
        drawn = latency_chart(figures, chart)
        old = a.report.read_text() if a.report.is_file() else "# Benchmarks\n"
        section = latency_section(figures, chart.name if drawn else None)
        a.report.write_text(splice_section(old, section))
        print(f"==> updated {a.report}" + (f" and {chart}" if drawn else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
