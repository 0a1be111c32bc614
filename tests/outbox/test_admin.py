"""The outbox admin through Django's test client, as a superuser, against the real admin site.

Messages get their statuses from real attempts against a real SMTP server;
"Retry now" delivers with the immediate engine (on commit, in the request).
"""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.contrib.messages import get_messages
from django.core.mail import EmailMessage
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from django_amsdal_mail.outbox import enqueue
from django_amsdal_mail.outbox.models import OutboxMessage, OutboxRecipient
from django_amsdal_mail.outbox.operations import CANCELLED_RESPONSE
from django_amsdal_mail.outbox.worker import claim, deliver
from tests.smtpd import RecordingServer, ServerFactory

from .conftest import T0, at

pytestmark = pytest.mark.django_db(transaction=True)

A, B, C = "ann@example.com", "bob@example.com", "carl@example.com"
LIST = "admin:amsdal_outbox_outboxmessage_changelist"


def queue(
    to: list[str], subject: str = "Hello", body: str = "Body", sender: str = "from@example.com"
) -> OutboxMessage:
    """Enqueue a message due at T0 (in the future: the immediate engine leaves it)."""
    (row,) = enqueue(EmailMessage(subject, body, sender, to), run_after=T0)
    return row


def statuses(row: OutboxMessage) -> dict[str, tuple[str, int]]:
    return {r.address: (r.status, r.attempts) for r in row.recipients.all()}


def listed(client: Client, **params: str) -> dict[str, Any]:
    """Return the change list's rows as {subject: row} for the query ``params``."""
    response = client.get(reverse(LIST), params)
    assert response.status_code == 200
    return {row.subject: row for row in response.context["cl"].result_list}


def act(client: Client, action: str, rows: list[OutboxMessage]) -> list[tuple[str, str]]:
    """Run an admin action on ``rows``; return the messages shown to the user (level, text)."""
    response = client.post(
        reverse(LIST),
        {"action": action, "_selected_action": [str(r.pk) for r in rows]},
        follow=True,
    )
    assert response.status_code == 200
    return [(m.level_tag, m.message) for m in get_messages(response.wsgi_request)]


@pytest.fixture
def server(smtp_server: ServerFactory, outbox: Any) -> RecordingServer:
    """A real SMTP server the outbox sends to: B gets 450, C gets 550."""
    started = smtp_server(rcpt_replies={B: "450 4.2.0 Busy", C: "550 5.1.1 No such user"})
    outbox(started.host, started.port)
    return started


def test_the_list_shows_state_and_counts_per_status(
    admin_client: Client, server: RecordingServer
) -> None:
    """Each row: its state and its recipients' counts per status, as the columns show them."""
    tried = queue([A, B, C], subject="tried")
    deliver(tried.pk, now=T0)
    queue([A, B], subject="waiting")
    rows = listed(admin_client)
    assert rows["tried"].state == "queued"
    assert (rows["tried"].n_total, rows["tried"].n_sent, rows["tried"].n_failed) == (3, 1, 1)
    assert (rows["tried"].n_rejected, rows["waiting"].n_queued) == (1, 2)
    page = admin_client.get(reverse(LIST)).content.decode()
    assert "3: 1 sent, 1 failed, 1 rejected" in page and "2: 2 queued" in page


def test_the_list_costs_the_same_queries_for_2_or_12_messages(
    admin_client: Client, server: RecordingServer
) -> None:
    """The counts are annotated: no query per row (no N+1)."""

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert admin_client.get(reverse(LIST)).status_code == 200
        return len(captured)

    for n in range(2):
        deliver(queue([A, B, C], subject=f"m{n}").pk, now=T0)
    few = queries()
    for n in range(2, 12):
        deliver(queue([A, B, C], subject=f"m{n}").pk, now=T0)
    assert len(listed(admin_client)) == 12
    assert queries() == few


def test_filters_by_state_and_by_recipient_status(
    admin_client: Client, server: RecordingServer
) -> None:
    """state=done; recipient_status=rejected keeps messages with such a recipient, once each."""
    rejected = queue([C, B], subject="rejected")
    deliver(rejected.pk, now=T0)  # C rejected, B failed: queued for a retry
    done = queue([A], subject="done")
    deliver(done.pk, now=T0)
    queue([A], subject="waiting")
    assert set(listed(admin_client, state="done")) == {"done"}
    assert set(listed(admin_client, state="queued")) == {"rejected", "waiting"}
    assert set(listed(admin_client, recipient_status="failed")) == {"rejected"}
    assert set(listed(admin_client, recipient_status="sent")) == {"done"}
    assert set(listed(admin_client, recipient_status="queued")) == {"waiting"}
    both = listed(admin_client, recipient_status="rejected", state="queued")
    assert set(both) == {"rejected"} and both["rejected"].n_total == 2


