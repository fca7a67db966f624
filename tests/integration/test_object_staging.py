"""Staged records on object storage (``B2B_STAGING_URL``) against a real S3-protocol server (moto's
standalone server, tests/s3_server.py), and the retention that deletes old staged files, on S3 and locally,
also as the app DAG ``app.yaml``'s ``staging`` block generates."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest
import yaml

from b2b_integrations import staging
from helpers import REPO
from s3_server import S3Server

pytestmark = pytest.mark.e2e


@pytest.fixture
def bucket(s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> str:
    name = s3.new_bucket("staging")
    monkeypatch.setenv("AIRFLOW_CONN_OBJSTORE_STAGING", s3.airflow_conn_json())
    monkeypatch.setenv("B2B_STAGING_URL", f"s3://{name}/staged/")
    monkeypatch.setenv("B2B_STAGING_CONN_ID", "objstore_staging")
    return name


def _path(task: str = "load") -> staging.StagePath:
    return staging.stage_path("acme", "orders", "files", "manual__2026-12-03T10:00:00+00:00", task)


def test_records_round_trip_through_the_bucket_and_a_retry_replaces_them(s3: S3Server, bucket: str) -> None:
    frame = pd.DataFrame({"id": [1, 2], "name": ["Zoë", "a b"], "note": [None, "x\ny"]})
    ref = staging.write_records(frame, _path())
    assert ref["path"] == (
        f"s3://{bucket}/staged/runs/acme/orders/files/manual__2026-12-03T10_00_00+00_00/load.ndjson"
    )
    assert s3.keys(bucket) == ["staged/runs/acme/orders/files/manual__2026-12-03T10_00_00+00_00/load.ndjson"]
    back = staging.read_records(ref)
    assert back.astype(object).where(back.notna(), None).to_dict("records") == [
        {"id": 1, "name": "Zoë", "note": None},
        {"id": 2, "name": "a b", "note": "x\ny"},
    ]
    # A retry writes the same key: its output replaces the first, never adds to it.
    again = staging.write_records(frame.head(1), _path())
    assert again["path"] == ref["path"] and len(staging.read_records(again)) == 1
    # The pandas-free pair (call steps) uses the same place and format.
    dicts = staging.write_dicts([{"a": 1}, {"a": "ü"}], _path("call"), ["a"])
    assert staging.read_dicts(dicts) == [{"a": 1}, {"a": "ü"}]
    empty = staging.write_records(pd.DataFrame(columns=["id"]), _path("empty"))
    assert list(staging.read_records(empty).columns) == ["id"]


def test_a_write_that_fails_midway_leaves_no_object(s3: S3Server, bucket: str) -> None:
    with pytest.raises(RuntimeError, match="worker died"):
        with staging.atomic_writer(_path()) as handle:
            handle.write('{"id": 1}\n' * 10_000)
            raise RuntimeError("worker died")
    assert s3.keys(bucket) == []
    with pytest.raises(FileNotFoundError, match="re-run the upstream step"):
        staging.read_records({"path": staging.path_text(_path()), "rows": 1, "columns": []})


def test_a_reference_outside_the_staging_location_is_refused(s3: S3Server, bucket: str) -> None:
    other = s3.new_bucket("other")
    s3.client().put_object(Bucket=other, Key="secret.ndjson", Body=b'{"a": 1}\n')
    for path in (
        f"s3://{other}/secret.ndjson",
        f"s3://{bucket}/staged/runs/../../elsewhere.ndjson",
        f"s3://{bucket}/stagedX/runs/a.ndjson",
    ):
        with pytest.raises(ValueError, match="not under the staging location"):
            staging.read_records({"path": path, "rows": 1, "columns": ["a"]})


def _last_modified(s3: S3Server, bucket: str, key: str) -> float:
    return s3.client().head_object(Bucket=bucket, Key=key)["LastModified"].timestamp()


def test_retention_on_s3_deletes_only_files_older_than_the_age(s3: S3Server, bucket: str) -> None:
    old = staging.write_records(pd.DataFrame({"id": [1]}), _path("old"))
    old_key = old["path"].split("/", 3)[3]
    old_time = _last_modified(s3, bucket, old_key)
    # S3 keeps whole seconds: the young file is written once the store's clock has moved past the old one.
    young_key = old_key.replace("old.ndjson", "young.ndjson")
    while True:
        staging.write_records(pd.DataFrame({"id": [2]}), _path("young"))
        if _last_modified(s3, bucket, young_key) > old_time:
            break
    young_time = _last_modified(s3, bucket, young_key)
    s3.client().put_object(Bucket=bucket, Key="not-staging/keep.txt", Body=b"outside runs/")
    max_age = 3600.0
    summary = staging.remove_older_than(max_age, now=(old_time + young_time) / 2 + max_age)
    assert (summary.files_removed, summary.files_kept) == (1, 1)
    assert s3.keys(bucket) == ["not-staging/keep.txt", young_key]
    # An empty location, or one never written to, is nothing to do.
    assert staging.remove_older_than(max_age, now=young_time + 10 * max_age).files_removed == 1
    assert staging.remove_older_than(max_age).files_removed == 0


def test_retention_dag_from_app_yaml_cleans_the_local_data_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, airflow_db: str
) -> None:
    """The shared-folder case, through the app DAG ``include/app.yaml`` generates."""
    from airflow.dag_processing.dagbag import DagBag

    from b2b_integrations.factory.app_dags import RETENTION_DAG_ID
    from helpers import write_include

    monkeypatch.delenv("B2B_STAGING_URL", raising=False)
    monkeypatch.setenv("B2B_DATA_DIR", str(tmp_path / "data"))
    old = staging.write_records(pd.DataFrame({"id": [1]}), _path("old"))
    young = staging.write_records(pd.DataFrame({"id": [2]}), _path("young"))
    two_days_ago = time.time() - 48 * 3600
    os.utime(old["path"], (two_days_ago, two_days_ago))
    stale_run = tmp_path / "data" / "runs" / "acme" / "orders" / "files" / f"old_run_{uuid.uuid4().hex[:6]}"
    stale_run.mkdir(parents=True)
    (stale_run / ".load.ndjson.tmp").write_text("left by a killed worker")
    os.utime(stale_run / ".load.ndjson.tmp", (two_days_ago, two_days_ago))

    include = write_include(tmp_path / "include", {}, {})
    (include / "app.yaml").write_text(
        yaml.safe_dump({"staging": {"retention_hours": 24, "schedule": "@daily"}})
    )
    monkeypatch.setenv("B2B_INCLUDE_DIR", str(include))
    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    run = bag.dags[RETENTION_DAG_ID].test()
    assert run.state == "success"
    assert not Path(old["path"]).exists() and Path(young["path"]).exists()
    assert not stale_run.exists()  # emptied folders go too
