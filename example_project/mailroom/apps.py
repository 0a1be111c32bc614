from django.apps import AppConfig


class MailroomConfig(AppConfig):
    name = "mailroom"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django_amsdal_mail.signals import post_send

        from .receivers import record_status

        post_send.connect(record_status, dispatch_uid="mailroom.record_status")
