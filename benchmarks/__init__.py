"""Benchmarks: amsdal_mail against its peers, over loopback SMTP (``make bench``).

Run ``python -m benchmarks --help`` for the options. Nothing here is imported
by the library or the tests; the results land in ``docs/benchmarks.md`` and
``docs/benchmarks.png``.
"""
