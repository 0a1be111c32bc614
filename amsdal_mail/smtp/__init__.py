"""SMTP as layers: pure steps written once, and two thin drivers that do the I/O.

- :mod:`.transaction`: one message's envelope and its MAIL/RCPT/DATA
  transactions (pipelined or lock-step, 452 splits, replies to status);
- :mod:`.flow`: connect, transact and retry what is temporary
  (:func:`~.flow.send_flow`, :func:`~.flow.connect_flow`, :class:`~.flow.RetryPolicy`);
- :mod:`.batch`: several messages in flight on one connection, what to write and
  read when (:func:`~.batch.schedule`);
- :mod:`.wire`: the reply parser fed bytes, with every limit, and the write planner;
- :mod:`.handshake`: STARTTLS and AUTH requirements, mechanism choice;
- :mod:`.errors`: exception-class tables that map library errors to amsdal_mail's;
- :mod:`.driver`: the action-runner core both drivers share;
- :mod:`.sync` (smtplib) and :mod:`.aio` (aiosmtplib, optional): connect, move bytes, wrap TLS.
"""
