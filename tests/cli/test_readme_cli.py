"""README's "Command line" section, followed literally.

Its shell commands run, as written, through the installed console script
against a STARTTLS + AUTH server on 127.0.0.1: only ``smtp.example.com`` and
port 587 become the server's address, and the test CA is trusted through
``SSL_CERT_FILE``. The batch line it shows is the batch file, with the
attachment it names beside it. The exit statuses it lists are the command's.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from amsdal_mail.cli.diagnose import (
    EXIT_AUTH,
    EXIT_CONNECT,
    EXIT_OK,
    EXIT_PROTOCOL,
    EXIT_REFUSED,
    EXIT_TLS,
    EXIT_USAGE,
)
from tests.smtpd import ServerFactory
from tests.test_readme import _section

SECTION = _section("Command line")
ACCOUNT = {"you@example.com": "app-password"}


def _commands() -> tuple[dict[str, str], list[list[str]]]:
    """Return the section's exported variables and its commands, continuation lines joined."""
    (block,) = re.findall(r"```sh\n(.*?)```", SECTION, re.S)
    joined = block.replace("\\\n", " ")
    env: dict[str, str] = {}
    commands: list[list[str]] = []
    for line in joined.splitlines():
        words = shlex.split(line, comments=True)
        if words[:1] == ["export"]:
            name, _, value = words[1].partition("=")
            env[name] = value
        elif words:
            commands.append(words)
    return env, commands


def test_the_commands_work_as_written(
    smtp_server: ServerFactory, ca_file: str, tmp_path: Path
) -> None:
    server = smtp_server(tls="starttls", auth=ACCOUNT)
    (line,) = re.findall(r"```json\n(.*?)\n```", SECTION, re.S)
    (tmp_path / "mails.jsonl").write_text(line + "\n", encoding="utf-8")
    (tmp_path / "invoice.pdf").write_bytes(b"%PDF-1.4 test\n")
    exported, commands = _commands()
    assert exported == {"AMSDAL_EMAIL_PASSWORD": "app-password"}
    assert [c[:2] for c in commands] == [["amsdal-mail", "check"]] * 2 + [
        ["amsdal-mail", "send"]
    ] * 2
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMSDAL_EMAIL_")}
    env |= exported | {"SSL_CERT_FILE": ca_file}
    script = str(Path(sys.executable).parent / "amsdal-mail")
    outputs = []
    for words in commands:
        argv = [script] + [
            server.host if w == "smtp.example.com" else str(server.port) if w == "587" else w
            for w in words[1:]
        ]
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env
        )
        assert done.returncode == 0, (words, done.stdout, done.stderr)
        outputs.append(done.stdout)
    assert "certificate issuer:" in outputs[0] and "AUTH: PLAIN as 'you@example.com'" in outputs[0]
    assert json.loads(outputs[1])["rcpt"]["accepted"] is True
    first, second = server.wait_for_messages(2)
    assert first.message["Subject"] == "It works" and first.rcpt_tos == ["friend@example.org"]
    assert second.message["Subject"] == "Hi"
    assert [p.get_filename() for p in second.message.iter_attachments()] == ["invoice.pdf"]
    rows = [json.loads(r) for r in (tmp_path / "report.jsonl").read_text().splitlines()]
    assert rows == [
        {"line": 1, "recipient": "friend@example.org", "status": "sent", "code": 250,
         "response": "OK"},
    ]  # fmt: skip


def test_the_exit_statuses_listed_are_the_commands() -> None:
    rows = dict(re.findall(r"^\| (\d) \| (.+) \|$", SECTION, re.M))
    assert {int(code) for code in rows} == {
        EXIT_OK,
        EXIT_USAGE,
        EXIT_CONNECT,
        EXIT_TLS,
        EXIT_AUTH,
        EXIT_REFUSED,
        EXIT_PROTOCOL,
    }
    assert rows[str(EXIT_TLS)].startswith("TLS")
    assert rows[str(EXIT_AUTH)] == "authentication"
    assert rows[str(EXIT_REFUSED)] == "a recipient refused"
