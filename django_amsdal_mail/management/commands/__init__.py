"""``manage.py amsdal_mailcheck``."""
