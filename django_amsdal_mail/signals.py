"""Signals sent by :class:`django_amsdal_mail.backend.EmailBackend` around each message.

Connect receivers as with any Django signal::

    from django.dispatch import receiver
    from django_amsdal_mail.signals import post_send

    @receiver(post_send)
    def record_status(sender, message, status, **kwargs):
        for address, recipient in status.recipients.items():
            ...

Both signals are sent with ``sender`` set to the backend class, and with
``Signal.asend()`` from ``EmailBackend.asend_messages()`` (so synchronous
receivers may use the ORM from async code).
"""

from __future__ import annotations

from django.dispatch import Signal

__all__ = ["delivery", "outbox_finished", "post_send", "pre_send"]

#: Sent before each message is converted and sent.
#:
#: Arguments:
#:
#: ``sender``
#:     The backend class (``EmailBackend`` or a subclass).
#: ``message``
#:     The Django ``EmailMessage`` about to be sent. A receiver may change it
#:     (recipients, headers, body, attachments...); the changed message is sent.
#: ``backend``
#:     The backend instance sending it.
#:
#: A receiver that raises :class:`django_amsdal_mail.CancelSend` cancels this
#: message: it is not sent, not counted, and ``post_send`` is not sent for it.
#: Any other exception propagates to the caller and nothing more is sent.
pre_send = Signal()

#: Sent after each message, whether it was sent or failed, before any
#: exception about it propagates.
#:
#: Arguments:
#:
#: ``sender``
#:     The backend class (``EmailBackend`` or a subclass).
#: ``message``
#:     The Django ``EmailMessage``; its ``amsdal_status`` attribute holds the
#:     same status.
#: ``status``
#:     That message's own :class:`amsdal_mail.SendStatus`: one
#:     :class:`amsdal_mail.RecipientStatus` per recipient address (``sent``,
#:     ``rejected``, ``failed``, ``invalid`` or ``unknown``, with the server's
#:     code and reply).
#: ``backend``
#:     The backend instance that sent it.
post_send = Signal()

#: Sent by the outbox worker (:mod:`django_amsdal_mail.outbox.worker`) when
#: every recipient of an outbox message is final (``sent``, ``rejected``,
#: ``invalid``, or ``failed`` / ``unknown`` for good).
#:
#: Arguments:
#:
#: ``sender``
#:     The :class:`~django_amsdal_mail.outbox.models.OutboxMessage` class.
#: ``outbox_message``
#:     The outbox message, now ``done``.
#: ``status``
#:     A :class:`amsdal_mail.SendStatus` with every recipient's final status.
#:
#: In the worker, :data:`post_send` is also sent after each attempt, with
#: ``sender`` the sending backend's class, ``message`` a Django message rebuilt
#: from the stored fields (for reading), ``status`` that attempt's statuses
#: (only the recipients it sent to), ``backend``, and two more arguments:
#: ``outbox_message`` and ``attempt`` (the message's attempt number, from 1).
outbox_finished = Signal()

#: Sent by :func:`django_amsdal_mail.tracking.record_event` for each delivery
#: event read from a delivery report (``manage.py amsdal_bounces``).
#:
#: Arguments:
#:
#: ``sender``
#:     The :class:`amsdal_mail.tracking.DeliveryEvent` class.
#: ``event``
#:     The :class:`~amsdal_mail.tracking.DeliveryEvent`: ``event`` (``delivered``,
#:     ``bounced``, ``delayed``, ``relayed``, ``expanded``), ``recipient``,
#:     ``status``, ``diagnostic``, ``envid``, ``message_id``, ``reported_at``...
#: ``outbox_recipient``
#:     The :class:`~django_amsdal_mail.outbox.models.OutboxRecipient` the report
#:     is about (its ``delivery`` already updated), or None: the outbox is not
#:     installed, or the report names no message and recipient it holds.
delivery = Signal()
