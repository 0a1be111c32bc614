"""Write the results: ``docs/benchmarks.md`` (tables, targets, machine) and a PNG chart."""

from __future__ import annotations

import os
import platform
import statistics
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

MiB = 1024 * 1024
BASELINE = "django"  # every ratio is to Django's SMTP backend, measured in the same run


@dataclass
class Results:
    """Everything one run measured, and how."""

    options: dict[str, Any]
    command: str
    #: sink name -> profile name -> sender name -> msgs/s per repetition
    network: dict[str, dict[str, dict[str, list[float]]]] = field(default_factory=dict)
    sink_titles: dict[str, str] = field(default_factory=dict)
    #: sink name -> profile name -> sender name -> client CPU us per message, per repetition
    cpu: dict[str, dict[str, dict[str, list[float]]]] = field(default_factory=dict)
    #: profile name -> renderer -> {"render": [...], "build_render": [...]}
    rendering: dict[str, dict[str, dict[str, list[float]]]] = field(default_factory=dict)
    #: mode -> peak RSS in bytes
    rss: dict[str, int] = field(default_factory=dict)
    sender_labels: dict[str, str] = field(default_factory=dict)
    profile_titles: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    postfix_version: str = ""
    seconds: float = 0.0
    #: real Postfix (STARTTLS + AUTH): sender name -> ms per message, per repetition
    real_postfix: dict[str, list[float]] = field(default_factory=dict)
    outbox: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    latency: dict[str, Any] = field(default_factory=dict)


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _fmt_rate(values: list[float]) -> str:
    if not values:
        return "—"
    return f"{_median(values):,.0f} ({min(values):,.0f}–{max(values):,.0f})"


def _ratio(values: list[float], base: list[float]) -> float | None:
    if not values or not base:
        return None
    return _median(values) / _median(base)


def _fmt_ratio(r: float | None) -> str:
    return "—" if r is None else f"{r:.2f}x"


def machine() -> list[tuple[str, str]]:
    """Return (what, value) rows describing this machine and the versions used."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    rows = [
        ("CPU", cpu),
        ("cores", f"{os.cpu_count()} (load average at the end: {_loadavg()})"),
        ("OS", f"{platform.system()} {platform.release()}"),
        ("Python", f"{platform.python_implementation()} {platform.python_version()}"),
    ]
    for dist in ("amsdal-mail", "Django", "aiosmtplib", "aiosmtpd", "matplotlib"):
        try:
            rows.append((dist, metadata.version(dist)))
        except metadata.PackageNotFoundError:
            rows.append((dist, "not installed"))
    return rows


def _loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


@dataclass(frozen=True)
class Target:
    what: str
    measured: float | None
    goal: float
    lower_is_better: bool = False
    unit: str = "x"  #: how the goal and the figure read: "x" (a ratio) or " µs"

    @property
    def met(self) -> bool | None:
        if self.measured is None:
            return None
        if self.lower_is_better:
            return self.measured <= self.goal
        return self.measured >= self.goal


def fmt_target(t: Target) -> str:
    """The measured figure of ``t`` as its goal reads."""
    if t.unit == "x" or t.measured is None:
        return _fmt_ratio(t.measured)
    return f"{t.measured:,.0f}{t.unit}"


def targets(res: Results) -> list[Target]:
    """Return the issue's targets with what this run measured."""
    net = res.network.get("smtp-sink", {})

    def net_ratio(profile: str, sender: str) -> float | None:
        rows = net.get(profile, {})
        return _ratio(rows.get(sender, []), rows.get(BASELINE, []))

    def render_ratio(profile: str) -> float | None:
        # Building + rendering: our constructor validates (and keeps the
        # result), so rendering alone would leave out work Django does in
        # message(); the comparison counts both.
        rows = res.rendering.get(profile, {})
        ours = rows.get("ours", {}).get("build_render", [])
        return _ratio(ours, rows.get("django", {}).get("build_render", []))

    out = []
    for sender, label in (("ours-sync", "library sync"), ("ours-django", "Django backend")):
        if any(sender in rows for rows in net.values()):
            out.append(Target(f"{label}, 1 connection, small", net_ratio("small", sender), 1.5))
            out.append(
                Target(f"{label}, 1 connection, attachment", net_ratio("attachment", sender), 3.0)
            )
    k = res.options.get("concurrency")
    out.append(
        Target(f"library async, {k} connections, small", net_ratio("small", "ours-async-bulk"), 3.0)
    )
    rows = net.get("small", {})
    out.append(
        Target(
            f"library async, {k} connections, small, share of the raw sender's rate",
            _ratio(rows.get("ours-async-bulk", []), rows.get("raw-bulk", [])),
            0.15,
        )
    )
    out.append(Target("build + render, small", render_ratio("small"), 1.0))
    out.append(Target("build + render, attachment", render_ratio("attachment"), 3.0))
    ours, django = res.rss.get("ours-sync"), res.rss.get("django")
    rss_ratio = ours / django if ours and django else None
    out.append(Target("peak RSS, large attachment (ours / Django)", rss_ratio, 0.5, True))
    cpu = res.cpu.get("smtp-sink", {}).get("small", {}).get("ours-sync", [])
    out.append(
        Target(
            "client CPU per small message, library sync, 1 connection",
            _median(cpu) if cpu else None,
            120,
            True,
            " µs",
        )
    )
    return out


