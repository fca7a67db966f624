"""The instance store on real files: ETags, loader-checked writes, history, concurrent writers."""

from __future__ import annotations

import multiprocessing
import shutil
from pathlib import Path

import pytest

from b2b_integrations.instances import documents
from b2b_integrations.instances.errors import (
    Conflict,
    InvalidChange,
    NotFound,
    PreconditionFailed,
    PreconditionRequired,
)
from b2b_integrations.instances.history import History
from b2b_integrations.instances.store import InstanceStore

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def store(tmp_path: Path) -> InstanceStore:
    include = tmp_path / "include"
    shutil.copytree(REPO / "include", include)
    return InstanceStore(include, History(tmp_path / "history"))


def test_a_write_keeps_the_rest_of_the_file_and_its_comments(store: InstanceStore) -> None:
    path = store.include_dir / "customers" / "globex.yaml"
    before = path.read_text()
    record = store.get("globex", "inventory_sync")
    store.put(
        "globex",
        "inventory_sync",
        {**record.settings, "config": {"sku_count": 20}},
        if_match=record.etag,
        actor="t",
    )
    after = path.read_text()
    assert after.splitlines()[0] == before.splitlines()[0]  # the schema modeline comment
    assert "sku_count: 20" in after
    # every other integration's block is unchanged, byte for byte
    assert after[after.index("  partner_orders_sftp:") :] == before[before.index("  partner_orders_sftp:") :]


def test_stale_and_missing_if_match(store: InstanceStore) -> None:
    record = store.get("globex", "inventory_sync")
    changed = {**record.settings, "config": {"sku_count": 21}}
    with pytest.raises(PreconditionRequired):
        store.put("globex", "inventory_sync", changed, if_match=None, actor="t")
    store.put("globex", "inventory_sync", changed, if_match=record.etag, actor="t")
    with pytest.raises(PreconditionFailed) as stale:
        store.put(
            "globex",
            "inventory_sync",
            {**changed, "config": {"sku_count": 22}},
            if_match=record.etag,
            actor="t",
        )
    assert stale.value.current_etag == store.get("globex", "inventory_sync").etag
    with pytest.raises(PreconditionFailed):  # If-Match on something that does not exist
        store.put("globex", "crm_contacts", {}, if_match=record.etag, actor="t")


def test_an_invalid_write_changes_nothing_and_names_every_problem(store: InstanceStore) -> None:
    path = store.include_dir / "customers" / "globex.yaml"
    before = path.read_bytes()
    record = store.get("globex", "inventory_sync")
    versions_before = len(store.versions("globex", "inventory_sync"))
    with pytest.raises(InvalidChange) as refused:
        store.put(
            "globex", "inventory_sync",
            {"config": {"sku_count": "many", "colour": 1}, "connections": {}},
            if_match=record.etag, actor="t",
        )  # fmt: skip
    found = {(p.key_path, p.message) for p in refused.value.problems}
    assert ("integrations.inventory_sync.config.sku_count", "expected integer, got str 'many'") in found
    assert any(key == "integrations.inventory_sync.config.colour" for key, _ in found)
    assert any("warehouse_db" in message for _, message in found)
    assert all(p.file == "include/customers/globex.yaml" for p in refused.value.problems)
    assert path.read_bytes() == before
    assert len(store.versions("globex", "inventory_sync")) == versions_before


def test_problems_match_validate_on_the_same_file(store: InstanceStore, tmp_path: Path) -> None:
    """Same messages and key paths as the CLI: write the refused file by hand and load it."""
    from b2b_integrations.config.loader import load_project

    record = store.get("globex", "inventory_sync")
    bad = {**record.settings, "flows": {"snapshot": {"schedule": "@fortnightly"}}}
    with pytest.raises(InvalidChange) as refused:
        store.put("globex", "inventory_sync", bad, if_match=record.etag, actor="t")
    path = store.include_dir / "customers" / "globex.yaml"
    text = documents.dump(
        documents.with_integration(documents.parse(path.read_text()), "inventory_sync", bad)
    )
    path.write_text(text)
    loaded = load_project(store.include_dir, last_valid=None)
    cli = {(p.key_path, p.message, p.line) for p in loaded.problems if p.file.endswith("globex.yaml")}
    assert {(p.key_path, p.message, p.line) for p in refused.value.problems} == cli


