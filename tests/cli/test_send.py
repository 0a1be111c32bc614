"""``amsdal-mail send`` and ``send --batch`` against real servers started by the tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.cli.conftest import Runner, at
from tests.smtpd import RecordingServer, ServerFactory, free_port

REFUSING = {"nobody@example.com": "550 5.1.1 No such user", "later@example.com": "451 4.3.0 Later"}


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _batch(tmp_path: Path, *lines: object) -> Path:
    path = tmp_path / "batch.jsonl"
    text = "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines)
    path.write_text(text + "\n", encoding="utf-8")
    return path


# -- one message ---------------------------------------------------------------------------


def test_send_one_message_with_everything(
    run: Runner, smtp_server: ServerFactory, tmp_path: Path
) -> None:
    server = smtp_server()
    (tmp_path / "body.txt").write_text("Hello from a file\n", encoding="utf-8")
    (tmp_path / "page.html").write_text("<p>Hello <b>HTML</b></p>", encoding="utf-8")
    (tmp_path / "report.csv").write_bytes(b"a,b\r\n1,2\r\n")
    result = run(
        "send",
        *at(server),
        "--from", "Me <me@example.com>",
        "--to", "to1@example.com", "--to", "to2@example.com",
        "--cc", "cc@example.com",
        "--bcc", "bcc@example.com",
        "--subject", "Héllo",
        "--body-file", str(tmp_path / "body.txt"),
        "--html-file", str(tmp_path / "page.html"),
        "--attach", str(tmp_path / "report.csv"),
    )  # fmt: skip
    assert result.code == 0, result.out + result.err
    assert result.out.splitlines() == [
        "sent     to1@example.com 250 OK",
        "sent     to2@example.com 250 OK",
        "sent     cc@example.com 250 OK",
        "sent     bcc@example.com 250 OK",
        "4 recipient(s): sent 4",
    ]
    (received,) = server.messages
    assert received.mail_from == "me@example.com"
    assert received.rcpt_tos == [
        "to1@example.com",
        "to2@example.com",
        "cc@example.com",
        "bcc@example.com",
    ]
    message = received.message
    assert message["Subject"] == "Héllo" and message["Cc"] == "cc@example.com"
    assert "bcc@example.com" not in received.data.decode()
    body = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert body is not None and body.get_content() == "Hello from a file\r\n"
    assert html is not None and "<b>HTML</b>" in html.get_content()
    (attachment,) = message.iter_attachments()
    assert attachment.get_filename() == "report.csv"
    assert attachment.get_content() in (b"a,b\r\n1,2\r\n", "a,b\r\n1,2\r\n")


def test_send_some_refused(run: Runner, smtp_server: ServerFactory) -> None:
    server = smtp_server(rcpt_replies=REFUSING)
    argv = ["send", *at(server), "--from", "me@example.com", "--body", "hi"]
    argv += ["--to", "ok@example.com", "--to", "nobody@example.com", "--to", "later@example.com"]
    result = run(*argv)
    assert result.code == 6
    assert "rejected nobody@example.com 550 5.1.1 No such user" in result.out
    assert "failed   later@example.com 451 4.3.0 Later" in result.out
    assert "3 recipient(s): sent 1, failed 1, rejected 1" in result.out
    assert server.messages[0].rcpt_tos == ["ok@example.com"]

    data = json.loads(run(*argv, "--json").out)
    assert data["ok"] is False and data["exit_code"] == 6
    assert data["recipients"][1] == {
        "recipient": "nobody@example.com",
        "status": "rejected",
        "code": 550,
        "response": "5.1.1 No such user",
    }


def test_send_when_nothing_listens(run: Runner) -> None:
    port = free_port()
    result = run(
        "send", "--host", "127.0.0.1", "--port", str(port),
        "--from", "me@example.com", "--to", "you@example.com", "--body", "hi",
    )  # fmt: skip
    assert result.code == 3
    assert f"nothing is listening on 127.0.0.1:{port}" in result.err
    assert "failed   you@example.com" in result.out  # the recipient's status says why


def test_send_auth_refused(
    run: Runner, smtp_server: ServerFactory, ca_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AMSDAL_EMAIL_PASSWORD", "wrong")
    server = smtp_server(tls="ssl", auth={"me@example.com": "right"})
    result = run(
        "send", *at(server, "--ssl", "--cafile", ca_file, "--user", "me@example.com"),
        "--from", "me@example.com", "--to", "you@example.com", "--body", "hi",
    )  # fmt: skip
    assert result.code == 5
    assert "App Password" in result.err
    assert server.messages == []


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--to", "you@example.com"], "--from is required"),
        (["--from", "me@example.com"], "at least one recipient"),
        (["--from", "me@example.com", "--to", "you@"], "Invalid address"),
        (
            ["--from", "me@example.com", "--to", "y@example.com", "--attach", "/nonexistent"],
            "--attach",
        ),
        (["--from", "me@example.com", "--to", "y@example.com", "--report", "r.jsonl"], "--batch"),
    ],
)
def test_send_usage_errors(
    run: Runner, smtp_server: ServerFactory, argv: list[str], expected: str
) -> None:
    server = smtp_server()
    result = run("send", *at(server), *argv)
    assert result.code == 2
    assert expected in result.err
    assert server.connections == 0


# -- batches ---------------------------------------------------------------------------------


def test_batch_with_bad_lines_and_report(
    run: Runner, smtp_server: ServerFactory, tmp_path: Path
) -> None:
    server = smtp_server(rcpt_replies=REFUSING)
    (tmp_path / "a.txt").write_text("attached\n", encoding="utf-8")
    path = _batch(
        tmp_path,
        {"from": "me@example.com", "to": "one@example.com", "subject": "1", "body": "b1"},
        "{not json",
        {"to": ["two@example.com", "nobody@example.com"], "subject": "2", "attach": "a.txt"},
        "",
        {"from": "me@example.com", "to": "x@example.com", "colour": "red"},
        {"from": "me@example.com", "to": "y@example.com", "attach": ["missing.bin"]},
        {"from": "me@example.com", "to": "bad@", "subject": "5"},
        {"from": "me@example.com", "cc": "later@example.com", "html": "<p>hi</p>"},
        ["not", "an", "object"],
    )
    report = tmp_path / "out.jsonl"
    result = run(
        "send", *at(server), "--batch", str(path), "--from", "default@example.com",
        "--report", str(report),
    )  # fmt: skip
    assert result.code == 2  # bad lines: the good ones went out, the status says so
    assert f"{path}:2: bad line, not sent: not valid JSON" in result.err
    assert f"{path}:5: bad line, not sent: unknown key(s) ['colour']" in result.err
    assert f"{path}:6: bad line, not sent: attachment 'missing.bin' cannot be read" in result.err
    assert f"{path}:7: bad line, not sent: Invalid address" in result.err
    assert f"{path}:9: bad line, not sent: a line must be a JSON object, not list" in result.err
    assert "\r" not in result.err  # no progress bar: stderr is not a terminal

    received = server.wait_for_messages(2)  # line 8's only recipient was refused
    assert [m.message["Subject"] for m in received] == ["1", "2"]
    assert received[1].mail_from == "default@example.com"  # --from as the default
    assert received[1].rcpt_tos == ["two@example.com"]
    assert [p.get_filename() for p in received[1].message.iter_attachments()] == ["a.txt"]

    rows = _lines(report)
    assert [(r["line"], r["recipient"], r["status"], r["code"]) for r in rows] == [
        (1, "one@example.com", "sent", 250),
        (2, None, "invalid", None),
        (3, "two@example.com", "sent", 250),
        (3, "nobody@example.com", "rejected", 550),
        (5, "x@example.com", "invalid", None),
        (6, "y@example.com", "invalid", None),
        (7, "bad@", "invalid", None),
        (8, "later@example.com", "failed", 451),
        (9, None, "invalid", None),
    ]
    assert rows[3]["response"] == "5.1.1 No such user"
    assert rows[1]["response"].startswith("not sent: line 2: not valid JSON")
    assert result.out.splitlines()[0] == "9 recipient(s): sent 2, failed 1, invalid 5, rejected 1"
    assert "  line 3: nobody@example.com rejected 550: 5.1.1 No such user" in result.out


def test_batch_all_accepted_with_concurrency(
    run: Runner, smtp_server: ServerFactory, tmp_path: Path
) -> None:
    server = smtp_server()
    lines = [
        {"from": "me@example.com", "to": f"r{i}@example.com", "subject": f"m{i}", "body": "x"}
        for i in range(12)
    ]
    path = _batch(tmp_path, *lines)
    report = tmp_path / "report.jsonl"
    argv = ["send", *at(server), "--batch", str(path), "--concurrency", "3"]
    result = run(*argv, "--report", str(report))
    assert result.code == 0, result.out + result.err
    assert result.out.splitlines() == ["12 recipient(s): sent 12"]
    received = server.wait_for_messages(12)
    assert sorted(m.message["Subject"] for m in received) == sorted(f"m{i}" for i in range(12))
    assert len({m.session_id for m in received}) == 3  # three connections at once
    rows = _lines(report)
    assert sorted((r["line"], r["recipient"]) for r in rows) == [
        (i + 1, f"r{i}@example.com") for i in range(12)
    ]
    assert {r["status"] for r in rows} == {"sent"}

    data = json.loads(run(*argv, "--json").out)
    assert data == {
        "ok": True,
        "exit_code": 0,
        "messages": 12,
        "bad_lines": [],
        "statuses": {"sent": 12},
        "error": None,
    }


def test_batch_refused_recipient_exit_6(
    run: Runner, smtp_server: ServerFactory, tmp_path: Path
) -> None:
    server = smtp_server(rcpt_replies=REFUSING)
    path = _batch(
        tmp_path,
        {"from": "me@example.com", "to": "ok@example.com"},
        {"from": "me@example.com", "to": "nobody@example.com"},
    )
    result = run("send", *at(server), "--batch", str(path))
    assert result.code == 6
    assert result.out.splitlines()[0] == "2 recipient(s): sent 1, rejected 1"


@pytest.mark.parametrize("concurrency", ["1", "2"])
def test_batch_server_gone(run: Runner, tmp_path: Path, concurrency: str) -> None:
    path = _batch(
        tmp_path,
        {"from": "me@example.com", "to": "a@example.com"},
        {"from": "me@example.com", "to": "b@example.com"},
        {"from": "me@example.com", "to": "c@example.com"},
    )
    report = tmp_path / "r.jsonl"
    port = free_port()
    result = run(
        "send", "--host", "127.0.0.1", "--port", str(port), "--batch", str(path),
        "--concurrency", concurrency, "--report", str(report),
    )  # fmt: skip
    assert result.code == 3
    assert "nothing is listening" in result.err
    rows = _lines(report)
    assert [(r["recipient"], r["status"]) for r in rows] == [
        ("a@example.com", "failed"),
        ("b@example.com", "failed"),
        ("c@example.com", "failed"),
    ]
    assert all(r["response"].startswith("not sent: ") for r in rows)


def test_batch_flags_that_belong_to_lines(run: Runner, tmp_path: Path) -> None:
    path = _batch(tmp_path, {"from": "me@example.com", "to": "a@example.com"})
    result = run("send", "--batch", str(path), "--to", "x@example.com", "--subject", "s")
    assert result.code == 2
    assert "--to, --subject cannot go with --batch" in result.err


def test_batch_file_missing(run: Runner, tmp_path: Path) -> None:
    result = run("send", "--batch", str(tmp_path / "none.jsonl"))
    assert result.code == 2
    assert "none.jsonl' cannot be read" in result.err


def test_batch_only_bad_lines_opens_no_connection(
    run: Runner, smtp_server: ServerFactory, tmp_path: Path
) -> None:
    server: RecordingServer = smtp_server()
    path = _batch(tmp_path, {"to": "a@example.com"})
    result = run("send", *at(server), "--batch", str(path))
    assert result.code == 2
    assert "1:" in result.err and "no sender" in result.err
    assert server.connections == 0


# -- bounces ------------------------------------------------------------------------------------


def test_bounces_is_handed_to_the_tracking_receiver(
    run: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the wiring: the receiver is delivery tracking's, tested with it.

    A stand-in module replaces it here so the arguments it gets can be seen.
    """
    import sys
    import types

    seen: list[list[str]] = []
    stand_in = types.ModuleType("amsdal_mail.tracking.receiver")
    stand_in.main = lambda argv: seen.append(argv) or 0  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "amsdal_mail.tracking.receiver", stand_in)
    result = run("bounces", "serve", "--listen", "127.0.0.1:0")
    assert result.code == 0
    assert seen == [["serve", "--listen", "127.0.0.1:0"]]


def test_bounces_usage_exit_passed_on(run: Runner, monkeypatch: pytest.MonkeyPatch) -> None:
    """The receiver's argparse exits (--help, a usage error): its status is the command's."""
    import sys
    import types

    def receiver(argv: list[str]) -> int:
        raise SystemExit(2)

    stand_in = types.ModuleType("amsdal_mail.tracking.receiver")
    stand_in.main = receiver  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "amsdal_mail.tracking.receiver", stand_in)
    assert run("bounces", "--frobnicate").code == 2
