"""Run the benchmark suite: ``python -m benchmarks`` (``make bench``).

Starts the sinks (Postfix's smtp-sink, and an aiosmtpd discard server in a
child process) on 127.0.0.1, times every sender on every profile with
interleaved repetitions, times rendering alone, measures the peak RSS of
sending one large message in fresh child processes, then writes
``docs/benchmarks.md`` and ``docs/benchmarks.png``.

Every loop is bounded; the whole run is stopped after ``--budget`` seconds
should it hang, and the sinks end with it.
"""

from __future__ import annotations

import argparse
import cProfile
import faulthandler
import gc
import io
import json
import pstats
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from . import outbox, profiles, real_postfix, rendering, report, rss
from .profiles import Content, Profile
from .senders import Sender, Target, all_senders
from .sinks import HOST, AiosmtpdSink, SmtpSink

ROOT = Path(__file__).resolve().parent.parent


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a smoke run: few messages, 2 repetitions")
    p.add_argument("--reps", type=int, help="repetitions per sender (default 5; quick 2)")
    p.add_argument("--messages", type=int, help="small messages per run (default 1000; quick 30)")
    p.add_argument(
        "--attachment-messages",
        type=int,
        help="attachment messages per run (default 150; quick 10)",
    )
    p.add_argument(
        "--recipient-messages",
        type=int,
        help="many-recipient messages per run (default 50; quick 10)",
    )
    p.add_argument("--recipients", type=int, default=100, help="recipients per message (100)")
    p.add_argument("--attachment-kib", type=int, default=100, help="attachment size (100 KB)")
    p.add_argument("--concurrency", "-k", type=int, default=4, help="K connections for bulk (4)")
    p.add_argument(
        "--render-messages", type=int, help="messages per rendering run (default 1000; quick 50)"
    )
    p.add_argument("--rss-mib", type=int, help="attachment size for the RSS test (25; quick 5)")
    p.add_argument(
        "--sinks",
        default="smtp-sink,aiosmtpd",
        help="comma-separated sinks: smtp-sink, aiosmtpd (default both)",
    )
    p.add_argument("--senders", help="comma-separated sender names to run (default all)")
    p.add_argument("--profiles", help="comma-separated: small, attachment, recipients (all)")
    p.add_argument(
        "--aiosmtpd-share",
        type=float,
        default=0.5,
        help="fraction of the message counts sent to the (slower, Python) aiosmtpd sink (0.5)",
    )
    p.add_argument(
        "--skip",
        default="",
        help="comma-separated parts to skip: network, real-postfix, outbox, latency, render, rss",
    )
    p.add_argument(
        "--real-postfix-messages",
        type=int,
        help="messages per repetition, one connection each, to the real Postfix "
        "(default 200; quick 20)",
    )
    p.add_argument(
        "--outbox-messages",
        type=int,
        help="messages per outbox throughput round (default 1000; quick 100)",
    )
    p.add_argument("--no-install", action="store_true", help="never apt-get install postfix")
    p.add_argument("--out", type=Path, help="report path (default docs/benchmarks.md)")
    p.add_argument("--chart", type=Path, help="chart path (default beside the report)")
    p.add_argument("--budget", type=float, default=900, help="stop everything after N s (900)")
    p.add_argument(
        "--cprofile",
        metavar="SENDER:PROFILE",
        help="profile one sender on one profile (smtp-sink) with cProfile and print the top "
        "functions instead of writing the report",
    )
    p.add_argument("--list", action="store_true", help="list the sender names and exit")
    a = p.parse_args(argv)
    quick = a.quick
    defaults = {
        "reps": (5, 2),
        "messages": (1000, 30),
        "attachment_messages": (150, 10),
        "recipient_messages": (50, 10),
        "render_messages": (1000, 50),
        "rss_mib": (25, 5),
        "real_postfix_messages": (200, 20),
        "outbox_messages": (1000, 100),
    }
    for name, (full, small) in defaults.items():
        if getattr(a, name) is None:
            setattr(a, name, small if quick else full)
        if getattr(a, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if a.concurrency < 1:
        p.error("--concurrency must be at least 1")
    if a.out is None:
        a.out = (
            Path(tempfile.gettempdir(), "amsdal-mail-bench", "benchmarks.md")
            if quick
            else ROOT / "docs" / "benchmarks.md"
        )
    if a.chart is None:
        a.chart = a.out.with_suffix(".png")
    return a


def _configure_django(port: int) -> bool:
    """Configure Django in this process; return True if django_amsdal_mail's backend imports."""
    import django
    from django.conf import settings

    settings.configure(
        EMAIL_HOST=HOST,
        EMAIL_PORT=port,
        EMAIL_TIMEOUT=30,
        # The backends need no app registered; an app of ours still being
        # written must not keep the peers from being measured.
        INSTALLED_APPS=[],
        DEFAULT_FROM_EMAIL=profiles.SENDER_ADDR,
        USE_TZ=True,
    )
    django.setup()
    try:
        import django_amsdal_mail.backend  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - any failure: measure the others
        print(f"    (django_amsdal_mail.backend not importable: {exc}; skipped)", flush=True)
        return False
    return True


def _count(a: argparse.Namespace, profile: Profile) -> int:
    return {
        "small": a.messages,
        "attachment": a.attachment_messages,
        "recipients": a.recipient_messages,
    }[profile.name]


def _measure_network(
    senders: list[Sender],
    profile: Profile,
    count: int,
    reps: int,
    target: Target,
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Return msgs/s and the client's CPU (user + system) in microseconds per message."""
    contents = [Content(profile, i) for i in range(count)]
    rates: dict[str, list[float]] = {s.name: [] for s in senders}
    cpu: dict[str, list[float]] = {s.name: [] for s in senders}
    for s in senders:  # warm-up: imports, DNS name caches, first connection
        s.run([s.build(c) for c in contents[:3]], target)
    for rep in range(reps):
        shift = rep % len(senders)
        for s in senders[shift:] + senders[:shift]:
            messages = [s.build(c) for c in contents]
            gc.collect()
            before = time.process_time()  # user + system, at clock resolution
            elapsed = s.run(messages, target)
            used = time.process_time() - before
            rates[s.name].append(count / elapsed)
            cpu[s.name].append(used * 1e6 / count)
            del messages
        line = "  ".join(f"{n}={v[-1]:,.0f}" for n, v in rates.items())
        print(f"      rep {rep + 1}/{reps}: {line}", flush=True)
    return rates, cpu


def _cprofile(
    a: argparse.Namespace, senders: list[Sender], plist: list[Profile], port: int
) -> None:
    sender_name, _, profile_name = a.cprofile.partition(":")
    sender = next((s for s in senders if s.name == sender_name), None)
    profile = next((p for p in plist if p.name == (profile_name or "small")), None)
    if sender is None or profile is None:
        raise SystemExit(f"unknown sender or profile in --cprofile {a.cprofile!r}")
    target = Target(HOST, port, a.concurrency)
    contents = [Content(profile, i) for i in range(_count(a, profile))]
    sender.run([sender.build(c) for c in contents[:3]], target)
    messages = [sender.build(c) for c in contents]
    prof = cProfile.Profile()
    prof.enable()
    elapsed = sender.run(messages, target)
    prof.disable()
    print(f"{sender.name} on {profile.name}: {len(messages) / elapsed:,.0f} msgs/s under cProfile")
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    stats.sort_stats("tottime").print_stats(30)
    stats.sort_stats("cumulative").print_stats(30)
    print(out.getvalue())


def main(argv: list[str] | None = None) -> int:
    a = _parse(sys.argv[1:] if argv is None else argv)
    if a.list:
        for s in all_senders(concurrency=a.concurrency, with_amsdal_django=True):
            print(f"{s.name:18} {s.label}")
        return 0
    started = time.monotonic()
    # A hung run ends by itself: dump where it hung and exit. The sinks end with
    # this process (aiosmtpd sees its stdin close; smtp-sink runs under timeout).
    faulthandler.dump_traceback_later(a.budget, exit=True)
    skip = {s.strip() for s in a.skip.split(",") if s.strip()}
    sink_names = [s.strip() for s in a.sinks.split(",") if s.strip()]
    for name in sink_names:
        if name not in ("smtp-sink", "aiosmtpd"):
            raise SystemExit(f"unknown sink {name!r}; use smtp-sink and/or aiosmtpd")
    plist = profiles.make_profiles(a.recipients, a.attachment_kib)
    if a.profiles:
        wanted = {p.strip() for p in a.profiles.split(",")}
        plist = [p for p in plist if p.name in wanted]
    options = {
        "reps": a.reps,
        "messages (small)": a.messages,
        "messages (attachment)": a.attachment_messages,
        "messages (recipients)": a.recipient_messages,
        "recipients per message": a.recipients,
        "attachment KB": a.attachment_kib,
        "concurrency": a.concurrency,
        "render messages": a.render_messages,
        "rss_mib": a.rss_mib,
        "sinks": ",".join(sink_names),
        "aiosmtpd share of the counts": a.aiosmtpd_share,
        "real-postfix messages": a.real_postfix_messages,
        "outbox messages": a.outbox_messages,
    }
    res = report.Results(
        options=options, command=shlex.join(["python", "-m", "benchmarks", *sys.argv[1:]])
    )
    res.profile_titles = {p.name: p.title for p in plist}

    lifetime = a.budget + 60
    smtp_sink = SmtpSink(lifetime=lifetime, install=not a.no_install)
    print(f"==> starting {smtp_sink.title} on {HOST}", flush=True)
    with smtp_sink:
        res.postfix_version = smtp_sink.version
        print(f"    smtp-sink {smtp_sink.version} on port {smtp_sink.port}", flush=True)
        has_amsdal_django = _configure_django(smtp_sink.port)
        senders = all_senders(concurrency=a.concurrency, with_amsdal_django=has_amsdal_django)
        if a.senders:
            wanted = {s.strip() for s in a.senders.split(",")}
            senders = [s for s in senders if s.name in wanted or s.name == report.BASELINE]
        res.sender_labels = {s.name: s.label for s in senders}
        if a.cprofile:
            _cprofile(a, senders, plist, smtp_sink.port)
            return 0
        if "network" not in skip:
            for sink_name in sink_names:
                sink: Any = (
                    smtp_sink if sink_name == "smtp-sink" else AiosmtpdSink(lifetime=lifetime)
                )
                res.sink_titles[sink_name] = sink.title
                if sink is not smtp_sink:
                    print(f"==> starting {sink.title}", flush=True)
                    sink.start()
                try:
                    target = Target(HOST, sink.port, a.concurrency)
                    for profile in plist:
                        n = _count(a, profile)
                        if sink_name == "aiosmtpd":
                            n = max(1, round(n * a.aiosmtpd_share))
                        print(
                            f"==> {sink_name}: {profile.title}, {n} messages x {a.reps}", flush=True
                        )
                        rates, cpu = _measure_network(senders, profile, n, a.reps, target)
                        res.network.setdefault(sink_name, {})[profile.name] = rates
                        res.cpu.setdefault(sink_name, {})[profile.name] = cpu
                finally:
                    if sink is not smtp_sink:
                        sink.stop()
        if "real-postfix" not in skip:
            _real_postfix(a, res)
        if "outbox" not in skip:
            _outbox(a, res)
        if "latency" not in skip:
            _latency(a, res)
        if "render" not in skip:
            for profile in plist:
                print(f"==> rendering: {profile.title}, {a.render_messages} messages", flush=True)
                res.rendering[profile.name] = rendering.measure(
                    profile, _render_count(a, profile), a.reps, lambda: None
                )
        if "rss" not in skip:
            modes = ["idle", "content", "ours-sync", "ours-async", "django"]
            if has_amsdal_django:
                modes.insert(4, "ours-django")
            for mode in modes:
                print(f"==> peak RSS: {rss.MODES[mode]}", flush=True)
                res.rss[mode] = rss.measure(mode, HOST, smtp_sink.port, a.rss_mib, timeout=120)
                print(f"      {res.rss[mode] / report.MiB:,.1f} MiB", flush=True)
    if not has_amsdal_django:
        res.notes.append(
            "django_amsdal_mail.backend.EmailBackend was not importable in this run, so it "
            "was not measured."
        )
    res.seconds = time.monotonic() - started
    drawn = report.write_chart(res, a.chart)
    beside = drawn and a.chart.parent.resolve() == a.out.parent.resolve()
    report.write_markdown(res, a.out, a.chart if beside else None)
    faulthandler.cancel_dump_traceback_later()
    print(f"==> wrote {a.out} and {a.chart} ({res.seconds:.0f} s)")
    for t in report.targets(res):
        state = {True: "met", False: "NOT met", None: "n/a"}[t.met]
        print(f"    {t.what}: {report.fmt_target(t)} ({state})")
    return 0


def _real_postfix(a: argparse.Namespace, res: report.Results) -> None:
    """Measure the real-Postfix profile into ``res`` (a note when it cannot run here)."""
    why = real_postfix.unavailable()
    if why:
        res.notes.append(f"The real-Postfix profile did not run: {why}.")
        return
    print(f"==> real Postfix: {a.real_postfix_messages} messages x {a.reps}", flush=True)
    with (
        tempfile.TemporaryDirectory(prefix="bench-postfix-") as tmp,
        real_postfix.SubmissionPostfix(Path(tmp)) as server,
    ):
        res.real_postfix = real_postfix.measure(server.port, a.real_postfix_messages, a.reps)


def _outbox(a: argparse.Namespace, res: report.Results) -> None:
    """Measure the outbox in a child process (it sets Django up on its own database)."""
    argv = ["--messages", str(a.outbox_messages), "--rounds", str(min(a.reps, 3))]
    if a.quick:
        argv += ["--view-messages", "50", "--inline-messages", "5"]
    res.outbox = _child_figures("outbox", outbox.unavailable(), argv, a, res)


def _latency(a: argparse.Namespace, res: report.Results) -> None:
    """Measure sending over a delayed link in a child process (it sets Django up itself)."""
    argv = ["--rtt", "0,20", "--calls", "5", "--messages", "10"] if a.quick else []
    res.latency = _child_figures("latency", real_postfix.unavailable(), argv, a, res)


def _child_figures(
    part: str, why: str | None, argv: list[str], a: argparse.Namespace, res: report.Results
) -> dict[str, Any]:
    """Run ``python -m benchmarks.PART --json F ARGV``; return its figures ({} with a note)."""
    if why:
        res.notes.append(f"The {part} benchmark did not run: {why}.")
        return {}
    with tempfile.TemporaryDirectory(prefix=f"bench-{part}-json-") as tmp:
        figures = Path(tmp, f"{part}.json")
        command = [sys.executable, "-m", f"benchmarks.{part}", "--json", str(figures), *argv]
        done = subprocess.run(command, cwd=ROOT, timeout=a.budget, check=False)
        if done.returncode != 0:
            res.notes.append(f"The {part} benchmark failed (exit status {done.returncode}).")
            return {}
        figures_read: dict[str, Any] = json.loads(figures.read_text())
        return figures_read


def _render_count(a: argparse.Namespace, profile: Profile) -> int:
    # Scale the count to the work per message so each run takes about as long.
    if profile.name == "small":
        return a.render_messages
    return max(1, a.render_messages // 5)


if __name__ == "__main__":
    sys.exit(main())
