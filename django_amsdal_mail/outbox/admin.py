"""The outbox in Django's admin: watch the queue, "Retry now", "Cancel".

Messages are listed with their state and per-status recipient counts
(correlated subqueries in one query, whatever the page size), filtered by
state and by recipient status, searched by recipient address, subject,
sender and Message-ID; a message's page shows its recipients inline and the
stored message, all read-only: what was enqueued is what every attempt
sends, so nothing of it can be edited, and there is no "add" either (the
outbox is filled by ``enqueue`` and ``OutboxBackend``). Deleting is left to
``manage.py amsdal_outbox prune``, which never deletes a queued or
sending message.

The two actions need the change permission on outbox messages and follow
:mod:`django_amsdal_mail.outbox.operations` (a message being sent is left
alone and the admin user is told so).
"""

from __future__ import annotations

from typing import Any, Final

from django.contrib import admin, messages
from django.db.models import Count, Exists, IntegerField, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join

from . import operations, storage
from .models import OutboxMessage, OutboxRecipient

__all__ = ["OutboxMessageAdmin", "OutboxRecipientInline", "RecipientStatusFilter"]

_Status = OutboxRecipient.Status
#: The order statuses are shown in the list's recipient column.
_SHOWN: Final = ("sent", "queued", "failed", "unknown", "rejected", "invalid")
#: How much of a stored body the message page shows.
_BODY_LIMIT: Final = 20_000


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _recipient_count(status: str | None = None) -> Coalesce:
    """Return a correlated count of the message's recipients (of ``status``, if given)."""
    rows = OutboxRecipient.objects.filter(message=OuterRef("pk"))
    if status is not None:
        rows = rows.filter(status=status)
    counted = rows.order_by().values("message").annotate(n=Count("pk")).values("n")
    return Coalesce(Subquery(counted, output_field=IntegerField()), 0)


