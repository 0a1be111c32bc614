"""The real command in child processes: the console script, ``python -m amsdal_mail``, a terminal.

The password prompt and the progress bar need a terminal: the child gets a
pseudo-terminal as its controlling terminal (a new session, ``TIOCSCTTY``),
as a shell would give it. Every wait on the child is bounded.
"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from tests.smtpd import ServerFactory

ROOT = Path(__file__).resolve().parents[2]
WAIT = 30.0  # seconds any child may take


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMSDAL_EMAIL_")}
    env.pop("SSL_CERT_FILE", None)
    env.update(extra)
    return env


def _script() -> str:
    """Return the installed console script beside this interpreter."""
    path = Path(sys.executable).parent / "amsdal-mail"
    assert path.exists(), f"{path} is missing: install the package (make installs it, pip -e .)"
    return str(path)


def test_console_script_check_json(smtp_server: ServerFactory, ca_file: str) -> None:
    server = smtp_server(tls="starttls")
    argv = [_script(), "check", "--host", server.host, "--port", str(server.port)]
    done = subprocess.run(
        [*argv, "--starttls", "--json"],
        capture_output=True,
        text=True,
        timeout=WAIT,
        env=_env(SSL_CERT_FILE=ca_file),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads(done.stdout)
    assert data["ok"] is True and data["tls"]["version"] == "TLSv1.3"


def test_console_script_untrusted(smtp_server: ServerFactory) -> None:
    server = smtp_server(tls="ssl")
    done = subprocess.run(
        [_script(), "check", "--host", server.host, "--port", str(server.port), "--ssl"],
        capture_output=True,
        text=True,
        timeout=WAIT,
        env=_env(),
    )
    assert done.returncode == 4
    assert "certificate verify failed" in done.stdout


def test_python_m_send_refused(smtp_server: ServerFactory) -> None:
    server = smtp_server(rcpt_replies={"nobody@example.com": "550 5.1.1 No such user"})
    done = subprocess.run(
        [sys.executable, "-m", "amsdal_mail", "send", "--from", "me@example.com"]
        + ["--to", "ok@example.com", "--to", "nobody@example.com", "--body", "hi"],
        capture_output=True,
        text=True,
        timeout=WAIT,
        cwd=ROOT,
        env=_env(AMSDAL_EMAIL_HOST=server.host, AMSDAL_EMAIL_PORT=str(server.port)),
    )
    assert done.returncode == 6, done.stderr
    assert "rejected nobody@example.com 550 5.1.1 No such user" in done.stdout
    assert server.wait_for_messages(1)[0].rcpt_tos == ["ok@example.com"]


def test_help_lists_the_commands() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "amsdal_mail", "--help"],
        capture_output=True,
        text=True,
        timeout=WAIT,
        cwd=ROOT,
        env=_env(),
    )
    assert done.returncode == 0
    for word in ("check", "send", "bounces", "Exit status: 0 ok, 2 usage"):
        assert word in done.stdout


# -- on a terminal ---------------------------------------------------------------------------

_ON_TERMINAL = (
    "import fcntl, runpy, sys, termios\n"
    "fcntl.ioctl(0, termios.TIOCSCTTY, 0)\n"
    "sys.argv = ['amsdal-mail', *sys.argv[1:]]\n"
    "runpy.run_module('amsdal_mail', run_name='__main__')\n"
)


class Terminal:
    """A child process whose standard streams and controlling terminal are one pty."""

    def __init__(self, argv: Sequence[str], env: dict[str, str]) -> None:
        self.master, slave = pty.openpty()
        self.process = subprocess.Popen(
            [sys.executable, "-c", _ON_TERMINAL, *argv],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
            cwd=ROOT,
            env=env,
        )
        os.close(slave)
        self.output = b""

    def read_until(self, text: bytes, deadline: float) -> None:
        """Read until ``text`` was printed (or the child ended); fail after ``deadline``."""
        while text not in self.output:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"timed out waiting for {text!r}; got {self.output!r}"
            ready, _, _ = select.select([self.master], [], [], remaining)
            if ready:
                try:
                    chunk = os.read(self.master, 4096)
                except OSError:  # EIO: the child closed the terminal
                    chunk = b""
                if not chunk:
                    return
                self.output += chunk

    def finish(self, deadline: float) -> int:
        """Read everything until the child exits; return its exit status."""
        self.read_until(b"\0never printed\0", deadline)
        code = self.process.wait(max(0.1, deadline - time.monotonic()))
        os.close(self.master)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(WAIT)


def test_password_prompt_on_the_terminal(smtp_server: ServerFactory, ca_file: str) -> None:
    server = smtp_server(tls="ssl", auth={"alice@example.com": "correct horse"})
    argv = ["check", "--host", server.host, "--port", str(server.port), "--ssl"]
    terminal = Terminal([*argv, "--user", "alice@example.com"], _env(SSL_CERT_FILE=ca_file))
    deadline = time.monotonic() + WAIT
    try:
        prompt = f"Password for alice@example.com at 127.0.0.1:{server.port}: ".encode()
        terminal.read_until(prompt, deadline)
        os.write(terminal.master, b"correct horse\n")
        code = terminal.finish(deadline)
    finally:
        terminal.kill()
    text = terminal.output.decode()
    assert code == 0, text
    assert "AUTH: PLAIN as 'alice@example.com' (password): 235" in text
    assert "correct horse" not in text  # not echoed


def test_progress_bar_on_a_terminal(smtp_server: ServerFactory, tmp_path: Path) -> None:
    server = smtp_server()
    batch = tmp_path / "batch.jsonl"
    lines = [{"from": "me@example.com", "to": f"r{i}@example.com"} for i in range(5)]
    batch.write_text("\n".join(json.dumps(line) for line in lines) + "\n", encoding="utf-8")
    argv = ["send", "--host", server.host, "--port", str(server.port), "--batch", str(batch)]
    terminal = Terminal(argv, _env())
    deadline = time.monotonic() + WAIT
    try:
        code = terminal.finish(deadline)
    finally:
        terminal.kill()
    text = terminal.output.decode()
    assert code == 0, text
    assert "\r[" + "#" * 30 + "] 5/5 messages  sent 5" in text
    assert "5 recipient(s): sent 5" in text


def test_progress_bar_with_concurrency(smtp_server: ServerFactory, tmp_path: Path) -> None:
    server = smtp_server()
    batch = tmp_path / "batch.jsonl"
    lines = [{"from": "me@example.com", "to": f"r{i}@example.com"} for i in range(6)]
    batch.write_text("\n".join(json.dumps(line) for line in lines) + "\n", encoding="utf-8")
    argv = ["send", "--host", server.host, "--port", str(server.port), "--batch", str(batch)]
    terminal = Terminal([*argv, "--concurrency", "2"], _env())
    deadline = time.monotonic() + WAIT
    try:
        code = terminal.finish(deadline)
    finally:
        terminal.kill()
    text = terminal.output.decode()
    assert code == 0, text
    assert "] 6/6 messages  sent 6" in text
    assert len(server.wait_for_messages(6)) == 6
