"""Printing what the server received and what each recipient's status is."""

from __future__ import annotations

from email.message import EmailMessage as ParsedMessage
from email.message import Message

from amsdal_mail import SendStatus

from .server import ReceivedMessage


def show_status(title: str, status: SendStatus) -> None:
    """Print a status, one line per recipient."""
    print(f"\n== {title}")
    print(f"   status: {sorted(status.status)}  esp_response: {status.esp_response!r}")
    for address, rs in status.recipients.items():
        print(f"   {address:<28} {rs.status:<9} {rs.code} {rs.response}")


def _tree(part: Message, depth: int = 0) -> list[str]:
    label = part.get_content_type()
    if part.get_filename():
        label += f"  filename={part.get_filename()!r}"
    if part.get("Content-ID"):
        label += f"  Content-ID={part.get('Content-ID')}"
    if not part.is_multipart():
        payload = part.get_payload(decode=True) or b""
        label += f"  ({len(payload)} bytes)"
    lines = ["   " + "  " * depth + "- " + label]
    if part.is_multipart():
        for sub in part.get_payload():  # type: ignore[union-attr]
            lines.extend(_tree(sub, depth + 1))
    return lines


def show_received(received: ReceivedMessage) -> None:
    """Print the envelope, the main headers and the MIME tree of a received message."""
    msg: ParsedMessage = received.message
    print(f"   server got: MAIL FROM:<{received.mail_from}> RCPT TO:{received.rcpt_tos}")
    for name in ("From", "To", "Cc", "Reply-To", "Subject"):
        if msg[name] is not None:
            print(f"     {name}: {msg[name]}")
    print(f"     Bcc header present: {msg['Bcc'] is not None}")
    print("\n".join(_tree(msg)))