_READING = [
    "## How to read these figures",
    "",
    "- Against smtp-sink (C, event-driven) every Python client is CPU-bound: compare the "
    "client-CPU table with the wall time per message (1 / msgs/s). On this 2-core "
    "machine the sink and the client share the cores, so more connections help only "
    "while the client has CPU to spare.",
    "- Both amsdal_mail paths pipeline (RFC 2920) MAIL, every RCPT and DATA in one "
    "write when the server offers PIPELINING, then send the message: two round trips "
    "per message whatever the recipient count, every reply still read and mapped to "
    "its own command and recipient. In a batch on one connection both paths write "
    "each message's data together with the next message's commands: one round trip per "
    "message (smtp-sink offers no CHUNKING). smtplib, Django and aiosmtplib wait for "
    "each reply: 3 + recipients round trips.",
    "- Part of every sender's CPU is the kernel's: a write to a sink that sleeps wakes it, "
    "and on this virtual machine the wake-up costs the writer about 10 µs (perf: "
    "`sendto` -> `sock_def_readable`, a tenth of the async path's samples). The raw "
    "sender keeps the sink so busy that it seldom sleeps (about 2 µs per message), so "
    "its share shrinks for any client that does real work per message.",
    "- *raw pipelined bytes* is the floor for a Python client on the same connections: "
    "pre-rendered messages written as PIPELINING allows, replies only counted "
    "(`benchmarks/raw_sender.py`); the async path is also scored as its share of that "
    "rate.",
    "- The async path uses aiosmtplib to connect, EHLO, STARTTLS and AUTH only: its "
    "protocol keeps one parsed reply and drops data that arrives while it is unread, "
    "so it cannot take pipelined replies. The transactions run on its transport "
    "through amsdal_mail's own reply reader; a batch goes on in that reader's "
    "callbacks as replies arrive, the task waking only to connect or at the end.",
    "- The aiosmtpd sink is a Python server: it, not the client, bounds every sender there.",
    "- Where a sender's time goes: `python -m benchmarks --cprofile SENDER:PROFILE` "
    "(e.g. `ours-async-bulk:small`; `--list` names the senders).",
    "",
]


REAL_POSTFIX_TITLE = "## Sending: real Postfix, STARTTLS + AUTH, one connection per message"
_REAL_POSTFIX_LABELS = {
    "ours": "amsdal_mail send_mail()",
    "ours-async": "amsdal_mail asend_mail()",
    "django": "Django SMTP backend send_mail()",
}


def real_postfix_section(figures: dict[str, list[float]], count: int) -> list[str]:
    """Return the report's lines for the real-Postfix profile (``benchmarks.real_postfix``)."""
    lines = [
        REAL_POSTFIX_TITLE,
        "",
        "Debian's Postfix on 127.0.0.1, configured by the benchmark "
        "(`benchmarks/real_postfix.py`): STARTTLS and AUTH PLAIN required, SASL through "
        f"Dovecot's auth socket, mail discarded. {count} messages per repetition, each on a "
        "new connection (greeting, EHLO, STARTTLS, TLS handshake, EHLO, AUTH, the message, "
        "QUIT), as a request calling `send_mail()` does. Milliseconds per message: lower is "
        "better.",
        "",
        "| sender | ms per message | ratio to Django |",
        "|---|---|---|",
    ]
    base = figures.get(BASELINE, [])
    for name, values in figures.items():
        if not values:
            continue
        low, high = min(values), max(values)
        ratio = _median(values) / _median(base) if base else None
        lines.append(
            f"| {_REAL_POSTFIX_LABELS.get(name, name)} | {_median(values):.1f} "
            f"[{low:.1f}–{high:.1f}] | {_fmt_ratio(ratio)} |"
        )
    return [*lines, ""]


