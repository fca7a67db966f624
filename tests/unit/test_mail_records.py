"""E-mail messages as records (sources/mail.py): identity, dates, bodies, attachment names."""

from __future__ import annotations

from email.message import EmailMessage

from b2b_integrations.sources.mail import attachment_file_name, message_key, parse_message


def raw_mail(**headers: str) -> EmailMessage:
    message = EmailMessage()
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    return message


def test_identity_is_the_message_id_else_the_content_hash() -> None:
    assert message_key(" <po-1@partner.example> ", b"x") == "po-1@partner.example"
    assert message_key(None, b"same bytes") == message_key("", b"same bytes")
    assert message_key(None, b"same bytes").startswith("sha256:")
    assert message_key(None, b"same bytes") != message_key(None, b"other bytes")
    # Ids Python's strict header parser would cut short ("<a,b@x>" -> "<a") stay whole, and distinct.
    ids = [parse_message(f"Message-ID: <run 1,-{i}@x>\r\n\r\nbody".encode()).message_id for i in (1, 2)]
    assert ids == ["run 1,-1@x", "run 1,-2@x"]


def test_record_fields_dates_in_utc_and_html_only_bodies() -> None:
    message = raw_mail(
        From='"Orders, Partner" <orders@partner.example>',
        To="a@us.example, B <b@us.example>",
        Subject="=?utf-8?q?Gr=C3=B6=C3=9Fe_M?=",
        Date="Tue, 01 Dec 2026 10:00:00 +0100",
        Message_ID="<m1@partner.example>",
    )
    message.set_content("<p>Hallo</p>", subtype="html")
    record = parse_message(bytes(message)).record
    assert record == {
        "message_id": "m1@partner.example",
        "sender": "orders@partner.example",
        "recipients": "a@us.example, b@us.example",
        "cc": "",
        "subject": "Größe M",
        "sent_at": "2026-12-01T09:00:00+00:00",
        "body": "<p>Hallo</p>\n",
        "attachment_names": "",
    }
    assert parse_message(b"Subject: no date\r\n\r\nx").record["sent_at"] is None
    assert parse_message(b"Date: not a date\r\n\r\nx").record["sent_at"] is None


def test_attachments_are_filtered_by_pattern_and_a_lying_charset_does_not_stop_the_message() -> None:
    message = raw_mail(Message_ID="<m2@x>")
    message.set_content("see attached")
    message.add_attachment(b"a;b\n1;2\n", maintype="text", subtype="csv", filename="Orders.CSV")
    message.add_attachment(b"\x89PNG", maintype="image", subtype="png", filename="logo.png")
    parsed = parse_message(bytes(message), "*.csv")
    assert [(a.name, a.data) for a in parsed.attachments] == [("Orders.CSV", b"a;b\n1;2\n")]
    assert parsed.record["attachment_names"] == "Orders.CSV"

    lying = b'Content-Type: text/plain; charset="x-unknown"\r\nMessage-ID: <m3@x>\r\n\r\nsch\xf6n'
    assert parse_message(lying).record["body"] == "sch\ufffdn"


def test_attachment_file_names_never_leave_their_folder() -> None:
    assert attachment_file_name(0, "../../etc/passwd") == "000-etc_passwd"
    assert attachment_file_name(3, "Bestellung März.csv") == "003-Bestellung_M_rz.csv"
    assert attachment_file_name(1, "..") == "001-attachment"
    assert len(attachment_file_name(2, "x" * 500)) == 4 + 100
