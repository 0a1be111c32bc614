"""A real Postfix on 127.0.0.1 as a submission server: STARTTLS, then AUTH via Dovecot SASL.

:class:`SubmissionPostfix` writes, in a throwaway directory, a self-signed
certificate, a Dovecot configuration serving only its auth socket (a
``passwd-file`` with one user) and a Postfix configuration whose ``smtpd``
on a free port requires STARTTLS and AUTH (``smtpd_sasl_type = dovecot``)
and discards every message (``default_transport = discard``), so only the
submission is measured. Debian's ``postfix`` and ``dovecot-core`` must be
installed (``make services``); Postfix must be started as root.

``python -m benchmarks.real_postfix`` sends ``--count`` messages, one
connection each (a new user's ``send_mail()`` per request), with ours and
with Django's SMTP backend, and prints milliseconds per message.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = ["SubmissionPostfix", "measure", "unavailable"]

HOST = "127.0.0.1"
USER = "bench@postfix.test"
PASSWORD = "bench-password"
_DAEMON_DIRECTORY = "/usr/lib/postfix/sbin"
_START_TIMEOUT = 30.0

_MASTER_CF = """\
{port}    inet  n       -       n       -       -       smtpd
  -o smtpd_tls_security_level=encrypt
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_tls_auth_only=yes
  -o smtpd_client_restrictions=permit_sasl_authenticated,reject
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
postlog   unix-dgram n  -       n       -       1       postlogd
"""

_MAIN_CF = """\
compatibility_level = 3.6
config_directory = {config}
queue_directory = {queue}
data_directory = {data}
daemon_directory = {daemon}
command_directory = /usr/sbin
mail_owner = postfix
setgid_group = postdrop
maillog_file = {log}
maillog_file_prefixes = {directory}
myhostname = postfix.test
mydomain = postfix.test
myorigin = postfix.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.1/32
default_transport = discard
relay_transport = discard
alias_maps =
alias_database =
local_recipient_maps =
smtpd_tls_cert_file = {cert}
smtpd_tls_key_file = {key}
smtpd_sasl_type = dovecot
smtpd_sasl_path = private/auth
smtpd_peername_lookup = no
smtp_dns_support_level = disabled
anvil_rate_time_unit = 60s
smtpd_client_connection_rate_limit = 0
smtpd_client_message_rate_limit = 0
biff = no
"""

_DOVECOT_CONF = """\
base_dir = {base}
state_dir = {state}
log_path = {log}
protocols =
ssl = no
auth_mechanisms = plain login
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {passwd}
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home=/nonexistent
}}
service auth {{
  unix_listener {socket} {{
    mode = 0660
    user = postfix
    group = postfix
  }}
}}
service anvil {{
  chroot =
}}
default_internal_user = dovenull
default_login_user = dovenull
"""


def unavailable() -> str | None:
    """Return why the submission Postfix cannot run here, or None when it can."""
    for program in ("postfix", "dovecot", "openssl"):
        if shutil.which(program) is None and not Path("/usr/sbin", program).is_file():
            return f"{program} is not installed (`make services` installs postfix, dovecot-core)"
    if os.geteuid() != 0:
        return "Postfix must be started as root (it drops to its own user itself)"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


class SubmissionPostfix:
    """Postfix + Dovecot SASL on 127.0.0.1: STARTTLS and AUTH PLAIN required, mail discarded."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = 0
        self.config = directory / "etc"
        self.queue = directory / "queue"
        self._dovecot: subprocess.Popen[bytes] | None = None
        self._master_pid: int | None = None

    def __enter__(self) -> SubmissionPostfix:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def log(self) -> str:
        """Return Postfix's and Dovecot's logs so far."""
        parts = []
        for name in ("postfix.log", "dovecot.log"):
            try:
                parts.append((self.directory / name).read_text(errors="replace"))
            except OSError:
                pass
        return "\n".join(parts)

    def _postfix(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["postfix", "-c", str(self.config), *args],
            capture_output=True,
            text=True,
            timeout=60,
            env=dict(os.environ, MAIL_CONFIG=str(self.config)),
        )

    def start(self) -> None:
        """Write the configurations, start Dovecot and Postfix, wait for the greeting."""
        d = self.directory
        d.chmod(0o755)
        self.port = _free_port()
        for sub in ("etc", "queue", "data", "dovecot", "dovecot-state"):
            (d / sub).mkdir()
        shutil.chown(d / "data", "postfix")
        cert, key = d / "etc" / "cert.pem", d / "etc" / "key.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"]
            + ["-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
            check=True,
            capture_output=True,
            timeout=60,
        )
        (self.config / "master.cf").write_text(_MASTER_CF.format(port=self.port))
        (self.config / "main.cf").write_text(
            _MAIN_CF.format(
                config=self.config,
                queue=self.queue,
                data=d / "data",
                daemon=_DAEMON_DIRECTORY,
                log=d / "postfix.log",
                directory=d,
                cert=cert,
                key=key,
            )
        )
        self._postfix("set-permissions", "create-missing")
        private = self.queue / "private"
        private.mkdir(mode=0o700, exist_ok=True)
        shutil.chown(private, "postfix")
        passwd = d / "dovecot" / "passwd"
        passwd.write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
        conf = d / "dovecot" / "dovecot.conf"
        conf.write_text(
            _DOVECOT_CONF.format(
                base=d / "dovecot" / "run",
                state=d / "dovecot-state",
                log=d / "dovecot.log",
                passwd=passwd,
                socket=self.queue / "private" / "auth",
            )
        )
        self._dovecot = subprocess.Popen(
            ["dovecot", "-F", "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=open(d / "dovecot.stderr", "wb"),  # noqa: SIM115 - the child keeps it
        )
        started = self._postfix("start")
        if started.returncode != 0:
            raise RuntimeError(
                f"postfix start failed: {started.stdout}{started.stderr}\n{self.log()}"
            )
        pid_file = self.queue / "pid" / "master.pid"
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if self._master_pid is None and pid_file.is_file():
                text = pid_file.read_text().strip()
                self._master_pid = int(text) if text.isdigit() else None
            if self._dovecot.poll() is not None:
                raise RuntimeError(f"dovecot exited ({self._dovecot.returncode})\n{self.log()}")
            if (self.queue / "private" / "auth").exists() and self._greets():
                return
            time.sleep(0.05)
        raise RuntimeError(f"Postfix did not come up on {HOST}:{self.port}\n{self.log()}")

    def _greets(self) -> bool:
        try:
            with socket.create_connection((HOST, self.port), timeout=2) as sock:
                sock.settimeout(5)
                ok = sock.recv(512).startswith(b"220")
                sock.sendall(b"QUIT\r\n")
                return ok
        except OSError:
            return False

    def stop(self) -> None:
        """Stop Postfix (``postfix stop``, then its master's PID) and Dovecot (by PID)."""
        if (self.config / "main.cf").is_file():
            try:
                self._postfix("stop")
            except subprocess.TimeoutExpired:
                pass
        pid = self._master_pid
        if pid is not None:
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and _alive(pid):
                time.sleep(0.05)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
            self._master_pid = None
        proc = self._dovecot
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self._dovecot = None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return True


def unverified_context() -> ssl.SSLContext:
    """A client TLS context that takes the benchmark's self-signed certificate (no check)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _settings(port: int) -> dict[str, Any]:
    ctx = unverified_context()
    return {"host": HOST, "port": port, "username": USER, "password": PASSWORD, "ctx": ctx}


def backend_options(port: int) -> dict[str, Any]:
    """Return our SMTP backend options for the server on ``port`` (unverified TLS)."""
    return {
        "host": HOST,
        "port": port,
        "username": USER,
        "password": PASSWORD,
        "use_tls": True,
        "ssl_context": _settings(port)["ctx"],
        "timeout": 30,
    }


def _send_ours(port: int, count: int) -> float:
    """Return seconds for ``count`` send_mail() calls of ours, one connection each."""
    import amsdal_mail

    backend_kwargs = backend_options(port)
    start = time.perf_counter()
    for i in range(count):
        connection = amsdal_mail.get_connection("smtp", **backend_kwargs)
        status = amsdal_mail.send_mail(
            f"bench {i}", "a short text body\n", USER, ["rcpt@example.test"], connection=connection
        )
        if status.has_failures:
            raise RuntimeError(f"message {i} not sent: {status}")
    return time.perf_counter() - start


def _send_ours_async(port: int, count: int) -> float:
    """Return seconds for ``count`` asend_mail() calls of ours, one connection each."""
    import asyncio

    import amsdal_mail

    backend_kwargs = backend_options(port)

    async def run() -> float:
        start = time.perf_counter()
        for i in range(count):
            connection = amsdal_mail.get_connection("smtp", **backend_kwargs)
            status = await amsdal_mail.asend_mail(
                f"bench {i}",
                "a short text body\n",
                USER,
                ["rcpt@example.test"],
                connection=connection,
            )
            if status.has_failures:
                raise RuntimeError(f"message {i} not sent: {status}")
        return time.perf_counter() - start

    return asyncio.run(run())


def _send_django(port: int, count: int) -> float:
    """Return seconds for ``count`` Django send_mail() calls, a new SMTP backend each."""
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend")
        django.setup()
    from django.core.mail import get_connection, send_mail
    from django.core.mail.backends import smtp

    # The server's certificate is self-signed: the same unverified context as ours.
    smtp.EmailBackend.ssl_context = _settings(port)["ctx"]  # type: ignore[assignment]
    options = {"host": HOST, "port": port, "username": USER, "password": PASSWORD}
    start = time.perf_counter()
    for i in range(count):
        connection = get_connection(
            "django.core.mail.backends.smtp.EmailBackend", use_tls=True, timeout=30, **options
        )
        sent = send_mail(
            f"bench {i}", "a short text body\n", USER, ["rcpt@example.test"], connection=connection
        )
        if sent != 1:
            raise RuntimeError(f"Django message {i} not sent")
    return time.perf_counter() - start


def measure(port: int, count: int, rounds: int) -> dict[str, list[float]]:
    """Return ms per message for each sender, one value per round (alternating senders)."""
    senders = {"ours": _send_ours, "ours-async": _send_ours_async, "django": _send_django}
    out: dict[str, list[float]] = {name: [] for name in senders}
    for send in senders.values():
        send(port, 5)  # warm-up: imports, connection set-up paths
    for _ in range(rounds):
        for name, send in senders.items():
            out[name].append(send(port, count) * 1000 / count)
    return out


def main(argv: list[str] | None = None) -> int:
    """Start the submission Postfix, measure both senders, print ms per message."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.real_postfix", description=__doc__)
    p.add_argument("--count", type=int, default=200, help="messages per round (default 200)")
    p.add_argument("--rounds", type=int, default=3, help="rounds per sender (default 3)")
    p.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    p.add_argument(
        "--report",
        type=Path,
        help="put the figures in this report (docs/benchmarks.md), its other sections kept",
    )
    p.add_argument(
        "--serve", action="store_true", help="start the server, print its port, wait for Enter"
    )
    a = p.parse_args(argv)
    why = unavailable()
    if why:
        print(f"real Postfix profile unavailable: {why}", file=sys.stderr)
        return 2
    with (
        tempfile.TemporaryDirectory(prefix="bench-postfix-") as tmp,
        SubmissionPostfix(Path(tmp)) as server,
    ):
        if a.serve:
            print(server.port, flush=True)
            sys.stdin.readline()
            return 0
        figures = measure(server.port, a.count, a.rounds)
    for name, values in figures.items():
        shown = ", ".join(f"{v:.1f}" for v in values)
        median = sorted(values)[len(values) // 2]
        print(f"{name:10s} ms/message (one connection each): median {median:.1f}  [{shown}]")
    if a.json:
        a.json.write_text(json.dumps(figures, indent=2))
    if a.report:
        from .report import real_postfix_section, splice_section

        old = a.report.read_text() if a.report.is_file() else "# Benchmarks\n"
        a.report.write_text(splice_section(old, real_postfix_section(figures, a.count)))
        print(f"==> updated {a.report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
