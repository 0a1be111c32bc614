"""``amsdal-mail check`` against real servers started by the tests.

The servers (tests/smtpd.py's RecordingServer on aiosmtpd, tests/faulty_smtpd.py's
FaultyServer) listen on ephemeral ports of 127.0.0.1; "nothing listening" is a free
port nobody binds. Each test reads both what the command printed and what the
server saw.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import ssl
from typing import Any

import pytest
import trustme

from tests.cli.conftest import Runner, at
from tests.smtpd import ServerFactory, free_port

ACCOUNT = {"alice@example.com": "correct horse"}


def _json(out: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(out)
    return data


# -- what a working server shows ---------------------------------------------------------


def test_plain_server(run: Runner, smtp_server: ServerFactory) -> None:
    server = smtp_server()
    result = run("check", *at(server))
    assert result.code == 0, result.out
    assert f"Checking 127.0.0.1:{server.port} (no TLS)" in result.out
    assert "[ok  ] connect: 127.0.0.1:" in result.out
    assert "220 mail.test" in result.out  # the greeting as the server said it
    assert "[ok  ] EHLO: " in result.out and "SMTPUTF8" in result.out
    assert result.out.rstrip().endswith("OK: the connection works.")
    assert server.connections == 1 and server.messages == []


def test_starttls_shows_tls_and_certificate(
    run: Runner, smtp_server: ServerFactory, ca_file: str, server_cert: trustme.LeafCert
) -> None:
    server = smtp_server(tls="starttls")
    result = run("check", *at(server, "--starttls", "--cafile", ca_file))
    assert result.code == 0, result.out
    assert "(STARTTLS)" in result.out
    assert "[ok  ] STARTTLS: the connection is now encrypted" in result.out
    assert "TLS: TLSv1.3, cipher TLS_" in result.out
    assert "certificate subject: O=trustme" in result.out
    assert "certificate issuer:  O=trustme" in result.out and "Testing CA" in result.out
    assert "certificate expires: 3000-01-01" in result.out
    assert "valid for: 127.0.0.1, localhost, mail.test" in result.out

    data = _json(run("check", *at(server, "--starttls", "--cafile", ca_file, "--json")).out)
    assert data["ok"] is True and data["exit_code"] == 0 and data["security"] == "starttls"
    assert data["tls"]["version"] == "TLSv1.3" and data["tls"]["bits"] >= 128
    cert = data["tls"]["certificate"]
    assert cert["not_after"] == "3000-01-01T00:00:00+00:00"
    assert cert["names"] == ["127.0.0.1", "localhost", "mail.test"]
    assert "STARTTLS" in data["steps"][1]["detail"]  # offered before the upgrade
    assert "STARTTLS" not in data["extensions"]  # the extensions as used, after it
    assert [s["step"] for s in data["steps"]] == ["connect", "ehlo", "starttls", "ehlo"]


def test_implicit_tls(run: Runner, smtp_server: ServerFactory, ca_file: str) -> None:
    server = smtp_server(tls="ssl")
    data = _json(run("check", *at(server, "--ssl", "--cafile", ca_file, "--json")).out)
    assert data["exit_code"] == 0 and data["security"] == "ssl"
    assert data["tls"]["version"].startswith("TLSv1.")
    assert data["tls"]["cipher"] and data["tls"]["certificate"]["subject"].startswith("O=trustme")
    assert "implicit TLS: TLSv1" in data["steps"][0]["detail"]


def test_trust_from_ssl_cert_file(
    run: Runner, smtp_server: ServerFactory, ca_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SSL_CERT_FILE, which the README names, is honoured as for sending."""
    monkeypatch.setenv("SSL_CERT_FILE", ca_file)
    server = smtp_server(tls="ssl")
    assert run("check", *at(server, "--ssl")).code == 0


def test_starttls_offered_but_not_used_is_a_warning(
    run: Runner, smtp_server: ServerFactory
) -> None:
    server = smtp_server(tls="starttls_optional")
    result = run("check", *at(server))
    assert result.code == 0
    assert "[warn] the server offers STARTTLS but it is not used" in result.out
    assert "add --starttls" in result.out


# -- AUTH --------------------------------------------------------------------------------