OUTBOX_TITLE = "## Outbox: what a view pays, and worker throughput"
_OUTBOX_LABELS = {
    "enqueue": "`enqueue()` (outbox rows + task row, committed; PostgreSQL)",
    "ours-inline": "`send_mail()` inline, amsdal_mail Django backend",
    "django-inline": "`send_mail()` inline, Django SMTP backend",
}


def outbox_section(figures: dict[str, dict[str, list[float]]], count: int) -> list[str]:
    """Return the report's lines for the outbox (``benchmarks.outbox``)."""
    from .outbox import DELAY, targets

    view, throughput = figures["view"], figures["throughput"]
    base = view.get("ours-inline", [])
    lines = [
        OUTBOX_TITLE,
        "",
        "`benchmarks/outbox.py`. **In the view**: milliseconds per message a request "
        "spends handing it over. Inline, each call opens a connection to a server that "
        f"waits {DELAY * 1000:.0f} ms before every reply and requires STARTTLS and AUTH "
        "(aiosmtpd in a child process), as a distant provider does; `enqueue()` only "
        "writes to the database (django-tasks-db's backend, a throwaway PostgreSQL "
        "cluster on 127.0.0.1). Lower is better.",
        "",
        "| way | ms per message | share of the inline send |",
        "|---|---|---|",
    ]
    for name, values in view.items():
        share = _median(values) / _median(base) if base else None
        lines.append(
            f"| {_OUTBOX_LABELS.get(name, name)} | {_median(values):.2f} "
            f"[{min(values):.2f}–{max(values):.2f}] | {'—' if share is None else f'{share:.3f}'} |"
        )
    one = throughput.get("1 worker", [])
    lines += [
        "",
        f"**Throughput**: {count} messages committed to the outbox at once, sent by "
        "`db_worker` processes (one task per message) to Postfix's `smtp-sink`, timed "
        "from the commit until every message is `done`. Messages per second: higher is "
        "better.",
        "",
        "| workers | messages/s | ratio to 1 worker |",
        "|---|---|---|",
    ]
    for name, values in throughput.items():
        ratio = _median(values) / _median(one) if one else None
        lines.append(
            f"| {name} | {_median(values):,.0f} [{min(values):,.0f}–{max(values):,.0f}] "
            f"| {_fmt_ratio(ratio)} |"
        )
    lines += ["", "Targets:", ""]
    for what, ratio, met in targets(figures):
        lines.append(f"- {what}: {ratio:.3f} ({'met' if met else 'not met'})")
    return [*lines, ""]


LATENCY_TITLE = "## Sending over a link with latency: real Postfix behind a delaying proxy"
_LATENCY_CALLS = {
    "django": "Django SMTP backend `send_mail()`",
    "ours": "amsdal_mail `send_mail()`, new connection",
    "ours-pool": "amsdal_mail `send_mail()`, `pool=True`",
}
_LATENCY_BULK = {
    "django": "Django SMTP backend `send_messages()`",
    "smtplib": "smtplib `sendmail()` loop (pre-rendered)",
    "aiosmtplib": "aiosmtplib `sendmail()` loop (pre-rendered)",
    "ours-data": "amsdal_mail, `chunking=False` (DATA)",
    "ours": "amsdal_mail (CHUNKING: BDAT pipelined)",
    "ours-async-8": "amsdal_mail async, 8 connections",
}


