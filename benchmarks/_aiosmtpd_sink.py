"""Child process: an aiosmtpd server on 127.0.0.1 that accepts and discards mail.

Writes its port to ``--port-file``; exits when its standard input closes (the
benchmark ended or died) or after ``--lifetime`` seconds, whichever is first.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from aiosmtpd.smtp import SMTP


class _Discard:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        return "250 2.0.0 Ok: discarded"


async def _serve(lifetime: float, port_file: str) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(
            _Discard(),
            hostname="aiosmtpd-sink",  # never the blocking socket.getfqdn()
            data_size_limit=0,  # no SIZE limit: the 25 MiB message must fit
            enable_SMTPUTF8=True,
        ),
        "127.0.0.1",
        0,
    )
    port = server.sockets[0].getsockname()[1]
    with open(port_file, "w") as f:
        f.write(str(port))
    stdin_closed = asyncio.Event()
    loop.add_reader(
        sys.stdin.fileno(), lambda: stdin_closed.set() if not sys.stdin.read(1) else None
    )
    try:
        await asyncio.wait_for(stdin_closed.wait(), lifetime)
    except TimeoutError:
        pass
    server.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lifetime", type=float, default=600)
    parser.add_argument("--port-file", required=True)
    args = parser.parse_args()
    asyncio.run(_serve(args.lifetime, args.port_file))


if __name__ == "__main__":
    main()
