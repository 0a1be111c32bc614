"""``python -m amsdal_mail``: the ``amsdal-mail`` command line (see :mod:`amsdal_mail.cli`)."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