def latency_section(figures: dict[str, Any], chart: str | None) -> list[str]:
    """Return the report's lines for ``benchmarks.latency``."""
    import statistics

    from .latency import p95, targets

    runs: dict[str, Any] = figures["runs"]
    rtts = list(runs)
    lines = [
        LATENCY_TITLE,
        "",
        "`benchmarks/latency.py`. Debian's Postfix on 127.0.0.1 (STARTTLS and AUTH through "
        "Dovecot required; PIPELINING and CHUNKING offered; mail discarded) behind a proxy "
        "of the benchmark that delays every byte by half the round trip each way, so the "
        "latency is on the wire: a pipelined group pays one round trip, a lock-step "
        "dialogue one per command. (This machine's kernel has no `netem` for a network "
        "namespace pair; the proxy stands in.) "
        f"{figures['calls']} calls per way; {figures['messages']} messages per bulk run "
        "(as many on each of the 8 connections of the async run).",
        "",
        "**Per call** (`send_mail()` as a request makes it), milliseconds, median / p95:",
        "",
        "| sender | " + " | ".join(f"{r} ms RTT" for r in rtts) + " |",
        "|---|" + "---|" * len(rtts),
    ]
    for name, label in _LATENCY_CALLS.items():
        cells = []
        for r in rtts:
            values = runs[r]["per_call"][name]
            cells.append(f"{statistics.median(values):.1f} / {p95(values):.1f}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "**Bulk on one connection**, messages per second (ratio to Django's backend):",
        "",
        "| sender | " + " | ".join(f"{r} ms RTT" for r in rtts) + " |",
        "|---|" + "---|" * len(rtts),
    ]
    for name, label in _LATENCY_BULK.items():
        cells = []
        for r in rtts:
            rate = runs[r]["bulk"][name]
            base = runs[r]["bulk"]["django"]
            cells.append(f"{rate:,.0f} ({rate / base:.1f}x)")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += [
        "",
        (
            "On one connection, with CHUNKING, ours keeps up to 8 messages in flight (the next "
            "messages' MAIL, RCPT and BDAT with their data written before the replies to the "
            "earlier ones are read, RFC 2920 and 3030); with DATA, each message's data and the "
            "next message's MAIL, RCPT and DATA go out in one write (RFC 2920: the content may "
            "open a group), so Postfix reads them together and answers them in one write: one "
            "round trip per message, the floor with DATA, since the data may only follow a 354. "
            "Django's backend and smtplib wait four to five round trips per message, so with "
            "DATA the ratio stays under four (it nears 3.8 as a run grows). Each bulk run also "
            "pays its connection set-up (about six round trips)."
        ),
        "",
        "Targets, at a 20 ms round trip:",
        "",
    ]
    for what, ratio, met in targets(figures):
        state = {True: "met", False: "not met", None: "n/a"}[met]
        lines.append(f"- {what}: {'—' if ratio is None else f'{ratio:.2f}'} ({state})")
    if chart:
        lines += ["", f"![Latency: per call and bulk]({chart})"]
    return [*lines, ""]


def latency_chart(figures: dict[str, Any], path: Path) -> bool:
    """Draw per-call medians and bulk rates against the round trip; return True if drawn."""
    import statistics

    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs: dict[str, Any] = figures["runs"]
    if not runs:
        return False
    rtts = [float(r) for r in runs]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4))
    for name, label in _LATENCY_CALLS.items():
        medians = [statistics.median(runs[r]["per_call"][name]) for r in runs]
        left.plot(rtts, medians, marker="o", label=label.replace("`", ""))
    left.set_xlabel("round trip (ms)")
    left.set_ylabel("ms per send_mail() (median)")
    left.set_title("per call: lower is better")
    left.legend(fontsize=8)
    for name, label in _LATENCY_BULK.items():
        rates = [runs[r]["bulk"][name] for r in runs]
        right.plot(rtts, rates, marker="o", label=label.replace("`", ""))
    right.set_yscale("log")
    right.set_xlabel("round trip (ms)")
    right.set_ylabel("messages per second")
    right.set_title("bulk on one connection: higher is better")
    right.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def splice_section(text: str, section: list[str]) -> str:
    """Return report ``text`` with ``section`` in place of its old copy, the rest kept.

    A report without one gets it before ``## Rendering`` (else ``## Machine``, else at the end).
    """
    lines = text.split("\n")
    title = section[0]
    if title in lines:
        start = lines.index(title)
        end = next(
            (i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines)
        )
        del lines[start:end]
    else:
        start = len(lines)
        for heading in ("## Rendering (no network)", "## Machine"):
            found = [i for i, line in enumerate(lines) if line.startswith(heading)]
            if found:
                start = found[0]
                break
    lines[start:start] = section
    return "\n".join(lines)


