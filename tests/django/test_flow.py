"""The steps of EmailBackend.send_messages(), driven with scripted replies and no sockets.

``send_flow`` yields what it needs done; here a script answers each request
(or raises for it), and the test compares the requests, in order, with what
Django's contract asks: pre_send, open once, send, post_send, close what was
opened, and count or raise.
"""

from __future__ import annotations

import smtplib
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from django.core.mail import EmailMessage

from amsdal_mail import ConnectError, SendStatus
from amsdal_mail.status import REJECTED, SENT
from django_amsdal_mail import CancelSend
from django_amsdal_mail.flow import (
    Close,
    Open,
    Outcome,
    Request,
    Send,
    SendSignal,
    resume,
    send_flow,
)
from django_amsdal_mail.signals import post_send, pre_send

Script = Callable[[Request], Any]


def _message(subject: str, to: Sequence[str] = ("to@example.com",)) -> EmailMessage:
    return EmailMessage(subject, "Body", "from@example.com", list(to))


def _name(request: Request) -> str:
    """Name a request for the transcript: pre_send:Subject, open, send:Subject, ..."""
    if isinstance(request, SendSignal):
        which = "pre_send" if request.signal is pre_send else "post_send"
        subject = request.arguments["message"].subject
        if which == "post_send":
            return f"post_send:{subject}:{','.join(sorted(request.arguments['status'].status))}"
        return f"pre_send:{subject}"
    if isinstance(request, Send):
        return f"send:{request.message.subject}"
    return "open" if isinstance(request, Open) else "close"


def _run(
    messages: Sequence[EmailMessage], script: Script, *, fail_silently: bool = False
) -> tuple[list[str], int | BaseException]:
    """Drive the flow as the sync driver does; return the transcript and the count or error."""
    transcript: list[str] = []
    flow = send_flow(messages, fail_silently=fail_silently)
    try:
        step = resume(flow, Outcome())
        while not isinstance(step, int):
            transcript.append(_name(step))
            try:
                outcome = Outcome(script(step))
            except BaseException as exc:
                outcome = Outcome(error=exc)
            step = resume(flow, outcome)
    except Exception as exc:
        return transcript, exc
    return transcript, step


def _status(message: Any, word: str, code: int = 250, command: str = "DATA") -> SendStatus:
    return SendStatus.uniform(
        message.recipients(), word, code=code, response="reply", command=command
    )


def server(
    *,
    refuse: Sequence[str] = (),
    open_error: BaseException | None = None,
    send_error: dict[str, BaseException] | None = None,
    cancel: Sequence[str] = (),
) -> Script:
    """Return a script: subjects in ``refuse`` get 550s, ``cancel`` are cancelled by pre_send."""

    def script(request: Request) -> Any:
        if isinstance(request, SendSignal):
            if request.signal is pre_send and request.arguments["message"].subject in cancel:
                raise CancelSend
            return []
        if isinstance(request, Open):
            if open_error is not None:
                raise open_error
            return True
        if isinstance(request, Send):
            subject = request.message.subject
            if send_error and subject in send_error:
                raise send_error[subject]
            if subject in refuse:
                return _status(request.message, REJECTED, 550, command="RCPT")
            return _status(request.message, SENT)
        assert isinstance(request, Close)
        return None

    return script


def test_one_connection_for_the_batch_closed_at_the_end() -> None:
    """pre_send, open once, send, post_send per message; close what was opened; the count."""
    transcript, result = _run([_message("a"), _message("b")], server())
    assert transcript == [
        "pre_send:a",
        "open",
        "send:a",
        "post_send:a:sent",
        "pre_send:b",
        "send:b",
        "post_send:b:sent",
        "close",
    ]
    assert result == 2


def test_no_recipients_and_cancelled_messages_open_nothing() -> None:
    """A message without recipients sends no signal; a cancelled one stops after pre_send."""
    transcript, result = _run([_message("empty", to=()), _message("x")], server(cancel=["x"]))
    assert transcript == ["pre_send:x"]
    assert result == 0