def test_auth_ok_with_password_from_environment(
    run: Runner, smtp_server: ServerFactory, ca_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AMSDAL_EMAIL_PASSWORD", "correct horse")
    server = smtp_server(tls="starttls", auth=ACCOUNT)
    result = run(
        "check", *at(server, "--starttls", "--cafile", ca_file, "--user", "alice@example.com")
    )
    assert result.code == 0, result.out
    assert "[ok  ] AUTH: PLAIN as 'alice@example.com' (password): 235" in result.out
    assert "correct horse" not in result.out
    data = _json(
        run(
            "check",
            *at(server, "--starttls", "--cafile", ca_file, "--user", "alice@example.com", "--json"),
        ).out
    )
    assert data["auth"] == {
        "offered": ["LOGIN", "PLAIN"],
        "username": "alice@example.com",
        "mechanism": "PLAIN",
        "reply": {"code": 235, "text": "2.7.0 Authentication successful"},
    }


def test_auth_refused(
    run: Runner, smtp_server: ServerFactory, ca_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AMSDAL_EMAIL_PASSWORD", "wrong")
    server = smtp_server(tls="starttls", auth=ACCOUNT)
    result = run(
        "check", *at(server, "--starttls", "--cafile", ca_file, "--user", "alice@example.com")
    )
    assert result.code == 5
    assert "[FAIL] AUTH: AuthenticationError: 535" in result.out
    assert "wrong username or password" in result.out
    assert "App Password" in result.out  # as the README's troubleshooting says
    assert "(exit status 5)" in result.out and "wrong\n" not in result.out


def test_password_prompted_when_not_in_environment(
    smtp_server: ServerFactory, ca_file: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The prompt is a parameter of main(); the terminal prompt itself runs in test_processes."""
    from amsdal_mail.cli import main

    asked: list[str] = []

    def prompt(settings: Any) -> str:
        asked.append(f"{settings.username}@{settings.host}:{settings.port}")
        return "correct horse"

    server = smtp_server(tls="ssl", auth=ACCOUNT)
    argv = ["check", *at(server, "--ssl", "--cafile", ca_file, "--user", "alice@example.com")]
    assert main(argv, prompt=prompt) == 0, capsys.readouterr().out
    assert asked == [f"alice@example.com@127.0.0.1:{server.port}"]


def test_no_password_and_no_terminal(run: Runner, smtp_server: ServerFactory) -> None:
    """Under pytest standard input is not a terminal: the error names the variable."""
    server = smtp_server(auth=ACCOUNT)
    result = run("check", *at(server, "--user", "alice@example.com"))
    assert result.code == 2
    assert "set AMSDAL_EMAIL_PASSWORD" in result.out
    assert server.connections == 0


def test_user_without_auth_on_offer(
    run: Runner, smtp_server: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AMSDAL_EMAIL_PASSWORD", "x")
    server = smtp_server()
    result = run("check", *at(server, "--user", "alice@example.com"))
    assert result.code == 5
    assert "does not offer AUTH" in result.out
    assert "Fix: servers offer AUTH only after STARTTLS: add --starttls" in result.out


def test_auth_required_but_no_user(run: Runner, smtp_server: ServerFactory) -> None:
    server = smtp_server(auth=ACCOUNT)
    result = run("check", *at(server, "--rcpt", "bob@example.com"))
    assert result.code == 5
    assert "[warn] the server offers AUTH (LOGIN PLAIN) and no login is made" in result.out
    assert "530" in result.out and "give --user" in result.out


def test_password_never_sent_in_plain_text_to_a_remote_host(
    run: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The library's rule applies before any connection (mail.invalid is never resolved)."""
    monkeypatch.setenv("AMSDAL_EMAIL_PASSWORD", "secret")
    result = run("check", "--host", "mail.invalid", "--user", "alice@example.com")
    assert result.code == 2
    assert "refusing to send the password for 'alice@example.com' unencrypted" in result.out
    assert "secret" not in result.out


# -- TLS problems -------------------------------------------------------------------------


def test_untrusted_certificate(
    run: Runner, smtp_server: ServerFactory, untrusted_ssl_context: ssl.SSLContext, ca_file: str
) -> None:
    server = smtp_server(tls="starttls", server_context=untrusted_ssl_context)
    result = run("check", *at(server, "--starttls", "--cafile", ca_file))
    assert result.code == 4
    assert "[FAIL] STARTTLS: TLSError: " in result.out
    assert "certificate verify failed" in result.out
    assert "not trusted by this machine" in result.out
    assert "--cafile CA.pem, or SSL_CERT_FILE=CA.pem" in result.out
    data = _json(run("check", *at(server, "--starttls", "--cafile", ca_file, "--json")).out)
    assert data["ok"] is False and data["exit_code"] == 4
    assert (
        data["error"]["exit_code"] == 4 and "do not turn verification off" in data["error"]["fix"]
    )
    assert data["steps"][-1] == {"step": "starttls", "ok": False, "detail": data["error"]["error"]}


def test_certificate_for_another_host(
    run: Runner, smtp_server: ServerFactory, wrong_host_ssl_context: ssl.SSLContext, ca_file: str
) -> None:
    server = smtp_server(tls="ssl", server_context=wrong_host_ssl_context)
    result = run("check", *at(server, "--ssl", "--cafile", ca_file))
    assert result.code == 4
    assert "valid, but for another host name than 127.0.0.1" in result.out


def test_ssl_against_a_plain_port(run: Runner, smtp_server: ServerFactory) -> None:
    server = smtp_server()
    result = run("check", *at(server, "--ssl"))
    assert result.code == 4
    assert "WRONG_VERSION_NUMBER" in result.out
    assert "use --starttls for port 587" in result.out


def test_starttls_not_offered(run: Runner, smtp_server: ServerFactory) -> None:
    server = smtp_server()
    result = run("check", *at(server, "--starttls"))
    assert result.code == 4
    assert "[FAIL] STARTTLS: NotSupportedError: STARTTLS extension not supported" in result.out
    assert "never used unencrypted" in result.out


def test_starttls_refused_by_the_server(run: Runner, faulty_server: Any) -> None:
    server = faulty_server(starttls="offer", starttls_reply="454 4.7.0 TLS not available")
    result = run("check", *at(server, "--starttls"))
    assert result.code == 7
    assert "[FAIL] STARTTLS: " in result.out and "454" in result.out


# -- the recipient probe -------------------------------------------------------------------


def test_rcpt_accepted_and_nothing_sent(run: Runner, faulty_server: Any) -> None:
    server = faulty_server()
    result = run("check", *at(server, "--rcpt", "bob@example.com", "--from", "me@example.com"))
    assert result.code == 0, result.out
    assert "[ok  ] MAIL FROM: MAIL FROM:<me@example.com>: 250" in result.out
    assert "[ok  ] RCPT TO: RCPT TO:<bob@example.com>: 250" in result.out
    assert "then RSET: nothing sent" in result.out
    assert "OK: the connection works, and bob@example.com is accepted." in result.out
    (session,) = server.sessions
    assert session.verbs() == ["EHLO", "MAIL", "RCPT", "RSET", "QUIT"]
    assert server.attempts == []  # no DATA phase at all


def test_rcpt_refused(run: Runner, smtp_server: ServerFactory) -> None:
    server = smtp_server(rcpt_replies={"nobody@example.com": "550 5.1.1 No such user here"})
    result = run("check", *at(server, "--rcpt", "nobody@example.com"))
    assert result.code == 6
    assert "[FAIL] RCPT TO: recipient refused: 550 5.1.1 No such user here" in result.out
    assert "Problem: the server refused the recipient nobody@example.com." in result.out
    data = _json(run("check", *at(server, "--rcpt", "nobody@example.com", "--json")).out)
    assert data["exit_code"] == 6
    assert data["rcpt"] == {
        "recipient": "nobody@example.com",
        "sender": "",
        "accepted": False,
        "mail_reply": {"code": 250, "text": "OK"},
        "rcpt_reply": {"code": 550, "text": "5.1.1 No such user here"},
        "rset_reply": {"code": 250, "text": "OK"},
    }
    assert server.messages == [] and server.refused_data == []


def test_rcpt_temporarily_refused(run: Runner, smtp_server: ServerFactory) -> None:
    server = smtp_server(rcpt_replies={"busy@example.com": "450 4.2.1 Mailbox busy"})
    result = run("check", *at(server, "--rcpt", "busy@example.com"))
    assert result.code == 6
    assert "temporary" in result.out and "try later" in result.out


def test_sender_refused(run: Runner, smtp_server: ServerFactory) -> None:
    server = smtp_server(mail_reply="553 5.7.1 Sender not allowed")
    result = run("check", *at(server, "--rcpt", "bob@example.com", "--from", "me@example.com"))
    assert result.code == 7
    assert "[FAIL] MAIL FROM: " in result.out and "553 5.7.1 Sender not allowed" in result.out
    assert "refused the sender address" in result.out


def test_sender_defaults_to_the_login(
    run: Runner, smtp_server: ServerFactory, ca_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AMSDAL_EMAIL_PASSWORD", "correct horse")
    server = smtp_server(tls="starttls", auth=ACCOUNT)
    flags = ["--starttls", "--cafile", ca_file, "--user", "alice@example.com"]
    result = run("check", *at(server, *flags, "--rcpt", "bob@example.com"))
    assert result.code == 0, result.out
    assert "MAIL FROM:<alice@example.com>: 250" in result.out


def test_bad_rcpt_address_is_a_usage_error(run: Runner, smtp_server: ServerFactory) -> None:
    server = smtp_server()
    result = run("check", *at(server, "--rcpt", "bob@"))
    assert result.code == 2
    assert "Invalid address in --rcpt" in result.out
    assert server.connections == 0


# -- connect problems ------------------------------------------------------------------------


def test_nothing_listening(run: Runner) -> None:
    port = free_port()  # free a moment ago, and nobody binds it
    result = run("check", "--host", "127.0.0.1", "--port", str(port))
    assert result.code == 3
    assert "[FAIL] connect: ConnectError: " in result.out
    assert f"Problem: nothing is listening on 127.0.0.1:{port}." in result.out
    data = _json(run("check", "--host", "127.0.0.1", "--port", str(port), "--json").out)
    assert data["exit_code"] == 3 and data["greeting"] is None and data["steps"][0]["ok"] is False


def test_greeting_timeout(run: Runner, silent_server: tuple[str, int]) -> None:
    host, port = silent_server
    result = run("check", "--host", host, "--port", str(port), "--timeout", "0.5")
    assert result.code == 3
    assert "MailTimeoutError" in result.out
    assert f"{host}:{port} did not answer within 0.5s" in result.out
    assert "raise --timeout" in result.out


def test_greeting_refusal(run: Runner, faulty_server: Any) -> None:
    server = faulty_server(greeting="554 5.7.1 No SMTP service for you")
    result = run("check", *at(server))
    assert result.code == 3
    assert "554 5.7.1 No SMTP service for you" in result.out
    assert "refusal instead of its greeting" in result.out


def test_server_closes_at_once(run: Runner, dropping_server: tuple[str, int]) -> None:
    host, port = dropping_server
    result = run("check", "--host", host, "--port", str(port))
    assert result.code == 3
    assert "closed the connection" in result.out


# -- usage and configuration ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["check", "--port", "smtp"], "port"),
        (["check", "--starttls", "--ssl"], "not allowed with argument"),
        (["check", "--timeout", "-1"], "timeout"),
        (["check", "--cafile", "/nonexistent/ca.pem"], "--cafile '/nonexistent/ca.pem' cannot"),
        (["frobnicate"], "invalid choice"),
        ([], "required"),
    ],
)
def test_usage_errors(run: Runner, argv: list[str], expected: str) -> None:
    result = run(*argv)
    assert result.code == 2
    assert expected in result.out + result.err


def test_bad_environment_variable(run: Runner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMSDAL_EMAIL_USE_TLS", "sometimes")
    result = run("check")
    assert result.code == 2
    assert "AMSDAL_EMAIL_USE_TLS" in result.out and "sometimes" in result.out


def test_flags_win_over_environment(
    run: Runner, smtp_server: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = smtp_server()
    monkeypatch.setenv("AMSDAL_EMAIL_HOST", "mail.invalid")
    monkeypatch.setenv("AMSDAL_EMAIL_PORT", str(free_port()))
    assert run("check", "--host", server.host, "--port", str(server.port)).code == 0
    monkeypatch.setenv("AMSDAL_EMAIL_HOST", server.host)
    monkeypatch.setenv("AMSDAL_EMAIL_PORT", str(server.port))
    assert run("check").code == 0  # the environment alone
    assert server.connections == 2


def test_certificate_expiry_warning() -> None:
    """The expiry warning is measured against the clock the flow is given (pure)."""
    from amsdal_mail.cli.probe import CertificateInfo, CheckReport, _expiry_warning

    cert = CertificateInfo("CN=mail", "CN=ca", None, dt.datetime(2030, 1, 10, tzinfo=dt.UTC))
    report = CheckReport("h", 1, "ssl")
    _expiry_warning(report, cert, dt.datetime(2030, 1, 1, tzinfo=dt.UTC))
    assert report.warnings == [
        "the server's certificate expires in 9 day(s) (2030-01-10); whoever runs the server "
        "must renew it"
    ]
    report = CheckReport("h", 1, "ssl")
    _expiry_warning(report, cert, dt.datetime(2029, 1, 1, tzinfo=dt.UTC))
    assert report.warnings == []


def test_port_465_without_ssl_diagnosis() -> None:
    """Port 465 cannot be bound by a test; the diagnosis of that timeout is pure."""
    from amsdal_mail import MailTimeoutError
    from amsdal_mail.cli.diagnose import diagnose
    from amsdal_mail.config import resolve_smtp_settings

    settings = resolve_smtp_settings({"host": "smtp.example.com", "port": 465}, environ={})
    error = MailTimeoutError("timed out after 30.0s talking to smtp.example.com:465")
    diagnosis = diagnose("connect", error, settings)
    assert diagnosis.exit_code == 3 and diagnosis.fix == "use --ssl (use_ssl=True) for port 465"
    assert "port 465 is implicit TLS" in diagnosis.problem


def test_unresolvable_host(run: Runner) -> None:
    """``.invalid`` never resolves (RFC 2606), so no DNS server is needed to fail."""
    try:
        socket.getaddrinfo("mail.invalid", 25)
    except socket.gaierror:
        pass
    else:  # pragma: no cover - a resolver that answers for .invalid
        pytest.fail("this machine's resolver answers for mail.invalid")
    result = run("check", "--host", "mail.invalid", "--timeout", "5")
    assert result.code == 3
    assert "could not be resolved" in result.out
