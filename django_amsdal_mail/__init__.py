"""Django app: a drop-in ``EMAIL_BACKEND`` that sends through amsdal_mail.

This module imports no Django, so listing ``django_amsdal_mail`` in
``INSTALLED_APPS`` never trips on app-registry order. The public names live in
``django_amsdal_mail.backend`` (``EmailBackend``), ``django_amsdal_mail.signals``
(``pre_send``, ``post_send``), ``django_amsdal_mail.mail`` (``asend_mail``,
``asend_mass_mail``) and ``django_amsdal_mail.checks``.
"""

from .exceptions import CancelSend

__all__ = ["CancelSend"]
