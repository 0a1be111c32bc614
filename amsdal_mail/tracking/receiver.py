"""An SMTP server that takes delivery reports for its own return paths (extra ``[tracking]``).

:class:`ReportReceiver` runs an aiosmtpd server in a thread of its own. It
accepts ``RCPT TO`` only for its return paths (``bounces@example.com``, and
``bounces+anything@example.com``: the VERP addresses of that path), refuses
messages over ``max_size`` bytes (``552``), and hands every report to
:func:`~amsdal_mail.tracking.parse_report`; each event goes to ``on_event``,
called in one worker thread (never on the server's event loop, so it may
block: write to a database, say).

Replies: ``250`` for a report (with the number of events) and for a message
that is no report (discarded); ``550 5.6.0`` for a malformed report.

:func:`serve` runs one until SIGINT or SIGTERM, printing each event as one
JSON line (the :class:`~amsdal_mail.tracking.DeliveryEvent` fields, plus
``verp``: what a VERP return path names once its signature checked with
``AMSDAL_EMAIL_VERP_SECRET``, else null); :func:`main` is
``amsdal-mail bounces serve --listen HOST:PORT --return-path ADDR``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any, TextIO

from .events import DeliveryEvent
from .report import MAX_SIZE, MalformedReportError, ReportTooLargeError, parse_report
from .verp import VERP_SECRET_ENV, decode_verp

__all__ = ["ReportReceiver", "event_json", "main", "parse_listen", "serve"]

logger = logging.getLogger("amsdal_mail.tracking")

#: Called with each event, in the receiver's worker thread.
EventCallback = Callable[[DeliveryEvent], None]


def parse_listen(listen: str) -> tuple[str, int]:
    """Return the host and port of ``HOST:PORT`` (``[::1]:2526`` for IPv6).

    Raises ``ValueError`` naming the value when it is not one.
    """
    host, colon, port = listen.rpartition(":")
    host = host.strip("[]")
    if not colon or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"--listen must be HOST:PORT (127.0.0.1:2526), got {listen!r}")
    return host, int(port)


def _normalise(return_paths: str | Sequence[str]) -> list[tuple[str, str]]:
    paths = [return_paths] if isinstance(return_paths, str) else list(return_paths)
    if not paths:
        raise ValueError("a report receiver needs at least one return path")
    result = []
    for path in paths:
        local, at, domain = path.strip().strip("<>").rpartition("@")
        if not at or not local or not domain:
            raise ValueError(f"return path must be an address (bounces@example.com): {path!r}")
        result.append((local.lower(), domain.lower()))
    return result


class _Handler:
    """The aiosmtpd handler: RCPT filter, then parse and pass on each report."""

    def __init__(self, receiver: ReportReceiver) -> None:
        self.receiver = receiver

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if not self.receiver.accepts(address):
            return f"550 5.1.1 <{address}>: not a return path this receiver takes reports for"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.original_content or envelope.content or b""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self.receiver.executor, self.receiver.handle, bytes(raw), list(envelope.rcpt_tos)
        )


class ReportReceiver:
    """An SMTP server on ``host``:``port`` (0: a free port) taking reports for ``return_paths``.

    Use as a context manager, or :meth:`start` and :meth:`stop`. ``port``
    holds the port it listens on once started. ``on_event`` is called with
    each event in one worker thread; an exception it raises is logged and
    answered with ``451`` (the reporting server tries again later).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        return_paths: str | Sequence[str],
        on_event: EventCallback,
        max_size: int = MAX_SIZE,
        server_hostname: str = "amsdal-mail.bounces",
    ) -> None:
        self.host = host
        self.port = port
        self.paths = _normalise(return_paths)
        self.on_event = on_event
        self.max_size = max_size
        self.server_hostname = server_hostname
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="amsdal-bounces")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None

    def accepts(self, address: str) -> bool:
        """Return True when ``address`` is one of the return paths or a VERP address of one."""
        local, at, domain = address.strip().strip("<>").lower().rpartition("@")
        if not at:
            return False
        return any(
            domain == d and (local == loc or local.startswith(loc + "+")) for loc, d in self.paths
        )

    def handle(self, raw: bytes, recipients: list[str]) -> str:
        """Parse one received message for ``recipients``; return the SMTP reply to give."""
        count = 0
        try:
            for recipient in recipients or [""]:
                events = parse_report(raw, max_size=self.max_size, return_path=recipient or None)
                for event in events:
                    self.on_event(event)
                    count += 1
        except ReportTooLargeError as exc:
            return f"552 5.3.4 {exc}"
        except MalformedReportError as exc:
            logger.warning("malformed delivery report refused: %s", exc)
            return f"550 5.6.0 malformed delivery report: {exc}"[:500]
        except Exception:
            logger.exception("recording a delivery event failed")
            return "451 4.3.0 could not record the report now; try again later"
        if not count:
            logger.info("a message to %s is no delivery report; discarded", recipients)
            return "250 2.0.0 no delivery report found; discarded"
        return f"250 2.0.0 {count} delivery event(s) recorded"

    # --- lifecycle -------------------------------------------------------------

    def start(self) -> ReportReceiver:
        """Start listening; return self once the socket is bound."""
        try:
            from aiosmtpd.smtp import SMTP
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ImportError(
                "the report receiver needs aiosmtpd: pip install 'amsdal-mail[tracking]'"
            ) from exc
        ready = threading.Event()
        failure: list[BaseException] = []
        loop = asyncio.new_event_loop()
        handler = _Handler(self)

        def factory() -> SMTP:
            return SMTP(
                handler,
                data_size_limit=self.max_size,
                hostname=self.server_hostname,
                ident="amsdal-mail report receiver",
                loop=loop,
            )

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                self._server = loop.run_until_complete(
                    loop.create_server(factory, host=self.host, port=self.port)
                )
                self.port = self._server.sockets[0].getsockname()[1]
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="amsdal-bounces-smtp", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            self._thread = None
            raise failure[0]
        return self

    def stop(self) -> None:
        """Stop listening and wait for the server thread and the worker."""
        loop, thread, server = self._loop, self._thread, self._server
        if loop is not None and thread is not None:

            async def shutdown() -> None:
                if server is not None:
                    server.close()
                    await server.wait_closed()
                loop.stop()

            asyncio.run_coroutine_threadsafe(shutdown(), loop)
            thread.join(timeout=10)
        self._loop = self._thread = self._server = None
        self.executor.shutdown(wait=True)

    def __enter__(self) -> ReportReceiver:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def event_json(event: DeliveryEvent, *, secret: str | bytes | None = None) -> str:
    """Return ``event`` as one JSON line, with ``verp`` when its return path's token checks."""
    data = event.as_dict()
    data["verp"] = None
    if event.return_path and (secret or os.environ.get(VERP_SECRET_ENV)):
        try:
            token = decode_verp(event.return_path, secret=secret)
        except ValueError:
            pass
        else:
            data["verp"] = {"message_key": token.message_key, "recipient": token.recipient}
    return json.dumps(data, ensure_ascii=False, sort_keys=True)


