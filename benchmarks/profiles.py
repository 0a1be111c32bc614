"""The messages the benchmark sends, built the same way for every library.

A :class:`Profile` describes the content; ``ours``, ``django`` and ``stdlib``
build the equivalent message with amsdal_mail, Django and the standard
library's modern ``email.message.EmailMessage``. Content is deterministic so
every sender carries the same bytes.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from email.message import EmailMessage as StdlibMessage
from typing import Any

SENDER = "Benchmark Sender <sender@example.com>"
SENDER_ADDR = "sender@example.com"

_WORDS = (
    "mail message server client delivery transaction recipient header body "
    "attachment pipeline reply status envelope benchmark loopback socket"
).split()


def _text(seed: int, words: int) -> str:
    rng = random.Random(seed)
    lines, line = [], []
    for _ in range(words):
        line.append(rng.choice(_WORDS))
        if len(line) == 12:
            lines.append(" ".join(line))
            line = []
    if line:
        lines.append(" ".join(line))
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Profile:
    """What each message of a benchmark run carries."""

    name: str
    title: str
    #: to / cc / bcc recipient counts per message
    to: int = 1
    cc: int = 0
    bcc: int = 0
    html: bool = False
    attachment_size: int = 0

    @property
    def recipients(self) -> int:
        return self.to + self.cc + self.bcc


def make_profiles(recipients: int, attachment_kib: int) -> list[Profile]:
    """Return the three network profiles (small, attachment, many recipients)."""
    to = max(1, recipients // 5)
    cc = max(0, (recipients - to) // 3)
    bcc = max(0, recipients - to - cc)
    return [
        Profile("small", "small text message"),
        Profile(
            "attachment",
            f"text + HTML + {attachment_kib} KB attachment",
            html=True,
            attachment_size=attachment_kib * 1024,
        ),
        Profile("recipients", f"{recipients} recipients per message", to=to, cc=cc, bcc=bcc),
    ]


class Content:
    """The fields of message ``i`` of a profile, shared by every builder."""

    _cache: dict[tuple[str, int], bytes] = {}

    def __init__(self, profile: Profile, i: int) -> None:
        self.subject = f"Benchmark {profile.name} message {i}"
        self.body = _TEXT_BODY
        self.html = _HTML_BODY if profile.html else None
        n = 0

        def addrs(count: int) -> list[str]:
            nonlocal n
            out = [f"user{i}.{n + k}@example.com" for k in range(count)]
            n += count
            return out

        self.to = addrs(profile.to)
        self.cc = addrs(profile.cc)
        self.bcc = addrs(profile.bcc)
        self.attachment: bytes | None = None
        if profile.attachment_size:
            key = (profile.name, profile.attachment_size)
            if key not in self._cache:
                self._cache[key] = random.Random(7).randbytes(profile.attachment_size)
            self.attachment = self._cache[key]

    @property
    def recipients(self) -> list[str]:
        return [*self.to, *self.cc, *self.bcc]


_TEXT_BODY = _text(1, 60)
_HTML_BODY = (
    "<html><body><h1>Benchmark</h1>"
    + "".join(f"<p>{line}</p>" for line in _text(2, 300).splitlines())
    + "</body></html>\n"
)
ATTACHMENT_NAME = "report.pdf"
ATTACHMENT_TYPE = "application/pdf"


def ours(c: Content) -> Any:
    """Return the amsdal_mail message for ``c``."""
    from amsdal_mail import Attachment, EmailMessage

    attachments = []
    if c.attachment is not None:
        attachments.append(Attachment(ATTACHMENT_NAME, c.attachment, ATTACHMENT_TYPE))
    return EmailMessage(
        c.subject,
        c.body,
        SENDER,
        to=c.to,
        cc=c.cc,
        bcc=c.bcc,
        html_body=c.html,
        attachments=attachments,
    )


def django(c: Content) -> Any:
    """Return the Django message for ``c`` (Django must be configured)."""
    from django.core.mail import EmailMultiAlternatives

    msg = EmailMultiAlternatives(c.subject, c.body, SENDER, to=c.to, cc=c.cc, bcc=c.bcc)
    if c.html is not None:
        msg.attach_alternative(c.html, "text/html")
    if c.attachment is not None:
        msg.attach(ATTACHMENT_NAME, c.attachment, ATTACHMENT_TYPE)
    return msg


def stdlib(c: Content) -> StdlibMessage:
    """Return the standard library's modern ``EmailMessage`` for ``c``."""
    msg = StdlibMessage()
    msg["Subject"] = c.subject
    msg["From"] = SENDER
    msg["To"] = ", ".join(c.to)
    if c.cc:
        msg["Cc"] = ", ".join(c.cc)
    if c.bcc:
        msg["Bcc"] = ", ".join(c.bcc)
    msg.set_content(c.body)
    if c.html is not None:
        msg.add_alternative(c.html, subtype="html")
    if c.attachment is not None:
        maintype, subtype = ATTACHMENT_TYPE.split("/")
        msg.add_attachment(
            c.attachment, maintype=maintype, subtype=subtype, filename=ATTACHMENT_NAME
        )
    return msg
