"""The embedded SMTP server: the same recording aiosmtpd server the tests use."""

from tests.smtpd import ReceivedMessage, RecordingServer

__all__ = ["ReceivedMessage", "RecordingServer"]
