"""Live tests: the outbox with real worker processes, a real shared database, real SMTP.

The harness (each module documents itself):

* :mod:`.postgres` -- ``postgres_cluster``, a session fixture (also in this
  package's conftest): a throwaway PostgreSQL cluster on 127.0.0.1 and a free
  port, stopped by PID; ``create_database(name)`` returns a ``DATABASES`` entry.
  Skips with the reason only when PostgreSQL is not installed (fails under
  ``CI=true``).
* :mod:`.database` -- one database for the test process and the workers:
  ``sqlite_database(path)`` (WAL, IMMEDIATE transactions) or
  ``postgres_database(entry)``; ``migrate(db)`` in a subprocess;
  ``activated(db)`` adds the alias and a router sending the outbox's and
  django-tasks-db's models there, in this process only; ``empty(alias)``.
* :mod:`.settings` -- the workers' ``DJANGO_SETTINGS_MODULE``: the suite's
  settings with the JSON object of ``OUTBOX_LIVE_SETTINGS`` over them
  (``database.worker_environment(overrides)`` builds that environment).
* :mod:`.recorder` -- an app in the workers that appends each ``post_send`` /
  ``outbox_finished`` as a JSON line to ``OUTBOX_LIVE_RECORD``; ``read_records``.
* :mod:`.db_workers` -- ``start_db_workers(n, overrides, log_dir)`` starts
  django-tasks-db ``db_worker`` processes and waits until they are ready;
  ``DbWorker.stop()`` / ``kill()`` by PID.
* The SMTP servers run in the test process: :class:`tests.faulty_smtpd.FaultyServer`
  (``hold_after_data`` keeps a reply back until the client is gone; ``port=``
  to come up on a port the workers already use).
"""
