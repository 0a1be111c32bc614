"""Compose a message (HTML alternative + generated attachment) and list what was sent."""

import smtplib

from django.contrib import messages
from django.core.mail import EmailMultiAlternatives
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.html import escape, linebreaks

from .forms import ComposeForm
from .models import RecipientRecord


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
        try:
            build_message(data["to"], data["subject"], data["message"]).send()
        except smtplib.SMTPException as exc:  # recorded by the post_send receiver anyway
            messages.error(request, f"Not sent: {exc}")
        else:
            messages.success(request, "Message handed to the SMTP server.")
        return redirect("sent")
    return render(request, "mailroom/compose.html", {"form": form})


def sent(request: HttpRequest) -> HttpResponse:
    records = RecipientRecord.objects.select_related("message").order_by("-message__created", "id")
    return render(request, "mailroom/sent.html", {"records": records})
