"""Delivery reports for the tests: RFC 3464 reports as Postfix writes them, and others."""

from __future__ import annotations

from collections.abc import Sequence

POSTFIX_BOUNCE = b"""\
Return-Path: <>
Delivered-To: bounces@returns.test
Date: Tue,  3 Jun 2025 10:15:02 +0000 (UTC)
From: MAILER-DAEMON@postfix.test (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: bounces@returns.test
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="1A2B3C.1717409702/postfix.test"
Message-Id: <20250603101502.1A2B3C@postfix.test>

This is a MIME-encapsulated message.

--1A2B3C.1717409702/postfix.test
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients.

--1A2B3C.1717409702/postfix.test
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; postfix.test
X-Postfix-Queue-ID: 1A2B3C
X-Postfix-Sender: rfc822; bounces@returns.test
Original-Envelope-Id: <orig.1@app.test>
Arrival-Date: Tue,  3 Jun 2025 10:15:01 +0000 (UTC)

Final-Recipient: rfc822; nobody@mail.test
Original-Recipient: rfc822;nobody@mail.test
Action: failed
Status: 5.1.1
Remote-MTA: dns; mx.mail.test
Diagnostic-Code: smtp; 550 5.1.1 <nobody@mail.test>: Recipient address
    rejected: User unknown in virtual mailbox table

Final-Recipient: rfc822; slow@mail.test
Original-Recipient: rfc822;Slow@Mail.test
Action: delayed
Status: 4.4.1
Diagnostic-Code: X-Postfix; connect to mx.mail.test: Connection refused
Last-Attempt-Date: Tue,  3 Jun 2025 10:20:00 +0000 (UTC)

--1A2B3C.1717409702/postfix.test
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

Return-Path: <bounces@returns.test>
From: app@app.test
To: nobody@mail.test, slow@mail.test
Subject: hello
Message-ID: <orig.1@app.test>

--1A2B3C.1717409702/postfix.test--
""".replace(b"\n", b"\r\n")


def report(
    recipients: Sequence[dict[str, str]],
    *,
    envid: str | None = None,
    returned: str | None = None,
    returned_type: str = "message/rfc822",
    per_message: str = "Reporting-MTA: dns; mx.test\n",
    to: str = "bounces@returns.test",
) -> bytes:
    """Return an RFC 3464 report: one block per dict of fields, the returned part if given."""
    blocks = [per_message + (f"Original-Envelope-Id: {envid}\n" if envid else "")]
    for fields in recipients:
        blocks.append("".join(f"{name}: {value}\n" for name, value in fields.items()))
    parts = [
        "Content-Type: text/plain\n\nA report.\n",
        "Content-Type: message/delivery-status\n\n" + "\n".join(blocks),
    ]
    if returned is not None:
        parts.append(f"Content-Type: {returned_type}\n\n{returned}")
    body = "".join(f"--b0undary\n{part}\n" for part in parts) + "--b0undary--\n"
    head = (
        f"From: MAILER-DAEMON@mx.test\nTo: {to}\nSubject: report\n"
        "Date: Wed, 04 Jun 2025 08:00:00 +0000\nMIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b0undary"\n\n'
    )
    return (head + body).replace("\n", "\r\n").encode("utf-8")


# A qmail bounce: no RFC 3464 part, only text (flufl.bounce's Qmail detector knows it).
QMAIL_BOUNCE = b"""\
Return-Path: <>
Date: 4 Jun 2025 08:00:00 -0000
From: MAILER-DAEMON@qmail.test
To: bounces@returns.test
Subject: failure notice

Hi. This is the qmail-send program at qmail.test.
I'm afraid I wasn't able to deliver your message to the following addresses.
This is a permanent error; I've given up. Sorry it didn't work out.

<gone@qmail.test>:
Sorry, no mailbox here by that name. (#5.1.1)

--- Below this line is a copy of the message.

Return-Path: <bounces@returns.test>
Message-ID: <orig.2@app.test>
Subject: hello

hello
""".replace(b"\n", b"\r\n")

PLAIN_MESSAGE = b"""\
From: alice@example.org
To: bounces@returns.test
Subject: Re: your newsletter
Message-ID: <reply.1@example.org>

Thanks, I will read it later. The following addresses had permanent fatal errors? No.
""".replace(b"\n", b"\r\n")