class RecipientStatusFilter(admin.SimpleListFilter):
    """Messages with at least one recipient of the chosen status."""

    title = "recipient status"
    parameter_name = "recipient_status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        """Return every recipient status."""
        return [(value, str(label)) for value, label in _Status.choices]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[OutboxMessage]
    ) -> QuerySet[OutboxMessage]:
        """Keep the messages with a recipient of the chosen status (an EXISTS: no duplicates)."""
        value = self.value()
        if value is None:
            return queryset
        return queryset.filter(
            Exists(OutboxRecipient.objects.filter(message=OuterRef("pk"), status=value))
        )


class RecipientDeliveryFilter(admin.SimpleListFilter):
    """Messages with at least one recipient whose last delivery report says the chosen word."""

    title = "recipient delivery"
    parameter_name = "recipient_delivery"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        """Return every delivery word, and "no report"."""
        return [(value or "none", str(label)) for value, label in OutboxRecipient.Delivery.choices]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[OutboxMessage]
    ) -> QuerySet[OutboxMessage]:
        """Keep the messages with a recipient of the chosen delivery (an EXISTS: no duplicates)."""
        value = self.value()
        if value is None:
            return queryset
        word = "" if value == "none" else value
        return queryset.filter(
            Exists(OutboxRecipient.objects.filter(message=OuterRef("pk"), delivery=word))
        )


class OutboxRecipientInline(admin.TabularInline):  # type: ignore[type-arg]
    """The message's recipients and what happened to each, read-only."""

    model = OutboxRecipient
    extra = 0
    can_delete = False
    fields = (
        "address",
        "kind",
        "status",
        "code",
        "response",
        "attempts",
        "next_attempt_at",
        "updated_at",
        "delivery",
        "delivery_status",
        "delivery_diagnostic",
        "delivery_at",
    )
    readonly_fields = fields
    ordering = ("position",)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Recipients come with the message: none can be added."""
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """A recipient's record is the outbox's: never edited by hand."""
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """A recipient is not removed from a stored message."""
        return False


@admin.register(OutboxMessage)
class OutboxMessageAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Outbox messages: state, recipient counts, filters, search, "Retry now" and "Cancel"."""

    list_display = (
        "subject_or_placeholder",
        "from_email",
        "state",
        "recipient_counts",
        "attempts",
        "next_attempt_at",
        "created_at",
    )
    list_filter = ("state", RecipientStatusFilter, RecipientDeliveryFilter)
    search_fields = ("recipients__address", "subject", "from_email", "message_id")
    ordering = ("-created_at",)
    inlines = (OutboxRecipientInline,)
    actions = ("retry_now", "cancel_messages")
    fieldsets = (
        (
            None,
            {"fields": ("subject", "from_email", "message_id", "state", "mailer", "priority")},
        ),
        (
            "Attempts",
            {
                "fields": (
                    "attempts",
                    "first_attempt_at",
                    "next_attempt_at",
                    "last_error",
                    "lease_until",
                    "claimed_by",
                    "created_at",
                    "updated_at",
                )
            },
        ),
        ("Stored message", {"fields": ("stored_message",)}),
    )
    readonly_fields = ("stored_message",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[OutboxMessage]:
        """Return the messages with their recipient counts per status, annotated."""
        counts = {f"n_{status}": _recipient_count(status) for status in _SHOWN}
        rows: QuerySet[OutboxMessage] = super().get_queryset(request)
        return rows.annotate(n_total=_recipient_count(), **counts)

    # -- permissions: a view of the queue, operated only through the actions ---------

    def has_add_permission(self, request: HttpRequest) -> bool:
        """Messages are added by ``enqueue`` and ``OutboxBackend``, not by hand."""
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """The stored message is what every attempt sends: the page is read-only."""
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Deleting is ``manage.py amsdal_outbox prune``'s (never a queued or sending one)."""
        return False

    def has_operate_permission(self, request: HttpRequest) -> bool:
        """Return whether the user may retry and cancel: the change permission on messages."""
        opts = self.opts
        return request.user.has_perm(f"{opts.app_label}.change_{opts.model_name}")

    # -- columns -----------------------------------------------------------------------

    @admin.display(description="subject", ordering="subject")
    def subject_or_placeholder(self, obj: OutboxMessage) -> str:
        """Return the subject, or a placeholder for a message without one."""
        return obj.subject or "(no subject)"

    @admin.display(description="recipients", ordering="n_total")
    def recipient_counts(self, obj: OutboxMessage) -> str:
        """Return the total and the non-zero counts per status: ``3: 2 sent, 1 failed``."""
        parts = [f"{getattr(obj, f'n_{s}')} {s}" for s in _SHOWN if getattr(obj, f"n_{s}", 0)]
        return f"{getattr(obj, 'n_total', 0)}: {', '.join(parts)}" if parts else "0"

    @admin.display(description="stored message")
    def stored_message(self, obj: OutboxMessage) -> str:
        """Return the stored message as read-only HTML: envelope, headers, body, attachments."""
        try:
            message = storage.loads(obj.payload)
        except (ValueError, KeyError, TypeError) as error:
            return format_html("<p>The stored message cannot be read: {}</p>", error)
        header_rows = [
            ("From", message.from_email or ""),
            ("To", ", ".join(message.to)),
            ("Cc", ", ".join(message.cc)),
            ("Bcc", ", ".join(message.bcc)),
            ("Reply-To", ", ".join(message.reply_to)),
            *((name, value) for name, value in message.headers.items()),
        ]
        headers = format_html_join(
            "\n", "<tr><th>{}</th><td>{}</td></tr>", ((n, v) for n, v in header_rows if v)
        )
        body = message.body or ""
        if len(body) > _BODY_LIMIT:
            body = body[:_BODY_LIMIT] + f"\n[... {len(message.body) - _BODY_LIMIT} more characters]"
        parts = [
            (getattr(part, "filename", None) or "(inline part)", _part_summary(part))
            for part in message.attachments
        ]
        parts.extend((alt.mimetype, "alternative") for alt in message.alternatives)
        if message.html_body is not None:
            parts.append(("text/html", f"HTML body, {len(message.html_body)} characters"))
        listed = format_html_join("\n", "<li>{}: {}</li>", parts)
        return format_html(
            "<table>{}</table><pre style='white-space: pre-wrap'>{}</pre><ul>{}</ul>",
            headers,
            body,
            listed,
        )

    # -- actions -------------------------------------------------------------------------

    @admin.action(
        description="Retry now: failed and unknown recipients back to queued",
        permissions=["operate"],
    )
    def retry_now(self, request: HttpRequest, queryset: QuerySet[OutboxMessage]) -> None:
        """Put the failed and unknown recipients of the selection back to queued, due now."""
        result = operations.retry(queryset)
        level = messages.SUCCESS if result.recipients else messages.WARNING
        self.message_user(
            request,
            f"Retry now: {_plural(result.recipients, 'recipient')} of "
            f"{_plural(result.messages, 'message')} back to queued, due now.",
            level,
        )
        if result.busy:
            self.message_user(
                request,
                f"{_plural(result.busy, 'message')} being sent left alone; retry once the "
                "attempt has ended.",
                messages.WARNING,
            )
        if result.cancelled:
            self.message_user(
                request,
                f"{_plural(result.cancelled, 'cancelled message')} not retried.",
                messages.WARNING,
            )

    @admin.action(description="Cancel: send nothing more", permissions=["operate"])
    def cancel_messages(self, request: HttpRequest, queryset: QuerySet[OutboxMessage]) -> None:
        """Cancel the queued messages of the selection; recipients already sent stay sent."""
        result = operations.cancel(queryset)
        level = messages.SUCCESS if result.messages else messages.WARNING
        self.message_user(
            request,
            f"Cancelled {_plural(result.messages, 'message')} "
            f"({_plural(result.recipients, 'recipient')} stopped).",
            level,
        )
        if result.busy:
            self.message_user(
                request,
                f"{_plural(result.busy, 'message')} being sent left alone; cancel once the "
                "attempt has ended.",
                messages.WARNING,
            )
        if result.finished:
            self.message_user(
                request,
                f"{_plural(result.finished, 'message')} already done or cancelled.",
                messages.INFO,
            )


def _part_summary(part: Any) -> str:
    """Return an attachment's type and size (a raw MIME part: its size)."""
    content = getattr(part, "content", None)
    if content is None:
        return f"MIME part, {len(getattr(part, 'data', b''))} bytes"
    size = len(content.encode() if isinstance(content, str) else content)
    return f"{getattr(part, 'mimetype', '') or 'attachment'}, {size} bytes"
