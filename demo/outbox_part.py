"""The outbox half of the demo: messages queued, a real worker process sends them.

The example project (its settings: ``OutboxBackend``, the ``tasks`` engine,
django-tasks-db's database backend) runs in subprocesses on a fresh SQLite
database in a temporary directory:

1. ``manage.py migrate``, then ``manage.py demo_outbox enqueue`` queues messages
   (nothing is sent: the tasks are rows in the database);
2. ``manage.py db_worker --queue-name email`` is started, a real worker process;
   it sends to a greylisting server on 127.0.0.1: ``later@example.com`` gets
   ``451`` the first time (retried after ``RETRY_BACKOFF``, 1 second here, then
   accepted), ``nobody@example.com`` gets ``550`` (final, never retried);
3. ``manage.py demo_outbox wait`` polls the outbox until every message is done
   and prints each recipient's final status; the worker is stopped by its PID;
4. what the server received is checked: every recipient at most once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from .server import GreylistingServer

MANAGE = Path(__file__).resolve().parent.parent / "example_project" / "manage.py"
TIMEOUT = 120
#: How long ``demo_outbox wait`` waits for the worker (a retry is due after 1 s).
WAIT_SECONDS = 60
#: How long the worker has to stop after SIGTERM before it is killed.
STOP_SECONDS = 15

REFUSALS = {"nobody@example.com": "550 5.1.1 No such user here"}
GREYLISTED = {"later@example.com": "451 4.7.1 Greylisted, please try again later"}
#: The recipients the worker must deliver to, each exactly once.
DELIVERED = {"alice@example.com", "bob@example.com", "later@example.com", "carol@example.com"}


def _environment(server: GreylistingServer, directory: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env.update(
        EXAMPLE_EMAIL_HOST=server.host,
        EXAMPLE_EMAIL_PORT=str(server.port),
        EXAMPLE_DB_PATH=str(Path(directory) / "db.sqlite3"),
        EXAMPLE_OUTBOX_ENGINE="tasks",
        EXAMPLE_OUTBOX_RETRY_BACKOFF="1",
        PYTHONUNBUFFERED="1",
    )
    return env


def _manage(*args: str, env: dict[str, str]) -> None:
    print(f"$ manage.py {' '.join(args)}")
    sys.stdout.flush()
    subprocess.run(
        [sys.executable, str(MANAGE), *args],
        env=env,
        cwd=MANAGE.parent.parent,
        check=True,
        timeout=TIMEOUT,
    )


def _start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    args = [
        "db_worker",
        "--queue-name",
        "email",
        "--interval",
        "0.1",
        "--no-reload",
        "--no-startup-delay",
        "--worker-id",
        "demo-worker",
    ]
    print(f"$ manage.py {' '.join(args)} &")
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, str(MANAGE), *args],
            env=env,
            cwd=MANAGE.parent.parent,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    print(f"   worker started, PID {process.pid}")
    return process


def _stop_worker(process: subprocess.Popen[bytes]) -> int:
    """Stop the worker by its PID: SIGTERM (it finishes its task), SIGKILL if it hangs."""
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=STOP_SECONDS)
    return process.returncode


def _deliveries(server: GreylistingServer) -> Counter[str]:
    """Return how many accepted messages reached each recipient."""
    return Counter(address.lower() for m in server.messages for address in m.rcpt_tos)


def run() -> None:
    """Queue messages, run a worker until they are done, print and check the outcome."""
    with (
        GreylistingServer(rcpt_replies=REFUSALS, first_replies=GREYLISTED) as server,
        tempfile.TemporaryDirectory(prefix="amsdal-mail-outbox-demo-") as directory,
    ):
        print(f"Greylisting SMTP server on {server.host}:{server.port}: {GREYLISTED}")
        print(f"and {REFUSALS}")
        env = _environment(server, directory)
        _manage("migrate", "--noinput", "-v", "0", env=env)
        _manage("demo_outbox", "enqueue", env=env)
        if server.messages:
            raise SystemExit(f"the server got {len(server.messages)} message(s) before any worker")
        log = Path(directory) / "worker.log"
        worker = _start_worker(env, log)
        try:
            _manage("demo_outbox", "wait", "--timeout", str(WAIT_SECONDS), env=env)
        except subprocess.CalledProcessError:
            print(log.read_text(errors="replace"), file=sys.stderr)
            raise
        finally:
            code = _stop_worker(worker)
            print(f"   worker (PID {worker.pid}) stopped, exit code {code}")
        _check(server)


def _check(server: GreylistingServer) -> None:
    """Print what the server received; fail if anything arrived twice or not at all."""
    deliveries = _deliveries(server)
    print(f"\nThe server accepted {len(server.messages)} message(s) from the worker:")
    for received in server.messages:
        print(f"   {received.message['Subject']!r:18} RCPT TO {received.rcpt_tos}")
    later = next(iter(GREYLISTED))
    print(
        f"{later}: RCPT TO given {server.rcpt_count(later)} time(s) "
        "(451 the first time, then accepted)"
    )
    twice = sorted(a for a, n in deliveries.items() if n > 1)
    missing = sorted(DELIVERED - set(deliveries))
    unexpected = sorted(set(deliveries) - DELIVERED)
    if twice or missing or unexpected:
        raise SystemExit(
            f"outbox demo: delivered twice {twice}, never delivered {missing}, "
            f"delivered but should not be {unexpected}"
        )
    print(f"Each of {sorted(DELIVERED)} was delivered exactly once; nothing was delivered twice.")
