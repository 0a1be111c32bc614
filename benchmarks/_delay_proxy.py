"""Child process: a TCP proxy on 127.0.0.1 that delays every byte by half a round trip each way.

``python -m benchmarks._delay_proxy --upstream HOST:PORT --rtt-ms N --port-file F``
listens on a free port of 127.0.0.1 (written to F), and for each connection
opens one to the upstream server; every chunk read from either side is
written to the other ``N / 2`` ms after it arrived, in order, whatever came
after it (the link has latency, not a bandwidth limit: a pipelined group
costs one round trip, a lock-step dialogue one per command). TCP_NODELAY on
all its sockets, so the proxy itself holds nothing back. Exits when its
standard input closes or after ``--lifetime`` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import socket
import sys


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    loop = asyncio.get_running_loop()
    queue: collections.deque[tuple[float, bytes]] = collections.deque()
    ready = asyncio.Event()
    done = False

    async def deliver() -> None:
        while True:
            while not queue:
                if done:
                    return
                ready.clear()
                await ready.wait()
            due, data = queue.popleft()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()

    sender = asyncio.create_task(deliver())
    try:
        while chunk := await reader.read(65536):
            queue.append((loop.time() + delay, chunk))
            ready.set()
    except OSError:
        pass
    finally:
        done = True
        ready.set()
        try:
            await sender
        except OSError:
            pass
        try:
            writer.write_eof()
        except OSError:
            pass


def _nodelay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


async def _serve(upstream: tuple[str, int], rtt: float, port_file: str, lifetime: float) -> None:
    one_way = rtt / 2

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection(*upstream)
        except OSError:
            client_w.close()
            return
        _nodelay(client_w)
        _nodelay(server_w)
        try:
            await asyncio.gather(
                _pump(client_r, server_w, one_way), _pump(server_r, client_w, one_way)
            )
        except asyncio.CancelledError:
            pass  # the proxy is shutting down with this connection still open
        finally:
            for w in (client_w, server_w):
                w.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    with open(port_file, "w") as f:
        f.write(str(server.sockets[0].getsockname()[1]))
    loop = asyncio.get_running_loop()
    closed = asyncio.Event()
    loop.add_reader(sys.stdin.fileno(), lambda: closed.set() if not sys.stdin.read(1) else None)
    try:
        await asyncio.wait_for(closed.wait(), lifetime)
    except TimeoutError:
        pass
    server.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--upstream", required=True, help="HOST:PORT of the real server")
    parser.add_argument("--rtt-ms", type=float, required=True, help="round trip to add (ms)")
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--lifetime", type=float, default=900)
    args = parser.parse_args()
    host, _, port = args.upstream.rpartition(":")
    asyncio.run(_serve((host, int(port)), args.rtt_ms / 1000, args.port_file, args.lifetime))


if __name__ == "__main__":
    main()
