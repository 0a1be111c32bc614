"""Run the demo: ``python -m demo`` (or ``make demo``)."""

from __future__ import annotations

from . import django_part, library, outbox_part
from .server import RecordingServer

REFUSALS = {
    "nobody@example.com": "550 5.1.1 No such user here",
    "busy@example.com": "450 4.2.1 Mailbox busy, try again later",
}


def main() -> None:
    """Start the embedded server, run each part of the demo, stop the server.

    The outbox part has a server of its own (one that greylists a recipient).
    """
    with RecordingServer(rcpt_replies=REFUSALS) as server:
        print(f"Embedded SMTP server listening on {server.host}:{server.port}")
        print("\n######## amsdal_mail library ########")
        library.run(server)
        print("\n######## Django example project ########")
        django_part.run(server)
        print(f"\nThe server received {len(server.messages)} message(s) in total.")
    print("\n######## Django outbox: background sending through a worker ########")
    outbox_part.run()


if __name__ == "__main__":
    main()
