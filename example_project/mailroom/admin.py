from django.contrib import admin

from .models import RecipientRecord, SentMessage


class RecipientRecordInline(admin.TabularInline):
    model = RecipientRecord
    extra = 0
    readonly_fields = ["address", "status", "code", "response", "attempt"]


@admin.register(SentMessage)
class SentMessageAdmin(admin.ModelAdmin):
    list_display = ["subject", "from_email", "created"]
    inlines = [RecipientRecordInline]


@admin.register(RecipientRecord)
class RecipientRecordAdmin(admin.ModelAdmin):
    list_display = ["address", "status", "code", "attempt", "response", "message"]
    list_filter = ["status"]
