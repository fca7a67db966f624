"""Mailbox step: messages/s read from a real Dovecot IMAP server into staged records, against a floor.

Starts a private Dovecot (tests/imap_server.py) and, per round, appends N messages (default 500) of about
2 KB text plus a 20 KB CSV attachment to INBOX, then:
- ours: the mailbox step (``MailboxOperator.run_step``, the code a task runs: the imap provider's login,
  per message a FETCH, parse, Message-ID lookup in the processed folder, the records staged as NDJSON, one
  UID MOVE of the batch), with ``emit: messages`` and with ``emit: attachments`` (files written);
- floor: plain imaplib on the same folder doing the least any reader must: SELECT, UID SEARCH, one
  ``UID FETCH BODY.PEEK[]`` per message, one UID MOVE; no parsing, nothing written.
Prints messages/s for each (best of --rounds, fresh messages every round) and ours / floor. Run:
.venv/bin/python benchmarks/mailbox.py [--messages N --rounds R]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "plugins"))

from imap_server import ImapServer, start_imap  # noqa: E402  (test support)

ATTACHMENT = (
    "sku;qty;price\n" + "".join(f"SKU-{i:05d};{i % 17};{i * 1.25:.2f}\n" for i in range(800))
).encode()


def fill(server: ImapServer, n: int, tag: str) -> None:
    with server.client() as client:
        for i in range(n):
            message = EmailMessage()
            message["From"] = "orders@partner.example"
            message["To"] = "inbox@us.example"
            message["Subject"] = f"Order {tag}-{i}"
            message["Message-ID"] = f"<{tag}-{i}@partner.example>"
            message.set_content("Order lines attached.\n" * 90)
            message.add_attachment(ATTACHMENT, maintype="text", subtype="csv", filename=f"order-{i}.csv")
            client.append("INBOX", "", None, bytes(message))


def floor(server: ImapServer) -> int:
    with server.client() as client:
        client.create("FloorDone")
        client.select("INBOX")
        uids = client.uid("SEARCH", None, "ALL")[1][0].split()
        for uid in uids:
            client.uid("FETCH", uid, "(BODY.PEEK[])")
        client.uid("MOVE", b",".join(uids).decode(), "FloorDone")
    return len(uids)


def ours(emit: str, n: int) -> int:
    from b2b_integrations.operators.mailbox import MailboxOperator

    operator = MailboxOperator(
        task_id="read_mail",
        customer_id="bench",
        integration="mail",
        flow="inbox",
        imap_conn_id="bench_imap",
        emit=emit,
        max_messages=n,
    )
    result = operator.run_step({"run_id": f"bench_{time.time_ns()}"})
    assert result["messages"] == n, result
    return n


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("B2B_DATA_DIR", tempfile.mkdtemp(prefix="b2b-bench-mail-"))
    server = start_imap()
    os.environ["AIRFLOW_CONN_BENCH_IMAP"] = server.airflow_conn_json()
    n = args.messages
    best: dict[str, float] = {}
    try:
        print(
            f"load average at start: {os.getloadavg()[0]:.1f}; {n} messages of {len(ATTACHMENT) // 1024} KB + text"
        )
        for round_ in range(args.rounds):
            for number, (name, run) in enumerate(
                (
                    ("floor", lambda: floor(server)),
                    ("ours, emit: messages", lambda: ours("messages", n)),
                    ("ours, emit: attachments", lambda: ours("attachments", n)),
                )
            ):
                fill(server, n, f"r{round_}-{number}-{time.time_ns()}")
                start = time.perf_counter()
                count = run()
                rate = count / (time.perf_counter() - start)
                best[name] = max(best.get(name, 0.0), rate)
        for name, rate in best.items():
            ratio = f" ({best['floor'] / rate:.2f}x the floor's time)" if name != "floor" else ""
            print(f"{name}: {rate:.0f} messages/s{ratio}")
        print(f"load average at end: {os.getloadavg()[0]:.1f}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
