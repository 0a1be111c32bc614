"""The outbox benchmark runs end to end (tiny counts) and its report section says what it measured.

``python -m benchmarks.outbox`` in a child process: a throwaway PostgreSQL
cluster, the aiosmtpd server that waits before each reply and requires
STARTTLS and AUTH, Postfix's smtp-sink and real ``db_worker`` processes.
The figures are only checked for shape and sense here; their values belong
to ``docs/benchmarks.md``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.outbox import DELAY, targets, unavailable
from benchmarks.report import OUTBOX_TITLE, outbox_section, splice_section
from tests.outbox.live.postgres import unavailable as component_missing

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.default_env_only  # one run is enough; the figures do not change by Django


def test_the_outbox_benchmark_measures_both_parts(tmp_path: Path) -> None:
    """Every way in the view and both worker counts get a figure per round; targets computed."""
    why = unavailable()
    if why:
        component_missing(why)
    figures_path = tmp_path / "outbox.json"
    argv = [sys.executable, "-m", "benchmarks.outbox", "--json", str(figures_path)]
    argv += ["--view-messages", "10", "--inline-messages", "2", "--messages", "40"]
    done = subprocess.run(
        [*argv, "--rounds", "1"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    figures = json.loads(figures_path.read_text())
    assert set(figures["view"]) == {"enqueue", "ours-inline", "django-inline"}
    assert set(figures["throughput"]) == {"1 worker", "2 workers"}
    view = figures["view"]
    # Inline, each message waits for at least greeting, EHLO, STARTTLS, EHLO, AUTH, MAIL,
    # RCPT, DATA, the data and QUIT: ten delayed replies.
    assert min(view["ours-inline"] + view["django-inline"]) >= 10 * DELAY * 1000
    assert 0 < view["enqueue"][0] < view["ours-inline"][0]
    assert all(rate > 0 for rates in figures["throughput"].values() for rate in rates)
    assert [what for what, _, _ in targets(figures)] == [
        "enqueue() / synchronous send_mail() in the view (≤ 0.05)",
        "2 workers / 1 worker throughput (≥ 1.6)",
    ]
    assert "enqueue() / synchronous send_mail()" in done.stdout


def test_the_report_section_replaces_its_old_copy_only() -> None:
    """The section goes before Rendering; a second splice replaces it; the rest is kept."""
    figures = {
        "view": {"enqueue": [2.0, 3.0, 2.5], "ours-inline": [200.0, 210.0, 205.0]},
        "throughput": {"1 worker": [60.0, 62.0, 61.0], "2 workers": [110.0, 118.0, 115.0]},
    }
    report = "# Benchmarks\n\n## Sending\n\nfigures\n\n## Rendering (no network)\n\nmore\n"
    once = splice_section(report, outbox_section(figures, 1000))
    twice = splice_section(once, outbox_section(figures, 1000))
    assert once == twice
    assert once.index("## Sending") < once.index(OUTBOX_TITLE) < once.index("## Rendering")
    assert "| 2 workers | 115 [110–118] | 1.89x |" in once
    assert "- enqueue() / synchronous send_mail() in the view (≤ 0.05): 0.012 (met)" in once
