"""The misbehaving test server itself: pipelined input, raw records, bounded stop."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

from tests.faulty_smtpd import FaultyServer

StartServer = Callable[..., FaultyServer]


def read_replies(sock: socket.socket, count: int) -> list[bytes]:
    """Read ``count`` complete replies (final lines) from ``sock``, within its timeout."""
    data = b""
    while data.count(b"\r\n") < 64:
        finals = [line for line in data.split(b"\r\n") if line[3:4] == b" "]
        if len(finals) >= count:
            return finals[:count]
        chunk = sock.recv(4096)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    raise AssertionError(f"too much data: {data!r}")


def test_pipelined_commands_in_one_packet_get_replies_in_order(
    faulty_server: StartServer,
) -> None:
    """Commands arriving in one write are answered one by one, in order; raw data is kept."""
    server = faulty_server()
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        assert read_replies(sock, 1)[0].startswith(b"220 ")
        sock.sendall(
            b"EHLO client.test\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n"
            b"RCPT TO:<c@example.com>\r\nDATA\r\n"
        )
        codes = [reply[:3] for reply in read_replies(sock, 5)]
        assert codes == [b"250", b"250", b"250", b"250", b"354"]
        sock.sendall(b"Subject: x\r\n\r\n..hidden\r\nend\r\n.\r\nQUIT\r\n")
        assert [reply[:3] for reply in read_replies(sock, 2)] == [b"250", b"221"]

    [attempt] = server.messages
    assert attempt.raw == b"Subject: x\r\n\r\n..hidden\r\nend\r\n.\r\n"
    assert attempt.data == b"Subject: x\r\n\r\n.hidden\r\nend\r\n"
    assert attempt.rcpt_tos == ["b@example.com", "c@example.com"]
    assert server.sessions[0].verbs() == ["EHLO", "MAIL", "RCPT", "RCPT", "DATA", "QUIT"]


def test_only_crlf_dot_crlf_ends_the_data(faulty_server: StartServer) -> None:
    """Bare-LF or bare-CR dot lines do not end the data: the server is strict, as it must be."""
    server = faulty_server()
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        read_replies(sock, 1)
        sock.sendall(b"EHLO c\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n")
        read_replies(sock, 4)
        sock.sendall(b"x\n.\nMAIL FROM:<evil@example.com>\r\n\r.\r\r\n.\r\n")
        assert read_replies(sock, 1)[0][:3] == b"250"

    [attempt] = server.messages
    assert attempt.raw == b"x\n.\nMAIL FROM:<evil@example.com>\r\n\r.\r\r\n.\r\n"


def test_stop_ends_stalled_sessions_promptly(faulty_server: StartServer) -> None:
    """A session stalled on purpose does not hold up stopping the server."""
    server = faulty_server(greeting_stall=60)
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        server.wait_until(lambda s: s.connections == 1)
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 2
        try:
            assert sock.recv(16) == b""
        except ConnectionResetError:
            pass  # an aborted connection may be reset rather than closed


def test_hard_error_limit_answers_the_next_command_with_421_and_closes(
    faulty_server: StartServer,
) -> None:
    """After the limit of 4xx/5xx replies the next command gets 421 and the server hangs up."""
    server = faulty_server(hard_error_limit=2, rcpt_replies={"x@example.com": "550 5.1.1 No"})
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        read_replies(sock, 1)
        sock.sendall(
            b"EHLO c\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<x@example.com>\r\n"
            b"RCPT TO:<x@example.com>\r\nDATA\r\n"
        )
        replies = read_replies(sock, 5)
        assert [reply[:3] for reply in replies] == [b"250", b"250", b"550", b"550", b"421"]
        assert b"too many errors" in replies[-1]
        assert sock.recv(16) == b""

    assert server.sessions[0].ended == "too many errors"
