"""Child process: an aiosmtpd server on 127.0.0.1 that accepts and discards mail.

Writes its port to ``--port-file``; exits when its standard input closes (the
benchmark ended or died) or after ``--lifetime`` seconds, whichever is first.

For the outbox benchmark it can also play a distant submission server:
``--delay S`` waits S seconds before every reply (a multi-line reply counts
once), ``--cert``/``--key`` offer STARTTLS and require it, ``--auth USER:PASS``
requires AUTH (PLAIN or LOGIN) with that login.
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import sys
import warnings
from typing import Any, AnyStr

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class _Discard:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        return "250 2.0.0 Ok: discarded"


class _DelayedSMTP(SMTP):
    """An SMTP session that waits ``delay`` seconds before each reply."""

    delay = 0.0

    async def push(self, status: AnyStr) -> None:
        line = status if isinstance(status, str) else status.decode("ascii", "replace")
        if self.delay and line[3:4] != "-":  # the last (or only) line of a reply
            await asyncio.sleep(self.delay)
        await super().push(status)


def _authenticator(login: str) -> Any:
    user, _, password = login.partition(":")

    def check(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            user.encode(),
            password.encode(),
        )
        return AuthResult(success=ok, handled=False)

    return check


async def _serve(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    options: dict[str, Any] = {}
    if args.cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.cert, args.key)
        options.update(tls_context=context, require_starttls=True)
    if args.auth:
        options.update(authenticator=_authenticator(args.auth), auth_required=True)
    _DelayedSMTP.delay = args.delay
    server = await loop.create_server(
        lambda: _DelayedSMTP(
            _Discard(),
            hostname="aiosmtpd-sink",  # never the blocking socket.getfqdn()
            data_size_limit=0,  # no SIZE limit: the 25 MiB message must fit
            enable_SMTPUTF8=True,
            **options,
        ),
        "127.0.0.1",
        0,
    )
    port = server.sockets[0].getsockname()[1]
    with open(args.port_file, "w") as f:
        f.write(str(port))
    stdin_closed = asyncio.Event()
    loop.add_reader(
        sys.stdin.fileno(), lambda: stdin_closed.set() if not sys.stdin.read(1) else None
    )
    try:
        await asyncio.wait_for(stdin_closed.wait(), args.lifetime)
    except TimeoutError:
        pass
    server.close()


def main() -> None:
    # aiosmtpd's own AUTH code reads the attribute it deprecated.
    warnings.filterwarnings("ignore", "Session.login_data", DeprecationWarning)
    parser = argparse.ArgumentParser()
    parser.add_argument("--lifetime", type=float, default=600)
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each reply")
    parser.add_argument("--cert", help="certificate chain (PEM): offer and require STARTTLS")
    parser.add_argument("--key", help="its private key (PEM)")
    parser.add_argument("--auth", help="USER:PASS that AUTH must give (AUTH then required)")
    asyncio.run(_serve(parser.parse_args()))


if __name__ == "__main__":
    main()