def serve(
    listen: str,
    *,
    return_path: str | Sequence[str],
    max_size: int = MAX_SIZE,
    out: TextIO = sys.stdout,
    secret: str | bytes | None = None,
    on_event: EventCallback | None = None,
) -> None:
    """Receive reports on ``listen`` (``HOST:PORT``) until SIGINT or SIGTERM.

    Each event is printed to ``out`` as one JSON line (see :func:`event_json`)
    and, when given, passed to ``on_event``. "listening on HOST:PORT" goes to
    standard error once the socket is bound.
    """
    host, port = parse_listen(listen)
    lock = threading.Lock()

    def record(event: DeliveryEvent) -> None:
        if on_event is not None:
            on_event(event)
        with lock:
            out.write(event_json(event, secret=secret) + "\n")
            out.flush()

    stop = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        with ReportReceiver(
            host, port, return_paths=return_path, on_event=record, max_size=max_size
        ) as receiver:
            print(f"listening on {receiver.host}:{receiver.port}", file=sys.stderr, flush=True)
            stop.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def build_parser(prog: str = "amsdal-mail bounces") -> argparse.ArgumentParser:
    """Return the parser of ``amsdal-mail bounces``."""
    parser = argparse.ArgumentParser(prog=prog, description="Receive delivery reports.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser(
        "serve", help="an SMTP server that prints each delivery event as a JSON line"
    )
    run.add_argument("--listen", required=True, metavar="HOST:PORT")
    run.add_argument(
        "--return-path",
        action="append",
        required=True,
        metavar="ADDR",
        help="accept reports for this address and its VERP addresses (repeatable)",
    )
    run.add_argument("--max-size", type=int, default=MAX_SIZE, metavar="BYTES")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``amsdal-mail bounces ...``; return the exit code (0 stopped, 2 usage)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        parse_listen(args.listen)
        _normalise(args.return_path)
    except ValueError as exc:
        parser.print_usage(sys.stderr)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.max_size < 1:
        print("error: --max-size must be a positive number of bytes", file=sys.stderr)
        return 2
    try:
        serve(args.listen, return_path=args.return_path, max_size=args.max_size)
    except OSError as exc:
        print(f"error: cannot listen on {args.listen}: {exc}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
