"""Against a real Postfix submission server (STARTTLS + AUTH via Dovecot SASL).

The server is :class:`benchmarks.real_postfix.SubmissionPostfix` (Debian's
``postfix`` and ``dovecot-core``), started on a free port of 127.0.0.1 in
a throwaway directory. When it cannot start the tests skip, printing why;
under CI=true that is a failure.

Nagle's algorithm must be on while the connection is set up and off once it
is ready for mail: with it off during the handshake the TLS Finished and
the EHLO after it leave as two segments, Postfix answers with two writes
(session tickets, then the EHLO reply) and its own Nagle holds the second
until the client's delayed ACK, some 40 ms per new connection.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import amsdal_mail
from amsdal_mail.smtp import aio, sync
from benchmarks.real_postfix import USER, SubmissionPostfix, backend_options, unavailable


def _skip(reason: str) -> None:
    """Skip with ``reason`` printed; under CI=true fail instead."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"Postfix and Dovecot are required under CI=true: {reason}")
    print(f"skipping: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def submission() -> Iterator[SubmissionPostfix]:
    """The server, in a directory of its own (pytest's tmp_path is private to root)."""
    reason = unavailable()
    if reason:
        _skip(reason)
    directory = Path(tempfile.mkdtemp(prefix="amsdal-submission-"))
    try:
        with SubmissionPostfix(directory) as server:
            yield server
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _nodelay(sock: Any) -> int:
    return int(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))


def test_sync_nagle_on_during_handshake_off_for_mail(
    submission: SubmissionPostfix, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[int] = []
    original_ehlo = sync._Connection.ehlo

    def ehlo(self: sync._Connection, *args: Any, **kwargs: Any) -> Any:
        seen.append(_nodelay(self.sock))
        return original_ehlo(self, *args, **kwargs)

    monkeypatch.setattr(sync._Connection, "ehlo", ehlo)
    original_chunks = sync._Connection.send_chunks
    in_mail: list[int] = []

    def send_chunks(self: sync._Connection, chunks: list[bytes]) -> None:
        in_mail.append(_nodelay(self.sock))
        original_chunks(self, chunks)

    monkeypatch.setattr(sync._Connection, "send_chunks", send_chunks)
    for i in range(3):
        status = amsdal_mail.send_mail(
            f"sync {i}",
            "body\n",
            USER,
            ["a@example.test", "b@example.test"],
            connection=amsdal_mail.get_connection("smtp", **backend_options(submission.port)),
        )
        assert not status.has_failures, (status, submission.log())
    # EHLO before and after STARTTLS on each of the three connections, Nagle on.
    assert seen == [0, 0] * 3
    assert in_mail and set(in_mail) == {1}


async def test_async_nagle_on_during_handshake_off_for_mail(
    submission: SubmissionPostfix, monkeypatch: pytest.MonkeyPatch
) -> None:
    import aiosmtplib

    seen: list[int] = []
    original_ehlo = aiosmtplib.SMTP.ehlo

    async def ehlo(self: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(_nodelay(self.transport.get_extra_info("socket")))
        return await original_ehlo(self, *args, **kwargs)

    monkeypatch.setattr(aiosmtplib.SMTP, "ehlo", ehlo)
    original_set = aio._set_nodelay
    after: list[int] = []

    def set_nodelay(transport: Any, on: bool) -> None:
        original_set(transport, on)
        if on:
            after.append(_nodelay(transport.get_extra_info("socket")))

    monkeypatch.setattr(aio, "_set_nodelay", set_nodelay)
    for i in range(3):
        status = await amsdal_mail.asend_mail(
            f"async {i}",
            "body\n",
            USER,
            ["a@example.test"],
            connection=amsdal_mail.get_connection("smtp", **backend_options(submission.port)),
        )
        assert not status.has_failures, (status, submission.log())
    assert seen == [0, 0] * 3
    assert after == [1, 1, 1]


def test_refused_login_is_an_authentication_error(submission: SubmissionPostfix) -> None:
    options = dict(backend_options(submission.port), password="wrong")
    with pytest.raises(amsdal_mail.AuthenticationError):
        amsdal_mail.send_mail(
            "x",
            "y",
            USER,
            ["a@example.test"],
            connection=amsdal_mail.get_connection("smtp", **options),
        )


def test_the_real_postfix_section_replaces_its_old_copy_and_keeps_the_rest() -> None:
    from benchmarks.report import REAL_POSTFIX_TITLE, real_postfix_section, splice_section

    old = "# Benchmarks\n\n## Sending: smtp-sink\n\nrows\n\n## Rendering (no network)\n\nr\n"
    section = real_postfix_section({"ours": [5.0, 4.0, 6.0], "django": [10.0, 10.0, 10.0]}, 200)
    assert "| amsdal_mail send_mail() | 5.0 [4.0–6.0] | 0.50x |" in section
    once = splice_section(old, section)
    assert once.index("## Sending: smtp-sink") < once.index(REAL_POSTFIX_TITLE)
    assert once.index(REAL_POSTFIX_TITLE) < once.index("## Rendering (no network)")
    again = splice_section(once, real_postfix_section({"ours": [7.0], "django": [7.0]}, 10))
    assert again.count(REAL_POSTFIX_TITLE) == 1 and "5.0 [4.0–6.0]" not in again
    assert "rows" in again and again.endswith("## Rendering (no network)\n\nr\n")
