"""Tests of the test support shipped for users' projects (amsdal_mail.testing, the plugin)."""
