"""A tiny authoritative DNS server for tests: TXT records from a JSON file, over UDP and TCP.

Run as ``python -m tests.dns_txt_server RECORDS.json HOST PORT``; it prints
``ready`` on standard output once both sockets are bound and answers until
it is killed. ``RECORDS.json`` maps lower-case names (no trailing dot) to
TXT text. Every other name, and every other type, gets NXDOMAIN / an empty
answer. It serves only what a DKIM verifier asks (``selector._domainkey.domain``
TXT), inside a network namespace whose ``resolv.conf`` names it, so that a
program using the system's resolver (OpenDKIM) finds a key without the internet.
"""

from __future__ import annotations

import json
import socket
import socketserver
import struct
import sys
import threading
from pathlib import Path

__all__ = ["answer"]

TYPE_TXT = 16
CLASS_IN = 1
#: Largest answer over UDP without EDNS; larger ones are truncated (TC) so the client uses TCP.
UDP_LIMIT = 512


def _question(query: bytes) -> tuple[str, int, int, int]:
    """Return (name, qtype, qclass, end offset) of the first question of ``query``."""
    labels, offset = [], 12
    while True:
        length = query[offset]
        offset += 1
        if length == 0:
            break
        if length & 0xC0:
            raise ValueError("compressed names are not expected in a question")
        labels.append(query[offset : offset + length].decode("ascii", "replace"))
        offset += length
    qtype, qclass = struct.unpack("!HH", query[offset : offset + 4])
    return ".".join(labels).lower(), qtype, qclass, offset + 4


def _txt_rdata(text: str) -> bytes:
    data = text.encode()
    chunks = [data[i : i + 255] for i in range(0, len(data), 255)] or [b""]
    return b"".join(bytes([len(chunk)]) + chunk for chunk in chunks)


def answer(query: bytes, records: dict[str, str], *, udp: bool) -> bytes:
    """Return the response to ``query`` for ``records`` (TC set when too large for UDP)."""
    (ident, flags) = struct.unpack("!HH", query[:4])
    name, qtype, qclass, end = _question(query)
    question = query[12:end]
    found = name.rstrip(".") in records
    answers = b""
    count = 0
    if found and qtype == TYPE_TXT and qclass == CLASS_IN:
        rdata = _txt_rdata(records[name.rstrip(".")])
        answers = b"\xc0\x0c" + struct.pack("!HHIH", TYPE_TXT, CLASS_IN, 60, len(rdata)) + rdata
        count = 1
    rcode = 0 if found else 3  # NXDOMAIN
    recursion_desired = flags & 0x0100
    reply_flags = 0x8000 | 0x0400 | recursion_desired | rcode  # response, authoritative
    response = struct.pack("!HHHHHH", ident, reply_flags, 1, count, 0, 0) + question + answers
    if udp and len(response) > UDP_LIMIT:
        header = struct.pack("!HHHHHH", ident, reply_flags | 0x0200, 1, 0, 0, 0)
        return header + question
    return response


def main(argv: list[str]) -> int:
    """Serve the records of ``argv[0]`` on ``argv[1]``:``argv[2]`` (UDP and TCP)."""
    records = {k.lower().rstrip("."): v for k, v in json.loads(Path(argv[0]).read_text()).items()}
    host, port = argv[1], int(argv[2])

    class UDPHandler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            data, sock = self.request
            sock.sendto(answer(data, records, udp=True), self.client_address)

    class TCPHandler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            (length,) = struct.unpack("!H", self.rfile.read(2))
            reply = answer(self.rfile.read(length), records, udp=False)
            self.wfile.write(struct.pack("!H", len(reply)) + reply)

    socketserver.UDPServer.allow_reuse_address = True
    socketserver.TCPServer.allow_reuse_address = True
    udp_server = socketserver.ThreadingUDPServer((host, port), UDPHandler)
    tcp_server = socketserver.ThreadingTCPServer((host, port), TCPHandler)
    tcp_server.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    threading.Thread(target=tcp_server.serve_forever, daemon=True).start()
    print("ready", flush=True)
    udp_server.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
