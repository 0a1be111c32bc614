"""The "celery" engine without a broker: the task's declaration, priorities, the checks.

What a real broker and real ``celery worker`` processes do with it is in
``tests/outbox/live/test_celery_workers.py``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery
from django.core.exceptions import ImproperlyConfigured

from django_amsdal_mail.outbox.checks import E_CELERY_MISSING, check_outbox_settings
from django_amsdal_mail.outbox.conf import outbox_settings
from django_amsdal_mail.outbox.engines import celery_priority, engine


@pytest.fixture
def current_celery_app() -> Iterator[Celery]:
    """A Celery app made current for the test (in-memory broker: nothing is published)."""
    from celery import _state

    previous = _state.get_current_app()
    app = Celery("outbox-unit-tests", broker="memory://", set_as_current=True)
    app.set_current()
    try:
        yield app
    finally:
        previous.set_current()


def test_the_task_is_named_by_design_acks_late_and_is_rejected_on_worker_loss(
    current_celery_app: Celery,
) -> None:
    """The project's app gets the shared task; it is acked late, requeued if its worker is lost."""
    from django_amsdal_mail.outbox.celery_tasks import TASK_NAME, deliver

    task = current_celery_app.tasks["django_amsdal_mail.outbox.deliver"]
    assert TASK_NAME == task.name == "django_amsdal_mail.outbox.deliver"
    assert deliver.name == task.name and deliver.app is current_celery_app
    assert task.acks_late is True
    assert task.reject_on_worker_lost is True
    assert task.ignore_result is True  # the database row is the result
    assert task.max_retries == 0 and not getattr(task, "autoretry_for", ())  # the outbox retries


@pytest.mark.parametrize(
    ("priority", "redis", "amqp"),
    [(0, 9, 0), (5, 4, 5), (9, 0, 9), (42, 0, 9), (-3, 9, 0)],
)
def test_a_higher_outbox_priority_is_sooner_on_each_broker(
    priority: int, redis: int, amqp: int
) -> None:
    """Redis reads Celery's priority 0 first, RabbitMQ 9: the number is turned for Redis."""
    assert celery_priority(priority, "redis") == redis
    assert celery_priority(priority, "amqp") == amqp


def test_celery_installed_passes_the_checks(settings: Any) -> None:
    """ENGINE 'celery' with Celery installed: no check message, the engine is there."""
    settings.AMSDAL_EMAIL_OUTBOX = {"ENGINE": "celery"}
    assert check_outbox_settings() == []
    assert callable(engine(outbox_settings()))


def test_celery_missing_is_a_check_error_naming_the_package(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENGINE 'celery' without the package: an error at check time, and enqueue() refuses.

    Celery cannot be uninstalled from the test environment, so its absence is
    made the way Python itself reports it: ``sys.modules["celery"] = None``
    makes ``import celery`` fail and ``find_spec`` find nothing.
    """
    monkeypatch.setitem(sys.modules, "celery", None)
    settings.AMSDAL_EMAIL_OUTBOX = {"ENGINE": "celery"}
    (error,) = check_outbox_settings()
    assert error.id == E_CELERY_MISSING == "amsdal_mail.outbox.E010"
    assert "celery package is not installed" in error.msg
    assert 'pip install "celery[redis]"' in (error.hint or "")
    with pytest.raises(ImproperlyConfigured, match="the celery package is not installed"):
        engine(outbox_settings())