def test_every_recipient_refused_raises_after_post_send_and_closes() -> None:
    """Django's SMTPRecipientsRefused, after post_send has the status, and the close."""
    transcript, result = _run([_message("gone"), _message("later")], server(refuse=["gone"]))
    assert transcript == ["pre_send:gone", "open", "send:gone", "post_send:gone:rejected", "close"]
    assert isinstance(result, smtplib.SMTPRecipientsRefused)


def test_a_refusal_with_fail_silently_is_not_counted_and_the_batch_goes_on() -> None:
    """fail_silently: the refused message is reported and skipped; the next one is sent."""
    transcript, result = _run(
        [_message("gone"), _message("ok")], server(refuse=["gone"]), fail_silently=True
    )
    assert transcript[-3:] == ["send:ok", "post_send:ok:sent", "close"]
    assert result == 1


@pytest.mark.parametrize("fail_silently", [False, True])
def test_a_failed_open_reports_every_message_without_sending(fail_silently: bool) -> None:
    """Opening fails: each message is reported failed, none is sent, nothing to close."""
    error = ConnectError("connection refused")
    transcript, result = _run(
        [_message("a"), _message("b")], server(open_error=error), fail_silently=fail_silently
    )
    if fail_silently:
        assert transcript == ["pre_send:a", "open", "post_send:a:failed"] + [
            "pre_send:b",
            "post_send:b:failed",
        ]
        assert result == 0
    else:
        assert transcript == ["pre_send:a", "open", "post_send:a:failed"]
        assert result is error


def test_a_connection_lost_while_sending_stops_the_batch() -> None:
    """A transport error for one message: reported failed, the rest not tried, still closed."""
    error = ConnectError("dropped")
    transcript, result = _run(
        [_message("a"), _message("b"), _message("c")],
        server(send_error={"b": error}),
        fail_silently=True,
    )
    assert transcript == [
        "pre_send:a",
        "open",
        "send:a",
        "post_send:a:sent",
        "pre_send:b",
        "send:b",
        "post_send:b:failed",
        "pre_send:c",
        "post_send:c:failed",
        "close",
    ]
    assert result == 1


def test_an_interrupt_while_sending_still_closes() -> None:
    """Anything raised while sending (here a KeyboardInterrupt) propagates after the close."""
    script = server(send_error={"a": KeyboardInterrupt()})
    transcript: list[str] = []
    flow = send_flow([_message("a")], fail_silently=True)
    step = resume(flow, Outcome())
    with pytest.raises(KeyboardInterrupt):
        while not isinstance(step, int):
            transcript.append(_name(step))
            try:
                outcome = Outcome(script(step))
            except BaseException as exc:
                outcome = Outcome(error=exc)
            step = resume(flow, outcome)
    assert transcript == ["pre_send:a", "open", "send:a", "close"]


def test_several_async_receivers_cancelling_at_once_cancel() -> None:
    """A group of CancelSend (async receivers failing together) cancels; with another error not."""

    def grouped(errors: list[Exception]) -> Script:
        def script(request: Request) -> Any:
            if isinstance(request, SendSignal) and request.signal is pre_send:
                raise ExceptionGroup("receivers", errors)
            return server()(request)

        return script

    assert _run([_message("x")], grouped([CancelSend(), CancelSend()])) == (["pre_send:x"], 0)
    transcript, result = _run([_message("x")], grouped([CancelSend(), RuntimeError("bug")]))
    assert transcript == ["pre_send:x"]
    assert isinstance(result, ExceptionGroup)


def test_post_send_is_the_same_signal_objects() -> None:
    """The signals requested are the public ones receivers connect to."""
    requests: list[Request] = []

    def script(request: Request) -> Any:
        requests.append(request)
        return server()(request)

    _run([_message("a")], script)
    signals = [r.signal for r in requests if isinstance(r, SendSignal)]
    assert signals == [pre_send, post_send]
