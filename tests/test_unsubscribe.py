"""EmailMessage(unsubscribe=...): List-Unsubscribe (RFC 2369) and one-click (RFC 8058)."""

from __future__ import annotations

import email
import email.policy

import pytest

from amsdal_mail import EmailMessage, InvalidMessageError
from amsdal_mail.mime import render


def _headers(**kwargs: object) -> email.message.Message:
    message = EmailMessage("Hi", "Body", "a@example.com", ["b@example.com"], **kwargs)  # type: ignore[arg-type]
    return email.message_from_bytes(render(message), policy=email.policy.compat32)


@pytest.mark.parametrize(
    ("unsubscribe", "list_unsubscribe", "post"),
    [
        ("https://example.com/u?id=1&t=2", "<https://example.com/u?id=1&t=2>", True),
        ("mailto:unsub@example.com?subject=stop", "<mailto:unsub@example.com?subject=stop>", False),
        ("http://example.com/u", "<http://example.com/u>", False),
        (
            ["https://example.com/u/1", "mailto:u@example.com"],
            "<https://example.com/u/1>, <mailto:u@example.com>",
            True,
        ),
        (("mailto:u@example.com",), "<mailto:u@example.com>", False),
    ],
)
def test_unsubscribe_headers(
    unsubscribe: str | list[str], list_unsubscribe: str, post: bool
) -> None:
    """List-Unsubscribe holds the URIs; an https one adds List-Unsubscribe-Post (one-click)."""
    parsed = _headers(unsubscribe=unsubscribe)
    assert parsed["List-Unsubscribe"] == list_unsubscribe
    assert parsed["List-Unsubscribe-Post"] == ("List-Unsubscribe=One-Click" if post else None)


def test_a_long_url_is_written_as_it_is_never_encoded() -> None:
    """A URL longer than a header line stays one token (no encoded-words, no break inside)."""
    url = "https://example.com/unsubscribe/" + "a1b2c3" * 30
    raw = render(
        EmailMessage(
            "Hi", "B", "a@example.com", ["b@example.com"], unsubscribe=[url, "mailto:u@example.com"]
        )
    )
    assert f"\r\nList-Unsubscribe: <{url}>,\r\n <mailto:u@example.com>\r\n".encode() in raw
    assert b"=?utf-8?" not in raw


def test_a_given_list_unsubscribe_header_is_kept_as_given() -> None:
    """A List-Unsubscribe of the message's own headers is written as given (not encoded)."""
    value = "<https://example.com/" + "x" * 90 + ">,<mailto:a@example.com>"
    raw = render(
        EmailMessage(
            "Hi", "B", "a@example.com", ["b@example.com"], headers={"List-Unsubscribe": value}
        )
    )
    assert f"\r\nList-Unsubscribe: {value}\r\n".encode() in raw
    assert b"List-Unsubscribe-Post" not in raw


@pytest.mark.parametrize(
    "uri",
    [
        "ftp://example.com/u",
        "example.com/u",
        "https://",
        "mailto:",
        "https://example.com/a b",
        "https://example.com/<x>",
        "https://example.com/a,b",
        "https://exämple.com/",
        "https://example.com/\r\nBcc: x@example.com",
        "https://example.com/" + "x" * 900,
    ],
)
def test_bad_unsubscribe_uris_are_refused(uri: str) -> None:
    """Anything but a plain https/http/mailto URI is an InvalidMessageError naming it."""
    with pytest.raises(InvalidMessageError) as info:
        EmailMessage("Hi", "B", "a@example.com", ["b@example.com"], unsubscribe=uri)
    assert info.value.field == "unsubscribe"
    assert repr(uri) in str(info.value)


def test_not_a_string() -> None:
    """A non-string URI is refused, naming its type."""
    with pytest.raises(InvalidMessageError, match="not int"):
        EmailMessage("Hi", "B", "a@example.com", ["b@example.com"], unsubscribe=[1])  # type: ignore[list-item]


def test_unsubscribe_and_the_header_together_are_refused() -> None:
    """unsubscribe= and a List-Unsubscribe header would be two answers: refused."""
    with pytest.raises(InvalidMessageError, match="'list-unsubscribe' in headers both set"):
        EmailMessage(
            "Hi",
            "B",
            "a@example.com",
            ["b@example.com"],
            headers={"list-unsubscribe": "<mailto:x@example.com>"},
            unsubscribe="https://example.com/u",
        )


def test_unsubscribe_is_checked_again_on_validate() -> None:
    """The attribute is mutable; validate() checks it afresh."""
    message = EmailMessage("Hi", "B", "a@example.com", ["b@example.com"])
    message.unsubscribe = "javascript:alert(1)"
    with pytest.raises(InvalidMessageError, match="unsubscribe URI 'javascript:alert"):
        message.validate()
