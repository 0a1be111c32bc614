"""The reply parser fed bytes, and the write planner: the wire layer of both drivers."""

from __future__ import annotations

import pytest

from amsdal_mail.smtp.wire import (
    COALESCE,
    MAX_LINE,
    MAX_REPLY,
    ReplyLimitError,
    ReplyParser,
    plan_writes,
)
from amsdal_mail.status import SMTPReply

STREAM = (
    b"220 mx.test ESMTP\r\n"
    b"250-mx.test greets you\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250 8BITMIME\r\n"
    b"550 5.1.1 No such user\r\n"
    b"354 Go ahead\r\n"
)
REPLIES = [
    SMTPReply(220, "mx.test ESMTP"),
    SMTPReply(250, "mx.test greets you\nPIPELINING\nSIZE 1000\n8BITMIME"),
    SMTPReply(550, "5.1.1 No such user"),
    SMTPReply(354, "Go ahead"),
]


def parse(*pieces: bytes) -> list[SMTPReply]:
    """Feed ``pieces`` one after another; return every reply parsed, in order."""
    parser = ReplyParser()
    out: list[SMTPReply] = []
    for piece in pieces:
        parser.feed(piece)
        while (reply := parser.pop()) is not None:
            out.append(reply)
    return out


@pytest.mark.parametrize("cut", range(len(STREAM) + 1))
def test_replies_are_the_same_wherever_the_bytes_are_split(cut: int) -> None:
    """Split at any position, the stream gives the same replies, multi-line ones joined."""
    assert parse(STREAM[:cut], STREAM[cut:]) == REPLIES


def test_a_byte_at_a_time() -> None:
    """A server trickling one byte per segment still gives whole replies, in order."""
    assert parse(*(STREAM[i : i + 1] for i in range(len(STREAM)))) == REPLIES


def test_a_reply_is_complete_only_with_its_last_line() -> None:
    """Nothing is handed out before the final line (code and space) of a reply arrives."""
    parser = ReplyParser()
    parser.feed(b"250-first\r\n250-second\r\n250 thi")
    assert parser.pop() is None
    parser.feed(b"rd\r\n")
    assert parser.pop() == SMTPReply(250, "first\nsecond\nthird")


def test_bare_lf_and_surrounding_blanks() -> None:
    """A bare LF ends a line too; the text loses surrounding blanks, as smtplib strips it."""
    assert parse(b"250 \t ok \t\n") == [SMTPReply(250, "ok")]


def test_a_line_without_a_numeric_code_ends_its_reply_with_code_minus_one() -> None:
    """Garbage where a code belongs gives code -1, as in smtplib, and ends the reply."""
    assert parse(b"250-one\r\nxyz junk\r\n250 next\r\n") == [
        SMTPReply(-1, "one\njunk"),
        SMTPReply(250, "next"),
    ]


def test_non_utf8_text_is_replaced_not_fatal() -> None:
    """Bytes that are not UTF-8 become replacement characters."""
    assert parse(b"550 caf\xe9\r\n") == [SMTPReply(550, "caf\ufffd")]


def test_the_longest_line_allowed_and_one_more() -> None:
    """A line of MAX_LINE bytes with its line break passes; one byte more is refused."""
    longest = b"250 " + b"x" * (MAX_LINE - 6) + b"\r\n"
    assert len(longest) == MAX_LINE
    assert parse(longest)[0].code == 250
    with pytest.raises(ReplyLimitError, match="Line too long") as info:
        parse(b"250 " + b"x" * (MAX_LINE - 5) + b"\r\n")
    assert info.value.code == 500


def test_a_line_that_never_ends_is_refused_before_the_limit_is_passed() -> None:
    """A line over the limit is refused even while its line break has not come."""
    parser = ReplyParser()
    parser.feed(b"250 " + b"x" * (MAX_LINE - 5))
    with pytest.raises(ReplyLimitError, match="Line too long"):
        parser.feed(b"xx")


def test_an_endless_multi_line_reply_is_capped() -> None:
    """Lines each within the limit, but a reply over MAX_REPLY bytes, are refused."""
    parser = ReplyParser()
    line = b"250-" + b"x" * 1000 + b"\r\n"
    with pytest.raises(ReplyLimitError, match="Reply too long") as info:
        for _ in range(MAX_REPLY // len(line) + 2):
            parser.feed(line)
    assert info.value.code == 500
    assert parser.pop() is None


def test_reset_discards_everything_received_before_tls() -> None:
    """reset(): queued replies, unfinished lines and unparsed bytes are all gone."""
    parser = ReplyParser()
    parser.feed(b"220 Ready to start TLS\r\n250 injected\r\n250-half\r\n250 par")
    parser.reset()
    parser.feed(b"tial\r\n250 after TLS\r\n")
    assert [parser.pop(), parser.pop()] == [SMTPReply(-1, ""), SMTPReply(250, "after TLS")]
    assert parser.pop() is None


def test_reset_before_a_clean_start() -> None:
    """After reset() a new stream parses as from a new parser."""
    parser = ReplyParser()
    parser.feed(b"250-a\r\n")
    parser.reset()
    parser.feed(STREAM)
    assert list(parser.replies) == REPLIES


# -- the write planner --------------------------------------------------------------------


def test_small_chunks_are_joined_into_one_write() -> None:
    """Commands and small message chunks go out in a single write."""
    chunks = [b"MAIL FROM:<a@x>\r\n", b"RCPT TO:<b@x>\r\n", b"DATA\r\n"]
    assert list(plan_writes(chunks)) == [b"".join(chunks)]


def test_one_small_chunk_is_written_as_it_is() -> None:
    """A lone chunk is not copied."""
    chunk = b"QUIT\r\n"
    [write] = plan_writes([chunk])
    assert write is chunk


def test_large_chunks_pass_through_uncopied_between_joined_small_ones() -> None:
    """A chunk of COALESCE bytes or more is its own write, the very object given."""
    big = b"x" * COALESCE
    chunks = [b"a\r\n", b"b\r\n", big, b"c\r\n", b"", b"d\r\n"]
    writes = list(plan_writes(chunks))
    assert writes == [b"a\r\nb\r\n", big, b"c\r\nd\r\n"]
    assert writes[1] is big


def test_joined_writes_stop_at_the_coalescing_size() -> None:
    """Many small chunks make writes of about COALESCE bytes, never a whole message."""
    chunks = [b"y" * 1000 + b"\r\n"] * 200
    writes = list(plan_writes(chunks))
    assert b"".join(writes) == b"".join(chunks)
    assert all(len(w) < COALESCE + 1002 for w in writes)
    assert all(len(w) >= COALESCE for w in writes[:-1])


def test_nothing_to_write() -> None:
    """No chunks, or only empty ones, give no write at all."""
    assert list(plan_writes([])) == [] and list(plan_writes([b"", b""])) == []
