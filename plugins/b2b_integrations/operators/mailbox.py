"""Mailbox step: new messages of an IMAP folder become records (and attachment files) for the flow; each
message is moved to the processed folder once staged, and a message whose Message-ID is already there is
not staged again."""

from __future__ import annotations

import imaplib
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from b2b_integrations.errors import FatalStepError
from b2b_integrations.operators.base import StepOperator
from b2b_integrations.sources.mail import (
    ParsedMessage,
    attachment_file_name,
    attachment_record,
    parse_message,
)
from b2b_integrations.staging import path_text, stage_path, write_bytes_atomically

if TYPE_CHECKING:
    from airflow.sdk import Context

FETCH_BATCH = 20  # messages per UID FETCH (bounded: attachments can be large)
SEARCH_BATCH = 50  # Message-IDs per UID SEARCH of the processed folder
# A Message-ID that can go in an IMAP quoted string as it is: printable ASCII without '"', '\\', '<', '>'.
_QUOTABLE = re.compile(r"[\x20\x21\x23-\x3b\x3d\x3f-\x5b\x5d-\x7e]+")
_UID = re.compile(rb"\bUID (\d+)")
MESSAGE_COLUMNS = [
    "message_id",
    "sender",
    "recipients",
    "cc",
    "subject",
    "sent_at",
    "body",
    "attachment_names",
]
ATTACHMENT_COLUMNS = [
    "message_id",
    "sender",
    "subject",
    "sent_at",
    "attachment_name",
    "content_type",
    "size",
    "sha256",
    "path",
]


