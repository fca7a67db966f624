"""Customers spread over several DAG files (B2B_SHARDS): the same DAGs, each in its customer's shard file,
problems still listed by the DAG-less problems file (from each shard's report while its files are
unchanged), and a broken customer file costs nothing outside that customer."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from helpers import REPO, minimal_customer, minimal_template, write_include

DAGS = REPO / "dags"
PROBLEMS = str(DAGS / "b2b_config_problems.py")


def _bag(monkeypatch: pytest.MonkeyPatch, shards: int, folder: Path = DAGS) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("B2B_SHARDS", str(shards))
    return DagBag(dag_folder=str(folder))


def _customers(count: int) -> dict[str, Any]:
    return {f"cust{i:02d}": minimal_customer(f"cust{i:02d}") for i in range(count)}


def test_shard_of_is_stable_and_spreads() -> None:
    from b2b_integrations.factory.shards import shard_of

    # crc32: the same in every process (Python's hash() of a str is salted per process).
    assert [shard_of(f"customer_{i:04d}", 16) for i in range(6)] == [
        shard_of(f"customer_{i:04d}", 16) for i in range(6)
    ]
    assert shard_of("acme", 1) == 0
    counts = [0] * 16
    for i in range(10_000):
        counts[shard_of(f"customer_{i:04d}", 16)] += 1
    assert min(counts) > 10_000 / 16 * 0.8 and max(counts) < 10_000 / 16 * 1.2, counts


@pytest.mark.parametrize(
    ("raw", "count", "problem"),
    [("", 1, None), ("4", 4, None), ("16", 16, None), ("40", 16, "outside 1..16"), ("0", 1, "outside"),
     ("four", 1, "not a whole number")],
)  # fmt: skip
def test_shard_count(monkeypatch: pytest.MonkeyPatch, raw: str, count: int, problem: str | None) -> None:
    from b2b_integrations.factory.shards import shard_count

    monkeypatch.setenv("B2B_SHARDS", raw)
    got, message = shard_count()
    assert got == count
    assert (message is None) if problem is None else (problem in message)


@pytest.mark.parametrize(
    ("raw", "limit", "problem"),
    [("", 1000, None), ("250", 250, None), ("0", 1000, "not a whole number >= 1"),
     ("many", 1000, "not a whole number >= 1")],
)  # fmt: skip
def test_max_customers_per_shard(
    monkeypatch: pytest.MonkeyPatch, raw: str, limit: int, problem: str | None
) -> None:
    from b2b_integrations.factory.shards import max_customers_per_shard

    monkeypatch.setenv("B2B_MAX_CUSTOMERS_PER_SHARD", raw)
    got, message = max_customers_per_shard()
    assert got == limit
    assert (message is None) if problem is None else (problem in message)


def test_oversized_shards_are_counted_from_file_names_with_the_shard_count_to_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from b2b_integrations.factory.shards import customers_per_shard, oversized_shards

    include = tmp_path / "include"
    (include / "customers").mkdir(parents=True)
    for i in range(40):
        # Not valid YAML: the count reads names only, so a broken file is a customer all the same.
        (include / "customers" / f"c{i:02d}.yaml").write_text(": [", encoding="utf-8")
    (include / "customers" / ".hidden.yaml").write_text("", encoding="utf-8")
    assert customers_per_shard(include, 1) == {0: 40}
    assert sum(customers_per_shard(include, 4).values()) == 40

    monkeypatch.setenv("B2B_MAX_CUSTOMERS_PER_SHARD", "10")
    oversized, setting = oversized_shards(include, 1)
    assert setting == []
    assert list(oversized) == [0]
    # 40 customers, 10 each with a fifth of headroom: 5 files.
    assert "holds 40 customers, more than B2B_MAX_CUSTOMERS_PER_SHARD=10" in oversized[0].message
    assert "set B2B_SHARDS to 5 (now 1)" in oversized[0].message
    assert oversized[0].file == "b2b_integrations_dags.py"

    monkeypatch.setenv("B2B_MAX_CUSTOMERS_PER_SHARD", "40")
    assert oversized_shards(include, 1) == ({}, [])

    # More files than dags/ ships: the advice says what else to change, never an out-of-range B2B_SHARDS.
    monkeypatch.setenv("B2B_MAX_CUSTOMERS_PER_SHARD", "2")
    oversized, _ = oversized_shards(include, 16)
    assert oversized
    message = next(iter(oversized.values())).message
    assert "24 or more shard files, more than the 16 dags/ ships" in message
    assert "set B2B_SHARDS" not in message

    monkeypatch.setenv("B2B_MAX_CUSTOMERS_PER_SHARD", "-3")
    oversized, setting = oversized_shards(include, 1)
    assert (
        oversized == {}
        and "B2B_MAX_CUSTOMERS_PER_SHARD='-3' is not a whole number >= 1" in setting[0].message
    )


def test_problems_file_names_an_oversized_shard_without_building_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    include = write_include(tmp_path / "include", {"sync": minimal_template()}, _customers(6))
    write_include(include, customers={"cust02": minimal_customer("cust02", config={"region": "mars"})})
    monkeypatch.setenv("B2B_INCLUDE_DIR", str(include))
    monkeypatch.setenv("B2B_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("B2B_MAX_CUSTOMERS_PER_SHARD", "4")
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("B2B_SHARDS", "1")
    # The problems file alone, before any shard parse left a report: the oversized shard is not built here
    # (it could take the problems file past the timeout), so cust02's problem is not known yet.
    error = DagBag(dag_folder=PROBLEMS).import_errors[PROBLEMS]
    assert "b2b_integrations_dags.py: <document>: holds 6 customers" in error
    assert "not re-checked since its files changed (too many customers to check here)" in error
    assert "got 'mars'" not in error
    # Once the shard's own parse has run (it still registers every valid customer's DAG: cust02 never had
    # a valid version), its report is used.
    shard = DagBag(dag_folder=str(DAGS / "b2b_integrations_dags.py"))
    assert sorted(d for d in shard.dags if d.startswith("cust")) == [
        f"cust{i:02d}__sync__snapshot" for i in (0, 1, 3, 4, 5)
    ]
    assert shard.import_errors == {}
    error = DagBag(dag_folder=PROBLEMS).import_errors[PROBLEMS]
    assert "got 'mars'" in error and "holds 6 customers" in error
    assert "not re-checked" not in error


def test_fingerprint_changes_only_for_the_changed_customers_shard(tmp_path: Path) -> None:
    from b2b_integrations.factory.shards import fingerprints, shard_of

    include = write_include(tmp_path / "include", {"sync": minimal_template()}, _customers(12))
    before = fingerprints(include, 4, None)
    changed = "cust05"
    write_include(include, customers={changed: minimal_customer(changed, config={"region": "us"})})
    after = fingerprints(include, 4, None)
    assert {s for s in range(4) if before[s] != after[s]} == {shard_of(changed, 4)}
    write_include(include, templates={"sync": minimal_template(description="changed")})
    assert all(fingerprints(include, 4, None)[s] != after[s] for s in range(4))  # every shard reads it


def test_sharded_layout_builds_the_same_dags_each_in_its_customers_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.serialization.serialized_objects import DagSerialization

    from b2b_integrations.factory.shards import shard_file, shard_of

    include = write_include(tmp_path / "include", {"sync": minimal_template()}, _customers(20))
    monkeypatch.setenv("B2B_INCLUDE_DIR", str(include))
    single = _bag(monkeypatch, 1)
    sharded = _bag(monkeypatch, 4)
    assert single.import_errors == {} and sharded.import_errors == {}
    assert set(sharded.dags) == set(single.dags) and len(single.dags) == 20
    files = {Path(dag.fileloc).name for dag in sharded.dags.values()}
    assert len(files) == 4
    for dag_id, dag in sharded.dags.items():
        assert Path(dag.fileloc).name == shard_file(shard_of(dag_id.split("__")[0], 4))
        ours, theirs = (
            DagSerialization.to_dict(dag)["dag"],
            DagSerialization.to_dict(single.dags[dag_id])["dag"],
        )
        for key in ("fileloc", "relative_fileloc"):
            ours.pop(key, None), theirs.pop(key, None)
        assert ours == theirs
    # A task parse (parsing context) finds its DAG in exactly one file: no duplicate across shards.
    for dag_id in sorted(single.dags)[:5]:
        monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", dag_id)
        alone = _bag(monkeypatch, 4)
        assert list(alone.dags) == [dag_id] and alone.import_errors == {}


def test_broken_customer_in_one_shard_spares_every_other_dag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from b2b_integrations.factory.shards import shard_of

    include = write_include(
        tmp_path / "include", {"sync": minimal_template(), "spare": minimal_template("spare")}, _customers(12)
    )
    monkeypatch.setenv("B2B_INCLUDE_DIR", str(include))
    monkeypatch.setenv("B2B_LAST_VALID_DIR", str(tmp_path / "last_valid"))
    assert len(_bag(monkeypatch, 4).dags) == 12
    # A template every shard reads (none of these customers uses it): its problem is listed once.
    (include / "integrations" / "spare.yaml").write_text("name: spare\nflows: [\n", encoding="utf-8")
    # cust03 breaks (runs on its copy), newbie never was valid (no DAG); everyone else unaffected.
    write_include(include, customers={"cust03": minimal_customer("cust03", config={"region": "mars"})})
    write_include(include, customers={"newbie": minimal_customer("newbie", config={})})
    assert shard_of("cust03", 4) != shard_of("newbie", 4)  # two shards with a problem at once
    bag = _bag(monkeypatch, 4)
    assert sorted(bag.dags) == sorted(f"cust{i:02d}__sync__snapshot" for i in range(12))
    assert list(bag.import_errors) == [PROBLEMS]
    error = bag.import_errors[PROBLEMS]
    assert "customers/cust03.yaml:" in error and "expected one of ['eu', 'us'], got 'mars'" in error
    assert "customers/cust03.yaml: <document>: this customer's integrations keep running on" in error
    assert "customers/newbie.yaml:" in error and "missing required value 'region'" in error
    assert error.count("integrations/spare.yaml:3: <document>: invalid YAML") == 1
    assert error.count("integrations/spare.yaml: <document>: its flows keep running on") == 1


def test_problems_file_uses_a_fresh_report_and_rechecks_a_changed_shard(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from b2b_integrations.factory.shards import ReportStore, shard_of

    include = write_include(tmp_path / "include", {"sync": minimal_template()}, _customers(8))
    write_include(include, customers={"cust02": minimal_customer("cust02", config={"region": "mars"})})
    monkeypatch.setenv("B2B_INCLUDE_DIR", str(include))
    monkeypatch.setenv("B2B_DATA_DIR", str(tmp_path / "data"))
    assert "got 'mars'" in _bag(monkeypatch, 3).import_errors[PROBLEMS]
    # The problems file reads cust02's shard report while its files are unchanged: a report edited on
    # disk (same fingerprint) is what it shows, so it did not load the shard again.
    shard = shard_of("cust02", 3)
    report_path = ReportStore()._path(include, shard, 3)
    data = json.loads(report_path.read_text(encoding="utf-8"))
    assert [p["file"] for p in data["problems"]] == ["include/customers/cust02.yaml"]
    data["problems"][0]["message"] = "marker from the report"
    report_path.write_text(json.dumps(data), encoding="utf-8")
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("B2B_SHARDS", "3")
    assert "marker from the report" in DagBag(dag_folder=PROBLEMS).import_errors[PROBLEMS]
    # Any change to a file the shard reads makes the report out of date: checked anew.
    write_include(include, customers={"cust02": minimal_customer("cust02", config={"region": "moon"})})
    error = DagBag(dag_folder=PROBLEMS).import_errors[PROBLEMS]
    assert "got 'moon'" in error and "marker" not in error
    # Out of checking time (a template change touches every shard): the previous problems are shown, marked.
    monkeypatch.setattr("b2b_integrations.factory.register.CHECK_BUDGET_SECONDS", 0.0)
    write_include(include, customers={"cust02": minimal_customer("cust02", config={"region": "sun"})})
    error = DagBag(dag_folder=PROBLEMS).import_errors[PROBLEMS]
    assert "got 'moon'" in error and "not re-checked since its files changed" in error


def test_a_missing_shard_file_is_a_problem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    include = write_include(tmp_path / "include", {"sync": minimal_template()}, _customers(6))
    dags = tmp_path / "dags"
    dags.mkdir()
    for name in ("b2b_integrations_dags.py", "b2b_config_problems.py", "b2b_integrations_shard_01.py"):
        shutil.copy(DAGS / name, dags / name)
    monkeypatch.setenv("B2B_INCLUDE_DIR", str(include))
    bag = _bag(monkeypatch, 3, dags)
    error = bag.import_errors[str(dags / "b2b_config_problems.py")]
    assert (
        "b2b_integrations_shard_02.py: <document>: missing: B2B_SHARDS=3 puts customers in shard 2" in error
    )
    monkeypatch.setenv("B2B_SHARDS", "99")
    error = _bag(monkeypatch, 99, DAGS).import_errors[PROBLEMS]
    assert "B2B_SHARDS: <document>: B2B_SHARDS=99 is outside 1..16" in error