def test_search_by_recipient_subject_and_message_id(
    admin_client: Client, server: RecordingServer
) -> None:
    """A recipient search matching three recipients shows the message once, counts intact."""
    three = queue([A, B, C], subject="Invoice 42")
    queue(["dora@elsewhere.test"], subject="Newsletter", sender="news@elsewhere.test")
    found = listed(admin_client, q="example.com")
    assert set(found) == {"Invoice 42"} and found["Invoice 42"].n_total == 3
    assert set(listed(admin_client, q="dora@")) == {"Newsletter"}
    assert set(listed(admin_client, q="invoice")) == {"Invoice 42"}
    assert set(listed(admin_client, q=three.message_id)) == {"Invoice 42"}
    assert listed(admin_client, q="nobody-here") == {}


def test_the_message_page_is_read_only_with_recipients_inline(
    admin_client: Client, server: RecordingServer
) -> None:
    """The stored message and each recipient's fate are shown; nothing can be edited or saved."""
    row = queue([A, B], subject="Read me", body="The <stored> body")
    deliver(row.pk, now=T0)
    url = reverse("admin:amsdal_outbox_outboxmessage_change", args=[row.pk])
    response = admin_client.get(url)
    assert response.status_code == 200
    page = response.content.decode()
    assert "The &lt;stored&gt; body" in page and row.message_id.strip("<>") in page
    assert "4.2.0 Busy" in page and A in page
    assert 'name="subject"' not in page and 'name="_save"' not in page
    assert 'name="recipients-0-address"' not in page and 'name="recipients-0-DELETE"' not in page
    formset = response.context["inline_admin_formsets"][0]
    assert not formset.has_add_permission and not formset.has_change_permission

    payload = row.payload
    posted = admin_client.post(url, {"subject": "changed", "payload": "{}"})
    assert posted.status_code == 403
    row.refresh_from_db()
    assert (row.subject, row.payload) == ("Read me", payload)


