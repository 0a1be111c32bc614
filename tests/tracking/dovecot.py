"""A real IMAP server for the tests: Debian's Dovecot (``dovecot-imapd``) on 127.0.0.1.

:class:`DovecotIMAP` writes, in a throwaway directory, a certificate for
127.0.0.1 signed by a ``trustme`` CA of the test, a ``passwd-file`` with one
user and a Dovecot configuration that serves only IMAPS on a free port of
127.0.0.1 (plain IMAP on another, STARTTLS offered, no login before TLS),
Maildir under the directory, run as ``nobody``. It runs ``dovecot -F`` as a
child, waits for its greeting (bounded polling) and stops it by PID.
:meth:`DovecotIMAP.append` puts a message into the mailbox over IMAP, as a
delivery would.

:func:`dovecot_unavailable` says why it cannot run here, or returns None; the
``dovecot`` fixture (module-scoped, offered by tests/conftest.py) starts one,
skipping with the reason printed only where it cannot run (a failure under CI=true).
"""

from __future__ import annotations

import contextlib
import imaplib
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import pytest
import trustme

from tests.outbox.live.postgres import unavailable
from tests.smtpd import free_port

__all__ = ["PASSWORD", "USER", "DovecotIMAP", "dovecot", "dovecot_unavailable"]

USER = "reports@returns.test"
PASSWORD = "imap secret/with%odd@chars"  # no ":" (the passwd-file separator)
_IMAP = Path("/usr/lib/dovecot/imap")
_START_TIMEOUT = 30.0

_CONF = """\
base_dir = {base}
state_dir = {state}
log_path = {log}
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
disable_plaintext_auth = yes
auth_mechanisms = plain login
mail_location = maildir:{home}/%u/Maildir
first_valid_uid = 1
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {passwd}
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={home}/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {plain_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
service stats {{
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
default_internal_user = nobody
default_login_user = nobody
"""


def dovecot_unavailable() -> str | None:
    """Return why Dovecot's IMAP server cannot run here, or None."""
    if shutil.which("dovecot") is None:
        return "Dovecot is not installed (Debian 'dovecot-core'; `make services` installs it)"
    if not _IMAP.is_file():
        return "Dovecot's IMAP server is not installed (Debian 'dovecot-imapd'; make services)"
    if os.geteuid() != 0:
        return "the Dovecot fixture runs as root (it drops to nobody for the mailboxes)"
    return None


class DovecotIMAP:
    """Dovecot serving one user's Maildir over IMAPS (``port``) and IMAP + STARTTLS."""

    def __init__(self) -> None:
        self.host = "127.0.0.1"
        self.port = 0
        self.plain_port = 0
        self.authority = trustme.CA()
        self.directory = Path(tempfile.mkdtemp(prefix="amsdal-dovecot-"))
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> DovecotIMAP:
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

    @property
    def ca_file(self) -> Path:
        """The CA certificate (PEM) that signed the server's certificate."""
        return self.directory / "ca.pem"

    def client_context(self) -> ssl.SSLContext:
        """A client TLS context trusting the server (and checking its name, 127.0.0.1)."""
        return ssl.create_default_context(cafile=str(self.ca_file))

    def url(self, mailbox: str = "", *, scheme: str = "imaps", password: str = PASSWORD) -> str:
        """The mailbox's URL (user and password percent-encoded)."""
        from urllib.parse import quote

        port = self.port if scheme == "imaps" else self.plain_port
        login = quote(USER, safe="") + (":" + quote(password, safe="") if password else "")
        return f"{scheme}://{login}@{self.host}:{port}/{quote(mailbox)}"

    def log(self) -> str:
        """What Dovecot logged so far."""
        path = self.directory / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self) -> None:
        """Write the configuration, start Dovecot, wait until it greets on IMAPS."""
        d = self.directory
        d.chmod(0o755)
        nobody = pwd.getpwnam("nobody")
        for sub in ("run", "state", "home"):
            (d / sub).mkdir()
        os.chown(d / "home", nobody.pw_uid, nobody.pw_gid)
        self.authority.cert_pem.write_to_path(str(self.ca_file))
        certificate = self.authority.issue_cert(self.host, "localhost")
        certificate.cert_chain_pems[0].write_to_path(str(d / "cert.pem"))
        for extra in certificate.cert_chain_pems[1:]:
            extra.write_to_path(str(d / "cert.pem"), append=True)
        certificate.private_key_pem.write_to_path(str(d / "key.pem"))
        (d / "key.pem").chmod(0o600)
        (d / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
        self.port, self.plain_port = free_port(), free_port()
        conf = d / "dovecot.conf"
        conf.write_text(
            _CONF.format(
                base=d / "run",
                state=d / "state",
                log=d / "dovecot.log",
                cert=d / "cert.pem",
                key=d / "key.pem",
                home=d / "home",
                passwd=d / "passwd",
                uid=nobody.pw_uid,
                gid=nobody.pw_gid,
                port=self.port,
                plain_port=self.plain_port,
            )
        )
        with (d / "dovecot.stderr").open("wb") as stderr:
            self._process = subprocess.Popen(
                ["dovecot", "-F", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=stderr
            )
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"dovecot exited ({self._process.returncode}):\n"
                    f"{(d / 'dovecot.stderr').read_text(errors='replace')}{self.log()}"
                )
            if self._greets():
                return
            time.sleep(0.05)
        raise RuntimeError(f"Dovecot did not greet on {self.host}:{self.port}\n{self.log()}")

    def _greets(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=2) as raw:
                with self.client_context().wrap_socket(raw, server_hostname=self.host) as sock:
                    sock.settimeout(5)
                    return sock.recv(512).startswith(b"* OK")
        except (OSError, ssl.SSLError):
            return False

    def connect(self) -> imaplib.IMAP4_SSL:
        """A logged-in IMAPS connection of the test."""
        connection = imaplib.IMAP4_SSL(
            self.host, self.port, ssl_context=self.client_context(), timeout=10
        )
        connection.login(USER, PASSWORD)
        return connection

    def append(self, raw: bytes, mailbox: str = "INBOX") -> None:
        """Put ``raw`` into ``mailbox`` (created when missing) over IMAP."""
        connection = self.connect()
        try:
            connection.create(f'"{mailbox}"')  # "already exists" is fine
            status, data = connection.append(f'"{mailbox}"', None, None, raw)
            assert status == "OK", data
        finally:
            connection.logout()

    def flags(self, mailbox: str = "INBOX") -> list[str]:
        """Each message's flags, in order."""
        connection = self.connect()
        try:
            connection.select(f'"{mailbox}"', readonly=True)
            _, data = connection.fetch("1:*", "(FLAGS)")
            return [d.decode() for d in data if isinstance(d, bytes)]
        finally:
            connection.logout()

    def stop(self) -> None:
        """End Dovecot by its PID and remove the directory."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        with contextlib.suppress(OSError):
            shutil.rmtree(self.directory)


@pytest.fixture(scope="module")
def dovecot() -> Iterator[DovecotIMAP]:
    """Dovecot for the module, stopped by its PID afterwards."""
    why = dovecot_unavailable()
    if why:
        unavailable(why)
    with DovecotIMAP() as server:
        yield server
