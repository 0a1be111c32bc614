"""Inline images from Django messages go into multipart/related with the HTML that uses them.

A Django ``EmailMultiAlternatives`` with an HTML alternative that references
an attached image by ``cid:`` (the image a ready-made MIME part with a
Content-ID header, as Django's documentation builds it) arrives with the
image and the alternatives together in multipart/related (RFC 2387), on
every Django version and without the ``mixed_subtype = "related"`` trick.
"""

from __future__ import annotations

import email.message
import email.policy
from email.mime.image import MIMEImage
from typing import Any

import django
from django.core.mail import EmailMultiAlternatives

from django_amsdal_mail.backend import EmailBackend
from tests.smtpd import RecordingServer

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
HTML = '<p>Logo: <img src="cid:logo@example.com"></p>'


def _image(cid: str) -> email.message.Message:
    """Return an inline PNG with a Content-ID, as each Django version takes it."""
    if django.VERSION >= (6, 0):
        part = email.message.MIMEPart()
        part.set_content(PNG, maintype="image", subtype="png", disposition="inline", cid=cid)
        return part
    image = MIMEImage(PNG, _subtype="png")
    image.add_header("Content-ID", cid)
    image.add_header("Content-Disposition", "inline")
    return image


def _tree(part: Any) -> Any:
    if part.is_multipart():
        return (part.get_content_type(), [_tree(p) for p in part.iter_parts()])
    return part.get_content_type()


def _received(server: RecordingServer, message: EmailMultiAlternatives) -> Any:
    assert EmailBackend(host=server.host, port=server.port).send_messages([message]) == 1
    [received] = server.wait_for_messages(1)
    return email.message_from_bytes(received.data, policy=email.policy.default)


def _message() -> EmailMultiAlternatives:
    message = EmailMultiAlternatives("Logo", "Text", "from@example.com", ["to@example.com"])
    message.attach_alternative(HTML, "text/html")
    return message


def test_a_referenced_inline_image_is_related_to_the_html(server: RecordingServer) -> None:
    """The image and the alternatives form multipart/related, typed by its root."""
    message = _message()
    message.attach(_image("<logo@example.com>"))

    parsed = _received(server, message)

    assert _tree(parsed) == (
        "multipart/related",
        [("multipart/alternative", ["text/plain", "text/html"]), "image/png"],
    )
    assert parsed.get_param("type") == "multipart/alternative"
    image = next(p for p in parsed.walk() if p.get_content_type() == "image/png")
    assert image["Content-ID"] == "<logo@example.com>"
    assert image.get_payload(decode=True) == PNG


def test_other_attachments_stay_in_mixed_after_the_related_part(
    server: RecordingServer,
) -> None:
    """A PDF and an image nobody references stay attachments; only the used image moves."""
    message = _message()
    message.attach("terms.pdf", b"%PDF-1.4", "application/pdf")
    message.attach(_image("<unused@example.com>"))
    message.attach(_image("<logo@example.com>"))

    parsed = _received(server, message)

    assert _tree(parsed) == (
        "multipart/mixed",
        [
            (
                "multipart/related",
                [("multipart/alternative", ["text/plain", "text/html"]), "image/png"],
            ),
            "application/pdf",
            "image/png",
        ],
    )
    related, _, unused = parsed.iter_parts()
    assert related.get_param("type") == "multipart/alternative"
    assert unused["Content-ID"] == "<unused@example.com>"