def test_history_restore_and_file_edits(store: InstanceStore) -> None:
    first = store.get("globex", "inventory_sync")
    second = store.put(
        "globex",
        "inventory_sync",
        {**first.settings, "config": {"sku_count": 30}},
        if_match=first.etag,
        actor="alice",
    )
    # an engineer edits the file by hand: the store records it as a version by "file"
    path = store.include_dir / "customers" / "globex.yaml"
    path.write_text(path.read_text().replace("sku_count: 30", "sku_count: 31"))
    third = store.get("globex", "inventory_sync")
    assert third.version == second.version + 1
    versions = store.versions("globex", "inventory_sync")
    assert [(v.by, v.action) for v in versions] == [
        ("file", "found in the file"), ("alice", "update"), ("file", "edited in the file"),
    ]  # fmt: skip
    assert versions[1].changes == [{"path": "config.sku_count", "from": 15, "to": 30}]
    restored = store.restore("globex", "inventory_sync", 1, if_match=third.etag, actor="bob")
    assert restored.settings == first.settings
    assert store.versions("globex", "inventory_sync")[-1].action == "restore of version 1"


def test_create_delete_and_conflicts(store: InstanceStore) -> None:
    created = store.create_customer("hooli", {"name": "Hooli"}, actor="t")
    assert created.header == {"id": "hooli", "name": "Hooli"}
    with pytest.raises(Conflict):
        store.create_customer("hooli", {"name": "Again"}, actor="t")
    with pytest.raises(InvalidChange):
        store.create_customer("Bad-Id", {"name": "x"}, actor="t")
    record = store.put(
        "hooli", "crm_contacts", {"connections": {"crm_api": "a", "app_db": "b"}}, if_match=None, actor="t"
    )
    gone = store.delete("hooli", "crm_contacts", if_match=record.etag, actor="t")
    assert gone.settings is None
    with pytest.raises(NotFound):
        store.get("hooli", "crm_contacts")
    with pytest.raises(NotFound):
        store.get("nobody", "crm_contacts")
    with pytest.raises(NotFound):
        store.get("../etc", "crm_contacts")


def _writer(args: tuple[str, str, str, int, str]) -> str:
    include, history, etag, value, _ = args
    store = InstanceStore(Path(include), History(Path(history)))
    current = store.get("globex", "inventory_sync").settings
    try:
        store.put(
            "globex",
            "inventory_sync",
            {**current, "config": {"sku_count": value}},
            if_match=etag,
            actor=f"w{value}",
        )
        return "ok"
    except PreconditionFailed:
        return "412"


def test_concurrent_writers_one_wins_the_other_gets_412(store: InstanceStore, tmp_path: Path) -> None:
    """Processes, not threads: the lock must hold across processes, as API server workers are."""
    etag = store.get("globex", "inventory_sync").etag
    args = [(str(store.include_dir), str(tmp_path / "history"), etag, value, "") for value in range(40, 48)]
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        outcomes = pool.map(_writer, args)
    assert sorted(outcomes) == ["412"] * 7 + ["ok"]
    versions = store.versions("globex", "inventory_sync")
    winner = versions[-1]
    assert winner.action == "update" and len(versions) == 2
    assert store.get("globex", "inventory_sync").settings["config"]["sku_count"] == int(winner.by[1:])


def test_a_hand_edited_key_that_is_not_a_name_never_becomes_a_path(
    store: InstanceStore, tmp_path: Path
) -> None:
    path = store.include_dir / "customers" / "globex.yaml"
    path.write_text(path.read_text() + "  ../../escape: {}\n")
    with pytest.raises(NotFound):
        store.get("globex", "../../escape")
    assert [r.integration for r in store.instances("globex")] == [
        "crm_hybrid",
        "inventory_sync",
        "partner_orders_sftp",
    ]
    assert not (tmp_path / "escape.jsonl").exists() and not (tmp_path.parent / "escape.jsonl").exists()
