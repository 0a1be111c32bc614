"""Django app: a drop-in EMAIL_BACKEND for amsdal_mail (imports no Django here)."""