class MailboxOperator(StepOperator):
    """
    Read up to ``max_messages`` messages (oldest first) from ``folder`` through Airflow's imap provider,
    stage one record per message (``emit: messages``) or per attachment matching ``attachment_pattern``
    (``emit: attachments``, each saved as a file whose path is in the record), then move every message
    read to ``processed_folder``. Messages whose Message-ID is already in ``processed_folder`` (a sender's
    resend, or a run that staged them but stopped before moving) are moved without being staged again.

    :param imap_conn_id: The mailbox (the imap provider's connection: host, port, login, password,
        extra ``use_ssl``).
    :param folder: Folder read, e.g. ``INBOX``.
    :param processed_folder: Where messages go once staged (created when missing).
    :param emit: ``messages`` or ``attachments``.
    :param attachment_pattern: Glob the attachment file names must match (case-insensitive).
    :param max_messages: At most this many messages per run.
    """

    template_fields: Sequence[str] = ("folder", "processed_folder", "attachment_pattern")
    ui_color = "#fdf3e1"

    def __init__(
        self,
        *,
        imap_conn_id: str,
        folder: str = "INBOX",
        processed_folder: str = "Processed",
        emit: str = "messages",
        attachment_pattern: str = "*",
        max_messages: int = 100,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.imap_conn_id = imap_conn_id
        self.folder = folder
        self.processed_folder = processed_folder
        self.emit = emit
        self.attachment_pattern = attachment_pattern
        self.max_messages = max_messages

    def run_step(self, context: Context) -> Any:
        import pandas as pd
        from airflow.providers.imap.hooks.imap import ImapHook

        try:
            hook = ImapHook(imap_conn_id=self.imap_conn_id).get_conn()
        except imaplib.IMAP4.error as e:  # the server's NO/BAD to our login: retrying will not help
            raise FatalStepError(f"mailbox {self.imap_conn_id}: login refused: {e}") from None
        client = hook.mail_client
        assert client is not None
        try:
            fetched, already = self._read(client)
            staged = self._stage(context, fetched)
            frame = pd.DataFrame(
                staged, columns=ATTACHMENT_COLUMNS if self.emit == "attachments" else MESSAGE_COLUMNS
            )
            ref = self.stage_output(context, frame)
            moved = [uid for uid, _ in fetched] + already
            self._move(client, moved)
        except imaplib.IMAP4.error as e:
            raise RuntimeError(
                f"{self.where}: IMAP on {self.imap_conn_id}, folder {self.folder!r}: {e}"
            ) from None
        finally:
            try:
                client.logout()
            except (imaplib.IMAP4.error, OSError):
                pass
        self.log.info(
            "%d message(s) staged from %r, %d already processed (moved only), moved to %r",
            len(fetched),
            self.folder,
            len(already),
            self.processed_folder,
        )
        return {**ref, "messages": len(fetched), "already_processed": len(already)}

    def _read(self, client: imaplib.IMAP4) -> tuple[list[tuple[bytes, ParsedMessage]], list[bytes]]:
        """(uid, message) of each new message, and the uids of messages already processed."""
        _ok(client.create(self.processed_folder), "CREATE", allow_no=True)  # NO: it exists
        _ok(client.select(self.folder), f"SELECT {self.folder}")
        uids = _ok(client.uid("SEARCH", None, "ALL"), "SEARCH")[0].split()[: self.max_messages]
        parsed = []
        for start in range(0, len(uids), FETCH_BATCH):
            # Several messages per FETCH: one round trip each was most of the step's time.
            batch = b",".join(uids[start : start + FETCH_BATCH]).decode()
            for part in _ok(client.uid("FETCH", batch, "(UID BODY.PEEK[])"), "FETCH"):
                if not isinstance(part, tuple):
                    continue  # the closing ")" of a message, or an unsolicited FLAGS update
                uid = _UID.search(part[0])
                if uid is not None:  # a message expunged meanwhile by another client is simply absent
                    parsed.append((uid.group(1), parse_message(part[1], self.attachment_pattern)))
        done = self._processed_ids(client, {m.message_id for _, m in parsed})
        _ok(client.select(self.folder), f"SELECT {self.folder}")
        fetched, already, seen = [], [], set(done)
        for uid, message in parsed:
            if message.message_id in seen:
                already.append(uid)
            else:
                seen.add(message.message_id)
                fetched.append((uid, message))
        return fetched, already

    def _processed_ids(self, client: imaplib.IMAP4, ids: set[str]) -> set[str]:
        """Which of ``ids`` are already in the processed folder. Ids that are plain printable ASCII are
        searched 50 to a command (``OR`` of ``HEADER Message-ID "<id>"``: one pass over the folder, not
        one per message), and the few hits confirmed by reading their Message-ID; any other id comes from
        the sender in a form that could not be quoted safely, so it is sent alone as an IMAP literal."""
        _ok(client.select(self.processed_folder, readonly=True), f"EXAMINE {self.processed_folder}")
        searchable = sorted(i for i in ids if not i.startswith("sha256:"))  # sha256: no header to find
        quoted = [i for i in searchable if _QUOTABLE.fullmatch(i)]
        found: set[str] = set()
        for start in range(0, len(quoted), SEARCH_BATCH):
            batch = quoted[start : start + SEARCH_BATCH]
            criteria = "OR " * (len(batch) - 1) + " ".join(f'HEADER Message-ID "<{i}>"' for i in batch)
            hits = _ok(client.uid("SEARCH", criteria), "SEARCH")[0].split()
            if hits:
                found |= self._message_ids(client, hits) & set(batch)
        for message_id in sorted(set(searchable) - set(quoted)):
            client.literal = f"<{message_id}>".encode()
            if _ok(client.uid("SEARCH", "CHARSET", "UTF-8", "HEADER", "Message-ID"), "SEARCH")[0].split():
                found.add(message_id)
        return found

    @staticmethod
    def _message_ids(client: imaplib.IMAP4, uids: list[bytes]) -> set[str]:
        data = _ok(
            client.uid("FETCH", b",".join(uids).decode(), "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])"), "FETCH"
        )
        return {parse_message(part[1]).message_id for part in data if isinstance(part, tuple)}

    def _stage(self, context: Context, fetched: list[tuple[bytes, ParsedMessage]]) -> list[dict[str, Any]]:
        if self.emit != "attachments":
            return [message.record for _, message in fetched]
        base = stage_path(self.customer_id, self.integration, self.flow, context["run_id"], self.task_id)
        folder = base.with_name(f"{base.stem}.attachments")
        records = []
        for number, (_, message) in enumerate(fetched):
            for index, attachment in enumerate(message.attachments):
                path = folder / f"{number:05d}" / attachment_file_name(index, attachment.name)
                write_bytes_atomically(path, attachment.data)
                records.append(attachment_record(message, attachment, path_text(path)))
        return records

    def _move(self, client: imaplib.IMAP4, uids: list[bytes]) -> None:
        if not uids:
            return
        uid_set = b",".join(uids).decode()
        if "MOVE" in client.capabilities:
            _ok(client.uid("MOVE", uid_set, self.processed_folder), "MOVE")
            return
        _ok(client.uid("COPY", uid_set, self.processed_folder), "COPY")
        _ok(client.uid("STORE", uid_set, "+FLAGS.SILENT", r"(\Deleted)"), "STORE")
        if "UIDPLUS" in client.capabilities:
            _ok(client.uid("EXPUNGE", uid_set), "EXPUNGE")
        else:
            _ok(client.expunge(), "EXPUNGE")


def _ok(answer: tuple[str, list[Any]], what: str, allow_no: bool = False) -> list[Any]:
    status, data = answer
    if status != "OK" and not (allow_no and status == "NO"):
        detail = b" ".join(d for d in data if isinstance(d, bytes)).decode(errors="replace")
        raise imaplib.IMAP4.error(f"{what} answered {status}: {detail}")
    return data