def test_no_message_can_be_added_or_deleted_in_the_admin(
    admin_client: Client, server: RecordingServer
) -> None:
    """Messages come from enqueue; deleting is prune's: add and delete are refused."""
    row = queue([A])
    assert admin_client.get(reverse("admin:amsdal_outbox_outboxmessage_add")).status_code == 403
    delete = reverse("admin:amsdal_outbox_outboxmessage_delete", args=[row.pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    actions = admin_client.get(reverse(LIST)).context["action_form"].fields["action"].choices
    assert [name for name, _ in actions] == ["", "retry_now", "cancel_messages"]
    assert OutboxMessage.objects.filter(pk=row.pk).exists()


def test_retry_now_delivers_the_failed_recipients(
    admin_client: Client, server: RecordingServer
) -> None:
    """Retry now: B (failed) goes out again at once and ends sent; A and C are not resent."""
    row = queue([A, B, C])
    deliver(row.pk, now=T0)
    server.rcpt_replies.pop(B)
    shown = act(admin_client, "retry_now", [row])
    assert shown == [("success", "Retry now: 1 recipient of 1 message back to queued, due now.")]
    row.refresh_from_db()
    assert statuses(row) == {A: ("sent", 1), B: ("sent", 1), C: ("rejected", 1)}
    assert [m.rcpt_tos for m in server.messages] == [[A], [B]]
    assert row.state == "done"


def test_retry_now_leaves_a_message_being_sent_alone_and_says_so(
    admin_client: Client, server: RecordingServer
) -> None:
    """A claimed message is not touched; the admin user is warned; the others are retried."""
    held = queue([B], subject="held")
    other = queue([B], subject="other")
    for row in (held, other):
        deliver(row.pk, now=T0)
    assert claim(held.pk, now=at(60), token="worker-1", lease=60) is not None
    server.rcpt_replies.pop(B)
    shown = act(admin_client, "retry_now", [held, other])
    assert shown == [
        ("success", "Retry now: 1 recipient of 1 message back to queued, due now."),
        ("warning", "1 message being sent left alone; retry once the attempt has ended."),
    ]
    held.refresh_from_db()
    assert (held.state, held.claimed_by) == ("sending", "worker-1")
    assert statuses(held) == {B: ("failed", 1)} and statuses(other) == {B: ("sent", 1)}


def test_retry_now_with_nothing_to_retry_warns(
    admin_client: Client, server: RecordingServer
) -> None:
    """All recipients sent: nothing retried, nothing resent, a warning."""
    row = queue([A])
    deliver(row.pk, now=T0)
    assert act(admin_client, "retry_now", [row]) == [
        ("warning", "Retry now: 0 recipients of 0 messages back to queued, due now.")
    ]
    assert len(server.messages) == 1


def test_cancel_stops_queued_messages_and_keeps_what_was_sent(
    admin_client: Client, server: RecordingServer
) -> None:
    """Cancel: nothing more is sent; sent stays sent, failed keeps its reply, queued says why."""
    tried = queue([A, B], subject="tried")
    deliver(tried.pk, now=T0)  # A sent, B failed, due again at T0+60
    waiting = queue([A, C], subject="waiting")
    done = queue([A], subject="done")
    deliver(done.pk, now=T0)
    held = queue([A], subject="held")
    assert claim(held.pk, now=T0, token="worker-1", lease=60) is not None
    shown = act(admin_client, "cancel_messages", [tried, waiting, done, held])
    assert shown == [
        ("success", "Cancelled 2 messages (3 recipients stopped)."),
        ("warning", "1 message being sent left alone; cancel once the attempt has ended."),
        ("info", "1 message already done or cancelled."),
    ]
    for row in (tried, waiting, done, held):
        row.refresh_from_db()
    assert (tried.state, waiting.state, done.state, held.state) == (
        "cancelled",
        "cancelled",
        "done",
        "sending",
    )
    assert tried.next_attempt_at is None and waiting.next_attempt_at is None
    fates = {
        (r.message.subject, r.address): (r.status, r.code, r.response, r.next_attempt_at)
        for r in OutboxRecipient.objects.filter(message__in=[tried, waiting])
    }
    assert fates[("tried", A)][:2] == ("sent", 250)
    assert fates[("tried", B)] == ("failed", 450, "4.2.0 Busy", None)
    assert fates[("waiting", A)] == ("queued", None, CANCELLED_RESPONSE, None)
    sent_before = len(server.messages)
    assert deliver(tried.pk, now=at(10_000)) is None and deliver(waiting.pk, now=T0) is None
    assert len(server.messages) == sent_before


def test_a_view_only_staff_user_sees_the_queue_but_cannot_act(
    client: Client, server: RecordingServer
) -> None:
    """View permission: the list and pages, no actions; a posted action changes nothing."""
    user = User.objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_outboxmessage", "view_outboxrecipient"])
    )
    client.force_login(user)
    row = queue([B])
    deliver(row.pk, now=T0)
    server.rcpt_replies.pop(B)
    response = client.get(reverse(LIST))
    assert response.status_code == 200 and response.context["action_form"] is None
    client.post(reverse(LIST), {"action": "retry_now", "_selected_action": [str(row.pk)]})
    assert statuses(row) == {B: ("failed", 1)} and len(server.messages) == 0
    change = reverse("admin:amsdal_outbox_outboxmessage_change", args=[row.pk])
    assert B in client.get(change).content.decode()


def test_an_action_on_all_search_results_acts_on_exactly_those(
    admin_client: Client, server: RecordingServer
) -> None:
    """ "Select all" under a recipient search and a filter: only the matching messages change."""
    to_bob = [queue([A, B], subject=f"bob {n}") for n in range(3)]
    others = [queue([A, C], subject=f"carl {n}") for n in range(2)]
    url = reverse(LIST) + "?q=bob%40&state=queued"
    response = admin_client.post(
        url,
        {"action": "cancel_messages", "select_across": "1", "index": "0",
         "_selected_action": [str(to_bob[0].pk)]},
        follow=True,
    )  # fmt: skip
    shown = [m.message for m in get_messages(response.wsgi_request)]
    assert shown == ["Cancelled 3 messages (6 recipients stopped)."]
    states = dict(OutboxMessage.objects.values_list("subject", "state"))
    assert {states[r.subject] for r in to_bob} == {"cancelled"}
    assert {states[r.subject] for r in others} == {"queued"}
