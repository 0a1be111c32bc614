"""SMTP servers that accept everything and keep nothing, on 127.0.0.1.

* :class:`SmtpSink` runs Postfix's ``smtp-sink`` (a C test server, fast enough
  that the client is what is measured). Only that program runs, never the
  Postfix daemon; the Debian package ``postfix`` is installed when it is missing.
* :class:`AiosmtpdSink` runs an aiosmtpd server that discards every message,
  in a child process (``python -m benchmarks._aiosmtpd_sink``).

Both listen on an ephemeral loopback port, end with the ``with`` block, and
end by themselves after ``lifetime`` seconds should the benchmark die.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

HOST = "127.0.0.1"
_SMTP_SINK_DIRS = ("/usr/sbin", "/usr/bin", "/usr/local/sbin")


def find_smtp_sink() -> str | None:
    """Return the path of ``smtp-sink``, or None."""
    found = shutil.which("smtp-sink")
    if found:
        return found
    for folder in _SMTP_SINK_DIRS:
        candidate = Path(folder, "smtp-sink")
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def install_smtp_sink() -> str:
    """Install Debian's ``postfix`` package (for ``smtp-sink``) and return its path.

    The package's maintainer scripts would start the Postfix daemon; a
    ``policy-rc.d`` that refuses every service start is put in place for the
    install (unless one exists) and removed afterwards, so only the files land.
    """
    path = find_smtp_sink()
    if path:
        return path
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise RuntimeError(
            "smtp-sink is missing; install the Debian package 'postfix' "
            "(apt-get install postfix) or run with --sinks aiosmtpd"
        )
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    policy = Path("/usr/sbin/policy-rc.d")
    made_policy = False
    if not policy.exists():
        policy.write_text("#!/bin/sh\n# benchmarks: no service starts during install\nexit 101\n")
        policy.chmod(0o755)
        made_policy = True
    try:
        print("==> installing smtp-sink (Debian package postfix)", flush=True)
        install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "postfix"]
        if subprocess.run(install, env=env, capture_output=True, timeout=600).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, timeout=600)
            subprocess.run(install, env=env, check=True, capture_output=True, timeout=600)
    finally:
        if made_policy:
            policy.unlink(missing_ok=True)
    path = find_smtp_sink()
    if not path:
        raise RuntimeError("the postfix package was installed but smtp-sink was not found")
    return path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _wait_for_greeting(port: int, proc: subprocess.Popen[bytes], deadline: float) -> bool:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection((HOST, port), timeout=1) as s:
                s.settimeout(2)
                if s.recv(512).startswith(b"220"):
                    s.sendall(b"QUIT\r\n")
                    return True
        except OSError:
            time.sleep(0.05)
    return False


class _Sink:
    name = ""
    title = ""
    port = 0
    _proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> _Sink:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        """End the server process this object started."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


class SmtpSink(_Sink):
    """Postfix's ``smtp-sink`` on 127.0.0.1 and an ephemeral port."""

    name = "smtp-sink"
    title = "Postfix smtp-sink"

    def __init__(self, *, lifetime: float, install: bool = True) -> None:
        self.lifetime = lifetime
        self.install = install
        self.version = ""

    def start(self) -> None:
        path = install_smtp_sink() if self.install else find_smtp_sink()
        if not path:
            raise RuntimeError("smtp-sink is missing (run without --no-install)")
        self.version = _postfix_version()
        # smtp-sink must drop root privileges (-u); -t bounds each command.
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        for _ in range(5):
            port = _free_port()
            # ``timeout`` ends the sink should this process die without stopping it.
            argv = [
                "timeout",
                "--kill-after=5",
                str(int(self.lifetime)),
                path,
                *user,
                "-t",
                "30",
                "-m",
                "64",
                f"inet:{HOST}:{port}",
                "128",
            ]
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
            self._proc = proc
            if _wait_for_greeting(port, proc, time.monotonic() + 10):
                self.port = port
                return
            self.stop()
        raise RuntimeError("smtp-sink did not start (5 attempts)")


def _postfix_version() -> str:
    try:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", "postfix"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


class AiosmtpdSink(_Sink):
    """An aiosmtpd server in a child process that discards every message."""

    name = "aiosmtpd"
    title = "aiosmtpd discard server (child process)"

    def __init__(
        self,
        *,
        lifetime: float,
        delay: float = 0.0,
        tls: tuple[Path, Path] | None = None,
        auth: tuple[str, str] | None = None,
    ) -> None:
        """``delay`` seconds before each reply; STARTTLS required with ``tls`` (certificate
        chain, key); AUTH required with ``auth`` (user, password)."""
        self.lifetime = lifetime
        self.extra: list[str] = []
        if delay:
            self.extra += ["--delay", str(delay)]
        if tls:
            self.extra += ["--cert", str(tls[0]), "--key", str(tls[1])]
        if auth:
            self.extra += ["--auth", f"{auth[0]}:{auth[1]}"]

    def start(self) -> None:
        fd, ready = tempfile.mkstemp(prefix="bench-aiosmtpd-")
        os.close(fd)
        try:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "benchmarks._aiosmtpd_sink",
                    "--lifetime",
                    str(self.lifetime),
                    "--port-file",
                    ready,
                    *self.extra,
                ],
                stdin=subprocess.PIPE,  # closed when this process dies: the child then exits
                stdout=subprocess.DEVNULL,
                cwd=Path(__file__).resolve().parent.parent,
            )
            self._proc = proc
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and proc.poll() is None:
                text = Path(ready).read_text().strip()
                if text:
                    self.port = int(text)
                    if _wait_for_greeting(self.port, proc, deadline):
                        return
                    break
                time.sleep(0.05)
            self.stop()
            raise RuntimeError("the aiosmtpd sink did not start")
        finally:
            os.unlink(ready)
