"""Compose a message (HTML alternative + generated attachment) and list what was sent.

The form sends with ``EmailMessage.send()``, so ``EMAIL_BACKEND`` decides how:
the project's settings name the outbox's backend (the message is stored and a
worker sends it), the tests also run it with the inline backend.
"""

import smtplib

from django.apps import apps
from django.contrib import messages
from django.core.mail import EmailMultiAlternatives
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.html import escape, linebreaks

from .forms import ComposeForm
from .models import RecipientRecord

OUTBOX_APP = "django_amsdal_mail.outbox"


def build_message(to: list[str], subject: str, text: str) -> EmailMultiAlternatives:
    """The message the form sends: text, an HTML alternative and a small text attachment."""
    email = EmailMultiAlternatives(subject=subject, body=text, to=to)
    email.attach_alternative(
        f"<h1>{escape(subject)}</h1>{linebreaks(text, autoescape=True)}", "text/html"
    )
    summary = f"Subject: {subject}\nRecipients: {', '.join(to)}\n\n{text}\n"
    email.attach("summary.txt", summary, "text/plain")
    return email


def compose(request: HttpRequest) -> HttpResponse:
    form = ComposeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        email = build_message(data["to"], data["subject"], data["message"])
        try:
            email.send()
        except smtplib.SMTPException as exc:  # recorded by the post_send receiver anyway
            messages.error(request, f"Not sent: {exc}")
        else:
            if getattr(email, "outbox_message", None) is not None:
                messages.success(request, "Message queued in the outbox: a worker sends it.")
            else:
                messages.success(request, "Message handed to the SMTP server.")
        return redirect("sent")
    return render(request, "mailroom/compose.html", {"form": form})


def sent(request: HttpRequest) -> HttpResponse:
    records = RecipientRecord.objects.select_related("message").order_by("-message__created", "id")
    context: dict[str, object] = {"records": records, "outbox": None}
    if apps.is_installed(OUTBOX_APP):
        from django_amsdal_mail.outbox.models import OutboxMessage

        context["outbox"] = OutboxMessage.objects.prefetch_related("recipients").order_by(
            "-created_at"
        )[:50]
    return render(request, "mailroom/sent.html", context)
