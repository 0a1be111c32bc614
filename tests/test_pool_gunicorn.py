"""The pool under a preforking server: gunicorn with --preload and two workers.

The master imports tests/wsgi/pooled_mail.py, which sends one message with
``pool=True`` (the master then holds a pooled connection), and forks two
workers; every request sends a message from a worker. No connection carries
messages of two processes: each worker opened its own, never writing to the
one it inherited. Skipped, with the reason printed, only where gunicorn is not
installed; under CI=true that is a failure.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from tests.faulty_smtpd import FaultyServer
from tests.outbox.live.postgres import unavailable
from tests.smtpd import free_port

ROOT = Path(__file__).resolve().parents[1]
REQUESTS = 20


def _get(url: str, deadline: float) -> str:
    while True:
        try:
            with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback
                return str(response.read().decode())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)  # the polling interval of a bounded wait for gunicorn


def test_gunicorn_workers_never_write_to_the_masters_pooled_connection(
    faulty_server: Callable[..., FaultyServer], tmp_path: Path
) -> None:
    """Twenty requests over two workers: each connection's messages come from one process."""
    try:
        import gunicorn  # noqa: F401
    except ImportError:
        unavailable("gunicorn is not installed (pip install -e '.[dev]')")
    server = faulty_server()
    port = free_port()
    env = {
        **os.environ,
        "POOL_TEST_HOST": server.host,
        "POOL_TEST_PORT": str(server.port),
        "PYTHONPATH": str(ROOT),
    }
    command = [sys.executable, "-m", "gunicorn", "--preload", "--workers", "2"]
    command += ["--bind", f"127.0.0.1:{port}", "tests.wsgi.pooled_mail:application"]
    log = tmp_path / "gunicorn.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        answers = [_get(f"http://127.0.0.1:{port}/", deadline) for _ in range(REQUESTS)]
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
    assert all(a.endswith(" sent") for a in answers), log.read_text()
    workers = {a.split()[0] for a in answers}
    assert str(process.pid) not in workers
    by_session: dict[int, set[str]] = {}
    for message in server.messages:
        by_session.setdefault(message.session_id, set()).add(message.header("X-PID") or "")
    assert all(len(pids) == 1 for pids in by_session.values()), by_session
    (master_session,) = [s for s, pids in by_session.items() if pids == {str(process.pid)}]
    assert [m.header("Subject") for m in server.messages if m.session_id == master_session] == [
        "preload"
    ]
    assert len(server.messages) == REQUESTS + 1
    assert len(by_session) <= 1 + 2  # the master's, then at most one per worker
