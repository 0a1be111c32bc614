"""A real Postfix (Debian's ``postfix`` package) on 127.0.0.1, relaying to a test server.

:class:`PostfixRelay` writes its own ``config_directory`` (``main.cf`` and
``master.cf``) and ``queue_directory`` in a throwaway directory, listens with
``smtpd`` on a free port of 127.0.0.1, accepts mail from 127.0.0.0/8 for any
domain and relays all of it to ``relayhost`` (``[127.0.0.1]:PORT``, no DNS),
typically a :class:`~tests.dsn_smtpd.DSNRecordingServer`, so a test sees
what Postfix passes on. It is started with ``postfix -c DIR start`` and
stopped with ``postfix -c DIR stop``, then by the master's PID if need be.

Postfix refuses to run unless started as root (it drops to the ``postfix``
user itself). :func:`postfix_unavailable` says why it cannot run here, or
returns None.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

__all__ = ["POSTFIX", "PostfixRelay", "postfix_unavailable"]

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"
_DAEMON_DIRECTORY = "/usr/lib/postfix/sbin"
_START_TIMEOUT = 30.0
_STOP_TIMEOUT = 15.0

_MASTER_CF = """\
{port}    inet  n       -       n       -       -       smtpd
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
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
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
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_recipient_restrictions =
relayhost = [127.0.0.1]:{relay_port}
relay_domains =
alias_maps =
alias_database =
local_recipient_maps =
smtputf8_enable = yes
smtp_tls_security_level = none
smtpd_tls_security_level = none
smtp_dns_support_level = disabled
smtpd_peername_lookup = no
biff = no
default_destination_concurrency_limit = 1
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
"""


def postfix_unavailable() -> str | None:
    """Return why Postfix cannot be started here, or None when it can."""
    if not Path(POSTFIX).is_file():
        return "Postfix is not installed (Debian package 'postfix'; `make services` installs it)"
    if not Path(_DAEMON_DIRECTORY, "master").is_file():
        return f"Postfix's master daemon is missing from {_DAEMON_DIRECTORY}"
    if os.geteuid() != 0:
        return "Postfix must be started as root (it drops to its own user itself)"
    try:
        import pwd

        pwd.getpwnam("postfix")
    except KeyError:
        return "the 'postfix' system user is missing (reinstall the Debian package 'postfix')"
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PostfixRelay:
    """Postfix on 127.0.0.1 and a free port, relaying every message to ``relay_port``.

    Use as a context manager. ``port`` is the smtpd port; :meth:`log`
    returns Postfix's log (``maillog_file``) for assertion messages.
    """

    def __init__(
        self,
        directory: Path,
        relay_port: int,
        *,
        main_cf: str = "",
        master_cf: str = "",
        files: dict[str, str] | None = None,
    ) -> None:
        """``main_cf`` and ``master_cf`` are appended to the configuration (``{config}`` and
        ``{directory}`` in them are filled in); ``files`` are written into the configuration
        directory (lookup tables named in ``main_cf``), their text filled in alike."""
        self.directory = directory
        self.relay_port = relay_port
        self.extra_main = main_cf
        self.extra_master = master_cf
        self.files = files or {}
        self.host = "127.0.0.1"
        self.port = 0
        self.config = directory / "etc"
        self.queue = directory / "queue"
        self._log = directory / "postfix.log"
        self._master_pid: int | None = None

    def __enter__(self) -> PostfixRelay:
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
        """Return what Postfix logged so far."""
        try:
            return self._log.read_text(errors="replace")
        except OSError:
            return ""

    def _postfix(self, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [POSTFIX, "-c", str(self.config), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=dict(os.environ, MAIL_CONFIG=str(self.config)),
        )

    def start(self) -> None:
        """Write the configuration, start Postfix and wait for its greeting."""
        self.port = _free_port()
        self.config.mkdir(parents=True)
        (self.directory / "data").mkdir()
        self.queue.mkdir()
        # The directories Postfix itself writes into belong to its user.
        shutil.chown(self.directory / "data", "postfix")
        self.directory.chmod(0o755)
        names = {"config": self.config, "directory": self.directory}
        (self.config / "master.cf").write_text(
            _MASTER_CF.format(port=self.port) + self.extra_master.format(**names)
        )
        for name, text in self.files.items():
            (self.config / name).write_text(text.format(**names))
        (self.config / "main.cf").write_text(
            _MAIN_CF.format(
                config=self.config,
                queue=self.queue,
                data=self.directory / "data",
                daemon=_DAEMON_DIRECTORY,
                log=self._log,
                directory=self.directory,
                relay_port=self.relay_port,
            )
            + self.extra_main.format(**names)
        )
        # Creates the queue's subdirectories with the owners Postfix wants.
        self._postfix("set-permissions", "create-missing", timeout=60)
        started = self._postfix("start", timeout=60)
        if started.returncode != 0:
            raise RuntimeError(
                f"postfix start failed ({started.returncode}): {started.stderr.strip()}\n"
                f"{self.log()}"
            )
        pid_file = self.queue / "pid" / "master.pid"
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if self._master_pid is None and pid_file.is_file():
                text = pid_file.read_text().strip()
                self._master_pid = int(text) if text.isdigit() else None
            if self._greets():
                return
            time.sleep(0.05)
        raise RuntimeError(
            f"Postfix did not greet on {self.host}:{self.port} within {_START_TIMEOUT}s\n"
            f"{self.log()}"
        )

    def _greets(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=2) as sock:
                sock.settimeout(5)
                greeting = sock.recv(512)
                sock.sendall(b"QUIT\r\n")
                return greeting.startswith(b"220")
        except OSError:
            return False

    def stop(self) -> None:
        """Stop Postfix: ``postfix stop``, then the master's PID if it is still there."""
        if not self.config.joinpath("main.cf").is_file():
            return
        try:
            self._postfix("stop", timeout=30)
        except subprocess.TimeoutExpired:
            pass
        pid = self._master_pid
        if pid is None:
            return
        deadline = time.monotonic() + _STOP_TIMEOUT
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.05)
        if _alive(pid):
            # The master's process group holds its children.
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                os.kill(pid, signal.SIGKILL)
        self._master_pid = None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is gone for our purposes.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][:1]
    except (OSError, IndexError):
        return True
    return state != "Z"