def write_markdown(res: Results, path: Path, chart: Path | None) -> None:
    """Write the report to ``path``."""
    o = res.options
    lines = [
        "# Benchmarks",
        "",
        "Generated by `make bench` (`python -m benchmarks`); do not edit by hand.",
        f"Run on {datetime.now(UTC):%Y-%m-%d %H:%M UTC} in {res.seconds:.0f} s: `{res.command}`.",
        "",
        "Every figure is the median over the repetitions, with min–max in brackets; the "
        "senders' repetitions are interleaved (each repetition runs every sender once, in "
        "a rotating order), and messages are built before the timer starts. Ratios are to "
        "**Django's SMTP backend** measured in the same run. A run counts only if every "
        "message was accepted.",
        "",
    ]
    if chart is not None:
        lines += [f"![benchmark chart]({chart.name})", ""]
    lines += [
        "## Targets (against smtp-sink)",
        "",
        "| target | goal | measured | met |",
        "|---|---|---|---|",
    ]
    for t in targets(res):
        goal = f"≤ {t.goal:g}{t.unit}" if t.lower_is_better else f"≥ {t.goal:g}{t.unit}"
        met = {True: "yes", False: "**no**", None: "—"}[t.met]
        lines.append(f"| {t.what} | {goal} | {fmt_target(t)} | {met} |")
    lines += ["", *_READING]
    for sink, by_profile in res.network.items():
        lines += [f"## Sending: {res.sink_titles.get(sink, sink)}", ""]
        profile_names = list(by_profile)
        head = "| sender | " + " | ".join(
            f"{res.profile_titles.get(p, p)}: msgs/s | ratio" for p in profile_names
        )
        lines += [head + " |", "|---" * (1 + 2 * len(profile_names)) + "|"]
        senders = list(dict.fromkeys(s for rows in by_profile.values() for s in rows))
        for s in senders:
            cells = [res.sender_labels.get(s, s)]
            for p in profile_names:
                rows = by_profile[p]
                cells += [
                    _fmt_rate(rows.get(s, [])),
                    _fmt_ratio(_ratio(rows.get(s, []), rows.get(BASELINE, []))),
                ]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        cpu = res.cpu.get(sink, {})
        if cpu:
            lines += [
                "Client CPU (user + system of the benchmark process) per message, µs, median: "
                "what each sender costs the machine, whatever the wall time.",
                "",
                "| sender | "
                + " | ".join(res.profile_titles.get(p, p) for p in profile_names)
                + " |",
                "|---" * (1 + len(profile_names)) + "|",
            ]
            for s in senders:
                cells = [res.sender_labels.get(s, s)]
                cells += [f"{_median(cpu.get(p, {}).get(s, [])):,.0f}" for p in profile_names]
                lines.append("| " + " | ".join(cells) + " |")
            lines.append("")
    if res.real_postfix:
        lines += real_postfix_section(res.real_postfix, int(o.get("real-postfix messages", 0)))
    if res.outbox:
        lines += outbox_section(res.outbox, int(o.get("outbox messages", 0)))
    if res.latency:
        chart_path = path.with_name("benchmarks-latency.png")
        drawn = latency_chart(res.latency, chart_path)
        lines += latency_section(res.latency, chart_path.name if drawn else None)
    if res.rendering:
        lines += [
            "## Rendering (no network)",
            "",
            "Messages per second. *render*: message objects already built, rendered to the "
            "bytes that go on the wire (ours: `amsdal_mail.mime.render`; Django: "
            "`message().as_bytes(linesep='\\r\\n')`, what its SMTP backend calls). "
            "*build + render*: the message object is built as well (ours validates "
            "every address and header at construction).",
            "",
            "| profile | renderer | render | ratio | build + render | ratio |",
            "|---|---|---|---|---|---|",
        ]
        for p, rows in res.rendering.items():
            base = rows.get("django", {})
            for name, vals in rows.items():
                lines.append(
                    f"| {res.profile_titles.get(p, p)} | {name} | {_fmt_rate(vals['render'])} | "
                    f"{_fmt_ratio(_ratio(vals['render'], base.get('render', [])))} | "
                    f"{_fmt_rate(vals['build_render'])} | "
                    f"{_fmt_ratio(_ratio(vals['build_render'], base.get('build_render', [])))} |"
                )
        lines.append("")
    if res.rss:
        from .rss import MODES

        lines += [
            f"## Peak memory: one message with a {o.get('rss_mib')} MiB attachment",
            "",
            "Each row is a fresh child process; the figure is its peak resident set size "
            "(`ru_maxrss` from `os.wait4`), nothing subtracted. Every child imports the same "
            "modules, so *idle* is the baseline of an interpreter with those imports and "
            "*content* that plus the attachment's bytes, which any sender holds.",
            "",
            "| process | peak RSS | ratio |",
            "|---|---|---|",
        ]
        base_rss = res.rss.get("django")
        for mode, value in res.rss.items():
            ratio = (
                f"{value / base_rss:.2f}x" if base_rss and mode not in ("idle", "content") else ""
            )
            lines.append(f"| {MODES.get(mode, mode)} | {value / MiB:,.1f} MiB | {ratio} |")
        lines.append("")
    lines += ["## Machine", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in machine()]
    if res.postfix_version:
        lines.append(f"| postfix (smtp-sink) | {res.postfix_version} |")
    lines += ["", "## Settings", "", "| option | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in o.items()]
    if res.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in res.notes]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def write_chart(res: Results, path: Path) -> bool:
    """Draw the ratios to Django (network and rendering) and the peak RSS as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    panels = [(sink, rows) for sink, rows in res.network.items()]
    n = len(panels) + bool(res.rendering) + bool(res.rss)
    if not n:
        return False  # nothing was measured
    fig, axes = plt.subplots(n, 1, figsize=(12, 3.4 * n), squeeze=False)
    index = 0
    for sink, by_profile in panels:
        ax = axes[index][0]
        index += 1
        senders = list(dict.fromkeys(s for rows in by_profile.values() for s in rows))
        _grouped(ax, list(by_profile), senders, by_profile, res, res.sender_labels)
        ax.set_yscale("log")  # the many-recipients ratios dwarf the others
        ax.yaxis.set_major_locator(FixedLocator([0.5, 1, 2, 3, 5, 10, 20, 30, 50, 100]))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_title(f"sending to {res.sink_titles.get(sink, sink)}: msgs/s ÷ Django SMTP backend")
    if res.rendering:
        ax = axes[index][0]
        index += 1
        data = {
            p: {k: v["build_render"] for k, v in rows.items()} for p, rows in res.rendering.items()
        }
        labels = {
            "ours": "amsdal_mail EmailMessage() + render()",
            "django": "Django EmailMessage() + message().as_bytes()",
        }
        _grouped(ax, list(data), ["ours", "django"], data, res, labels)
        ax.set_title("building + rendering (no network): msgs/s ÷ Django")
    if res.rss:
        from .rss import MODES

        ax = axes[index][0]
        modes = list(res.rss)
        values = [res.rss[m] / MiB for m in modes]
        ax.barh([MODES.get(m, m) for m in modes], values, color="#4c72b0")
        for y, v in enumerate(values):
            ax.text(v, y, f" {v:,.0f} MiB", va="center", fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("peak RSS (MiB)")
        ax.set_title(f"peak RSS, one message with a {res.options.get('rss_mib')} MiB attachment")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def _grouped(
    ax: Any,
    groups: list[str],
    series: list[str],
    data: dict[str, dict[str, list[float]]],
    res: Results,
    labels: dict[str, str],
) -> None:
    import textwrap

    import numpy as np

    width = 0.8 / max(1, len(series))
    x = np.arange(len(groups))
    for i, s in enumerate(series):
        med, lo, hi = [], [], []
        for g in groups:
            vals, base = data[g].get(s, []), data[g].get(BASELINE, [])
            if not vals or not base:
                med.append(0.0)
                lo.append(0.0)
                hi.append(0.0)
                continue
            b = _median(base)
            m = _median(vals) / b
            med.append(m)
            lo.append(m - min(vals) / b)
            hi.append(max(vals) / b - m)
        label = labels.get(s, s)
        ax.bar(x + i * width - 0.4 + width / 2, med, width, yerr=[lo, hi], capsize=2, label=label)
    ax.axhline(1.0, color="black", linewidth=0.8, linestyle="--")
    ax.set_xticks(x)
    ax.set_xticklabels([textwrap.fill(res.profile_titles.get(g, g), 18) for g in groups])
    ax.set_ylabel("× Django")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
