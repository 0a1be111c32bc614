"""What the mailroom remembers: each message sent and the fate of each recipient.

A message sent inline gets one :class:`SentMessage` per send. A message sent
through the outbox gets one per outbox message (``outbox_id``), with a record
per recipient and attempt of the worker (``attempt`` counts from 1).
"""

from django.db import models


class SentMessage(models.Model):
    subject = models.CharField(max_length=998)
    from_email = models.CharField(max_length=320)
    created = models.DateTimeField(auto_now_add=True)
    outbox_id = models.UUIDField(null=True, blank=True, unique=True)

    class Meta:
        ordering = ["-created", "-id"]

    def __str__(self) -> str:
        return self.subject


class RecipientRecord(models.Model):
    message = models.ForeignKey(SentMessage, on_delete=models.CASCADE, related_name="recipients")
    address = models.CharField(max_length=320)
    status = models.CharField(max_length=16)
    code = models.PositiveSmallIntegerField(null=True, blank=True)
    response = models.TextField(blank=True)
    attempt = models.PositiveSmallIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["message", "id"]

    def __str__(self) -> str:
        return f"{self.address}: {self.status}"
