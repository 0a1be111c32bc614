"""Test support for Django projects: the signals and statuses of the real backend, no server.

Django's test runner (and pytest-django) swap ``EMAIL_BACKEND`` (or every
``MAILERS`` alias) for the locmem backend, so the ``pre_send`` and ``post_send``
receivers of a project and the per-recipient statuses never run in its tests.
:class:`TestEmailBackend` brings them back without a server::

    from django.core import mail
    from django_amsdal_mail.testing import script_replies, use_test_backend

    @use_test_backend()
    class SignupTests(TestCase):
        def test_refused_address_is_flagged(self):
            with script_replies({"x@example.com": (550, "5.1.1 No such user")}):
                signup("x@example.com")
            self.assertEqual(mail.outbox[0].amsdal_status.recipients["x@example.com"].status,
                             "rejected")

Each message goes through the same steps as with
:class:`~django_amsdal_mail.backend.EmailBackend` (``pre_send``, where
:class:`~django_amsdal_mail.CancelSend` cancels it; the conversion; the
status; ``post_send``; ``message.amsdal_status``; Django's errors and
``fail_silently``), only the sending is scripted (:func:`script_replies`).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any, Final

from django.conf import settings
from django.core import mail
from django.core.mail import EmailMessage as DjangoEmailMessage
from django.test.utils import override_settings

from amsdal_mail import SendStatus
from amsdal_mail.testing import Reply, ScriptedBackend, ScriptedReplies, script_replies

from .backend import EmailBackend
from .flow import Request, Send, SendSignal
from .signals import post_send

__all__ = [
    "TEST_BACKEND",
    "CapturedMail",
    "TestEmailBackend",
    "capture_mail",
    "script_replies",
    "use_test_backend",
]

#: The dotted path of :class:`TestEmailBackend`, for ``EMAIL_BACKEND`` or a MAILERS ``BACKEND``.
TEST_BACKEND: Final = "django_amsdal_mail.testing.TestEmailBackend"


class _Performer(ScriptedBackend):
    """The amsdal_mail backend of a TestEmailBackend: scripted statuses, kept nowhere."""

    records = False


_PERFORMER: Final = f"{__name__}._Performer"


class TestEmailBackend(EmailBackend):
    """A Django email backend for tests: :class:`EmailBackend`'s steps, scripted replies.

    As Django's locmem backend, every message handed over is appended (as
    a copy) to ``django.core.mail.outbox``, here with its ``amsdal_status``
    set; a message without recipients, or cancelled by a ``pre_send``
    receiver, is not. Its status is the one the SMTP backend would report
    for the replies :func:`script_replies` scripts (250 for the others):
    ``sent``, ``failed`` (4xx) or ``rejected`` (5xx). ``send_messages()``
    returns, and raises, what :class:`EmailBackend` would: a message counts
    when a recipient was accepted; with none accepted it raises
    ``smtplib.SMTPRecipientsRefused`` unless ``fail_silently``.

    The signals are sent with ``sender=EmailBackend``, so receivers
    connected for the real backend's class run too (``backend`` is this
    instance). It takes the real backend's options and ignores the
    connection ones; ``backend`` is always the scripted one. No connection
    is made.
    """

    __test__ = False  # not a test class, although pytest would collect the name

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["backend"] = _PERFORMER
        super().__init__(*args, **kwargs)
        if not hasattr(mail, "outbox"):
            mail.outbox = []
        self._handed_over: list[SendStatus] = []

    def _perform(self, request: Request) -> Any:
        self._keep(request)
        if isinstance(request, SendSignal):
            return request.signal.send(sender=EmailBackend, backend=self, **request.arguments)
        return self._handed(request, super()._perform(request))

    async def _aperform(self, request: Request) -> Any:
        self._keep(request)
        if isinstance(request, SendSignal):
            return await request.signal.asend(
                sender=EmailBackend, backend=self, **request.arguments
            )
        return self._handed(request, await super()._aperform(request))

    def _handed(self, request: Request, reply: Any) -> Any:
        """Remember the status of a message handed over, to keep the message on post_send."""
        if isinstance(request, Send):
            self._handed_over.append(reply)
        return reply

    def _keep(self, request: Request) -> None:
        """Append the message of a post_send for a handed-over message to ``mail.outbox``."""
        if not (isinstance(request, SendSignal) and request.signal is post_send):
            return
        status = request.arguments["status"]
        for index, handed in enumerate(self._handed_over):
            if handed is status:
                del self._handed_over[index]
                message: DjangoEmailMessage = request.arguments["message"]
                # The copy shares this backend (message.connection), as locmem's would.
                mail.outbox.append(copy.deepcopy(message, {id(self): self}))
                return


def use_test_backend() -> override_settings:
    """Return ``override_settings`` sending Django mail through :class:`TestEmailBackend`.

    Under ``MAILERS`` (Django 6.1+) every alias is switched, else
    ``EMAIL_BACKEND``. Use it as a class or function decorator, or as a
    context manager; it works under Django's test runner and pytest-django,
    which had switched them to locmem.
    """
    configured: Any = getattr(settings, "MAILERS", None)  # Django 6.1+
    if configured is not None:
        mailers = {alias: {"BACKEND": TEST_BACKEND} for alias in configured}
        return override_settings(MAILERS=mailers)
    return override_settings(EMAIL_BACKEND=TEST_BACKEND)


class CapturedMail:
    """What :func:`capture_mail` (and the ``amsdal_test_backend`` fixture) gives a test."""

    def __init__(self, scripts: ExitStack) -> None:
        self._scripts = scripts

    @property
    def outbox(self) -> list[DjangoEmailMessage]:
        """``django.core.mail.outbox``: the messages handed over, each with ``amsdal_status``."""
        outbox: list[DjangoEmailMessage] = mail.outbox
        return outbox

    def script(self, replies: dict[str, Reply], /) -> ScriptedReplies:
        """Script these replies (as :func:`script_replies`) until the end of the test."""
        return self._scripts.enter_context(script_replies(replies))

    def __repr__(self) -> str:
        return f"<CapturedMail outbox={len(self.outbox)}>"


@contextmanager
def capture_mail() -> Iterator[CapturedMail]:
    """Send Django mail through :class:`TestEmailBackend` inside the block, outbox emptied.

    ``django.core.mail.outbox`` is emptied on entry (and made if the test
    environment has not made it); on exit the settings and any scripts of
    :meth:`CapturedMail.script` are undone.
    """
    made = not hasattr(mail, "outbox")
    with ExitStack() as stack, use_test_backend():
        if made:
            mail.outbox = []
        else:
            mail.outbox.clear()
        try:
            yield CapturedMail(stack)
        finally:
            if made and hasattr(mail, "outbox"):
                del mail.outbox
