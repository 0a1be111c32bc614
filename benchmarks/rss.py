"""Peak resident memory of sending one large message, each sender in a fresh process.

A small launcher process starts ``python -m benchmarks.rss MODE ...`` and
reads the child's peak RSS from ``os.wait4`` (the kernel's ``ru_maxrss`` for
that child alone).
Every mode imports the same modules, so the ``idle`` mode is the baseline of
an interpreter with those imports; ``content`` also creates the attachment's
bytes, which every sender must hold. Nothing is subtracted from the figures.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent

MODES = {
    "idle": "interpreter with the same imports (baseline)",
    "content": "baseline + the attachment's bytes",
    "ours-sync": "amsdal_mail sync",
    "ours-async": "amsdal_mail async",
    "ours-django": "django_amsdal_mail backend",
    "django": "Django SMTP backend",
}


def measure(mode: str, host: str, port: int, mib: int, timeout: float) -> int:
    """Return the peak RSS in bytes of a child that runs ``mode``.

    Linux counts the pages a forked child shares with its parent in the
    child's ``ru_maxrss``, even after ``exec``; so the measured child is
    started by a small launcher process, never by this (large) one.
    """
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.rss", "--launch", mode, host, str(port), str(mib)],
        cwd=_ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout + 30,
    )
    if out.returncode != 0:
        raise RuntimeError(f"the RSS run for {mode!r} failed:\n{out.stderr}")
    return int(out.stdout.split()[-1])


def _launch(mode: str, host: str, port: int, mib: int, timeout: float) -> int:
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.rss", mode, host, str(port), str(mib)],
        cwd=_ROOT,
        stdin=subprocess.DEVNULL,
    )
    try:
        _, status, usage = _wait4(proc, timeout)
    finally:
        if proc.returncode is None and proc.poll() is None:
            proc.kill()
            proc.wait()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"the RSS child for {mode!r} failed (status {status})")
    return int(usage.ru_maxrss) * 1024  # Linux reports KiB


def _wait4(proc: subprocess.Popen[bytes], timeout: float) -> tuple[int, int, os.struct_rusage]:
    import time

    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return pid, status, usage
        if time.monotonic() > deadline:
            proc.kill()
            raise TimeoutError(f"the RSS child did not finish within {timeout}s")
        time.sleep(0.02)


def _child(mode: str, host: str, port: int, mib: int) -> None:
    import asyncio

    import django
    from django.conf import settings

    settings.configure(
        EMAIL_HOST=host,
        EMAIL_PORT=port,
        EMAIL_TIMEOUT=60,
        INSTALLED_APPS=[],
        DEFAULT_FROM_EMAIL="sender@example.com",
    )
    django.setup()
    import django.core.mail.backends.smtp  # noqa: F401

    import amsdal_mail  # noqa: F401
    import amsdal_mail.backends.smtp  # noqa: F401

    try:
        import django_amsdal_mail.backend  # noqa: F401
    except Exception:  # noqa: BLE001 - measured only when it imports
        if mode == "ours-django":
            raise
    from . import profiles

    if mode == "idle":
        return
    content = os.urandom(mib * 1024 * 1024)  # one copy, no temporary
    if mode == "content":
        return
    fields = profiles.Content(profiles.Profile("rss", "rss"), 0)
    fields.attachment = content
    del content
    if mode in ("ours-sync", "ours-async"):
        from amsdal_mail.backends.smtp import SMTPBackend

        message = profiles.ours(fields)
        del fields
        backend = SMTPBackend(host=host, port=port, timeout=60)
        if mode == "ours-sync":
            status = backend.send_messages([message])
        else:
            status = asyncio.run(backend.asend_messages([message]))
        if not status.is_success:
            raise SystemExit(f"not sent: {status!r}")
        return
    path = {
        "ours-django": "django_amsdal_mail.backend.EmailBackend",
        "django": "django.core.mail.backends.smtp.EmailBackend",
    }[mode]
    from django.utils.module_loading import import_string

    dj_message = profiles.django(fields)
    del fields
    if import_string(path)(timeout=60).send_messages([dj_message]) != 1:
        raise SystemExit("not sent")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--launch", action="store_true", help="run MODE in a child, print its peak")
    parser.add_argument("--timeout", type=float, default=120)
    parser.add_argument("mode", choices=sorted(MODES))
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("mib", type=int)
    a = parser.parse_args()
    if a.launch:
        print(_launch(a.mode, a.host, a.port, a.mib, a.timeout))
    else:
        _child(a.mode, a.host, a.port, a.mib)
