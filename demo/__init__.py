"""The demo: real messages through amsdal_mail to an embedded SMTP server on loopback."""
