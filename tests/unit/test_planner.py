"""Config -> plan: DAG ids, schedules, tags, params, retries and resolved step arguments (no Airflow)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from b2b_integrations.config.loader import load_project
from b2b_integrations.factory.plan import DagPlan
from b2b_integrations.factory.planner import plan_project
from helpers import minimal_customer, minimal_template, write_include


def plans(tmp_path: Path, customers: dict[str, Any], **templates: Any) -> dict[str, DagPlan]:
    include = write_include(tmp_path / "include", templates or {"sync": minimal_template()}, customers)
    project = load_project(include)
    assert project.problems == [], [str(p) for p in project.problems]
    return {p.dag_id: p for p in plan_project(project)}


def test_one_dag_per_customer_integration_flow(tmp_path: Path) -> None:
    template = minimal_template()
    template["flows"]["nightly"] = {
        **template["flows"]["snapshot"],
        "trigger": {"type": "schedule", "schedule": "@daily"},
    }
    result = plans(
        tmp_path,
        {"acme": minimal_customer("acme"), "globex": minimal_customer("globex")},
        sync=template,
    )
    assert sorted(result) == [
        "acme__sync__nightly",
        "acme__sync__snapshot",
        "globex__sync__nightly",
        "globex__sync__snapshot",
    ]


def test_plan_contents(tmp_path: Path) -> None:
    customer = minimal_customer(config={"region": "us", "threshold": 3})
    customer["tags"] = ["tier:gold"]
    plan = plans(tmp_path, {"acme": customer})["acme__sync__snapshot"]
    assert plan.tags == ("customer:acme", "integration:sync", "pattern:custom", "tier:gold")
    assert plan.schedule == "@hourly" and plan.catchup is False and plan.max_active_runs == 1
    assert plan.default_args["retries"] == 2
    assert plan.default_args["retry_exponential_backoff"] is True
    assert plan.default_args["retry_delay"] == timedelta(seconds=60)
    draft7 = {"$schema": "http://json-schema.org/draft-07/schema#"}
    assert plan.params["threshold"] == {"default": 3, "type": "integer", "minimum": 0, **draft7}
    assert plan.params["region"] == {"default": "us", "type": "string", "enum": ["eu", "us"], **draft7}
    assert "| `threshold` | `3` |" in plan.doc_md and "acme_db" in plan.doc_md
    generate, load = plan.tasks
    assert generate.arguments["options"] == {"warehouse": "acme", "sku_count": 5, "as_of": "{{ ds }}"}
    assert generate.arguments["input_task_id"] is None
    assert load.arguments["conn_id"] == "acme_db" and "connection" not in load.arguments
    assert load.arguments["input_task_id"] == "generate"
    assert {load.arguments[k] for k in ("customer_id", "integration", "flow")} == {"acme", "sync", "snapshot"}


def test_references_keep_their_type_and_interpolate_in_strings(tmp_path: Path) -> None:
    template = minimal_template()
    template["flows"]["snapshot"]["steps"][0]["options"] = {
        "sku_count": "${config.threshold}",
        "warehouse": "wh-${customer.id}-${config.region}",
        "as_of": "{{ ds }}",
    }
    plan = plans(tmp_path, {"acme": minimal_customer()}, sync=template)["acme__sync__snapshot"]
    assert plan.tasks[0].arguments["options"] == {
        "sku_count": 10,
        "warehouse": "wh-acme-eu",
        "as_of": "{{ ds }}",
    }


def test_a_load_gets_its_table_options_as_one_target_and_re_resolves_it_whole(tmp_path: Path) -> None:
    template = minimal_template()
    template["flows"]["snapshot"]["steps"][1].update(
        create_table=True, columns={"sku": "VARCHAR(${config.threshold})", "on_hand": "INTEGER"}
    )
    load = plans(tmp_path, {"acme": minimal_customer()}, sync=template)["acme__sync__snapshot"].tasks[1]
    target = {
        "table": "levels",
        "mode": "upsert",
        "key": ["sku"],
        "columns": {"sku": "VARCHAR(10)", "on_hand": "INTEGER"},
        "create_table": True,
        "chunk_size": 1000,
        "conflict": None,
        "document": None,
    }
    assert load.arguments["target"] == target and "table" not in load.arguments
    # A manual run's params re-resolve the whole target, the reference kept where it was written.
    unresolved = {**target, "columns": {"sku": "VARCHAR(${config.threshold})", "on_hand": "INTEGER"}}
    assert load.arguments["config_refs"] == {"target": unresolved}


def test_schedule_override_and_intervals(tmp_path: Path) -> None:
    customers = {
        "acme": minimal_customer("acme", flows={"snapshot": {"schedule": "15m"}}),
        "globex": minimal_customer("globex", flows={"snapshot": {"schedule": "0 6 * * 1-5"}}),
    }
    result = plans(tmp_path, customers)
    assert result["acme__sync__snapshot"].schedule == timedelta(minutes=15)
    assert result["globex__sync__snapshot"].schedule == "0 6 * * 1-5"


def test_disabled_customer_integration_and_flow_build_nothing(tmp_path: Path) -> None:
    off_customer = {**minimal_customer("off"), "enabled": False}
    customers = {
        "off": off_customer,
        "noint": minimal_customer("noint", enabled=False),
        "noflow": minimal_customer("noflow", flows={"snapshot": {"enabled": False}}),
        "on": minimal_customer("on"),
    }
    assert list(plans(tmp_path, customers)) == ["on__sync__snapshot"]


def test_event_and_asset_triggers_are_wired_through_assets(tmp_path: Path) -> None:
    template = minimal_template()
    steps = template["flows"]["snapshot"]["steps"]
    template["flows"]["hook"] = {"trigger": {"type": "webhook", "signature": "none"}, "steps": steps}
    template["flows"]["after"] = {"trigger": {"type": "asset", "flow": "snapshot"}, "steps": steps}
    result = plans(tmp_path, {"acme": minimal_customer()}, sync=template)
    snapshot, hook, after = (result[f"acme__sync__{f}"] for f in ("snapshot", "hook", "after"))
    assert snapshot.outlet_asset is not None and after.schedule_asset == snapshot.outlet_asset
    assert after.schedule is None and hook.outlet_asset is None
    assert hook.schedule_asset is not None and hook.schedule_asset.uri == "b2b://acme/sync/hook/inbox"
    assert hook.inbox == hook.schedule_asset and after.inbox is None and snapshot.inbox is None
    assert hook.pattern == "event_driven_import"


def test_pubsub_inbox_watches_the_customers_channel_on_the_customers_broker(tmp_path: Path) -> None:
    from b2b_integrations.factory.plan import PubSubWatch

    template = minimal_template()
    template["connections"]["broker"] = {"type": "redis"}
    steps = template["flows"]["snapshot"]["steps"]
    trigger = {"type": "pubsub", "channel": "orders.${customer.id}", "connection": "broker"}
    template["flows"]["events"] = {"trigger": trigger, "steps": steps}
    customer = minimal_customer(connections={"db": "acme_db", "broker": "acme_redis"})
    plan = plans(tmp_path, {"acme": customer}, sync=template)["acme__sync__events"]
    assert plan.schedule_asset is not None and plan.schedule_asset.uri == "b2b://acme/sync/events/inbox"
    assert plan.schedule_asset.watch == PubSubWatch(channel="orders.acme", conn_id="acme_redis")
    assert (
        plans(tmp_path / "plain", {"acme": minimal_customer()}).get("acme__sync__snapshot").schedule_asset
        is None
    )


def test_rabbitmq_inbox_is_watched_by_the_acking_amqp_trigger_through_message_queue_trigger(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.providers.common.messaging.triggers import msg_queue

    from b2b_integrations.factory.build import build_dag
    from b2b_integrations.factory.plan import PubSubWatch

    template = minimal_template()
    template["connections"]["broker"] = {"type": "amqp"}
    steps = template["flows"]["snapshot"]["steps"]
    trigger = {
        "type": "pubsub",
        "broker": "rabbitmq",
        "channel": "orders.${customer.id}",
        "connection": "broker",
    }
    template["flows"]["events"] = {"trigger": {**trigger, "prefetch": 50}, "steps": steps}
    template["flows"]["plain"] = {"trigger": {**trigger, "connection": None}, "steps": steps}
    customer = minimal_customer(connections={"db": "acme_db", "broker": "acme_rabbit"})
    result = plans(tmp_path, {"acme": customer}, sync=template)
    events, plain = result["acme__sync__events"], result["acme__sync__plain"]
    assert events.schedule_asset is not None and plain.schedule_asset is not None
    assert events.schedule_asset.watch == PubSubWatch("orders.acme", "acme_rabbit", "rabbitmq", 50)
    assert plain.schedule_asset.watch == PubSubWatch("orders.acme", "amqp_default", "rabbitmq", None)
    # Built through common-messaging's MessageQueueTrigger (scheme "amqp", our queue provider), the
    # watcher stores our acking trigger, which is what the triggerer will run.
    dag = build_dag(events, auto_register=False)
    (watcher,) = dag.timetable.asset_condition.watchers
    expected = (
        "b2b_integrations.triggers.amqp.AmqpMessageTrigger",
        {"queue_name": "orders.acme", "amqp_conn_id": "acme_rabbit", "prefetch_count": 50},
    )
    assert type(watcher.trigger).__name__ == "MessageQueueTrigger" and watcher.trigger.serialize() == expected
    # A package copied into plugins/ rather than installed has no provider entry point: our trigger is
    # then used directly, and the triggerer runs the same thing.
    monkeypatch.setattr(msg_queue, "MESSAGE_QUEUE_PROVIDERS", [])
    (watcher,) = build_dag(events, auto_register=False).timetable.asset_condition.watchers
    assert type(watcher.trigger).__name__ == "AmqpMessageTrigger" and watcher.trigger.serialize() == expected


def test_prefetch_is_refused_for_redis_pubsub_at_its_key(tmp_path: Path) -> None:
    template = minimal_template()
    template["connections"]["broker"] = {"type": "redis"}
    trigger = {"type": "pubsub", "channel": "orders", "connection": "broker", "prefetch": 10}
    template["flows"]["events"] = {"trigger": trigger, "steps": template["flows"]["snapshot"]["steps"]}
    include = write_include(tmp_path / "include", {"sync": template}, {"acme": minimal_customer()})
    on_template = [p for p in load_project(include).problems if p.file.endswith("integrations/sync.yaml")]
    assert [(p.key_path, "prefetch applies to broker: rabbitmq only" in p.message) for p in on_template] == [
        ("flows.events.trigger", True)
    ]


def test_rabbitmq_batching_reaches_the_serialized_trigger_and_is_checked_at_its_key(tmp_path: Path) -> None:
    from b2b_integrations.factory.build import build_dag
    from b2b_integrations.factory.plan import PubSubWatch

    template = minimal_template()
    template["connections"]["broker"] = {"type": "amqp"}
    steps = template["flows"]["snapshot"]["steps"]
    trigger = {"type": "pubsub", "broker": "rabbitmq", "channel": "orders", "connection": "broker"}
    template["flows"]["events"] = {
        "trigger": {**trigger, "prefetch": 100, "batch_size": 50, "batch_wait_seconds": 0.5},
        "steps": steps,
    }
    customer = minimal_customer(connections={"db": "acme_db", "broker": "acme_rabbit"})
    plan = plans(tmp_path, {"acme": customer}, sync=template)["acme__sync__events"]
    assert plan.schedule_asset is not None
    assert plan.schedule_asset.watch == PubSubWatch("orders", "acme_rabbit", "rabbitmq", 100, 50, 0.5)
    (watcher,) = build_dag(plan, auto_register=False).timetable.asset_condition.watchers
    assert watcher.trigger.serialize()[1] == {
        "queue_name": "orders",
        "amqp_conn_id": "acme_rabbit",
        "prefetch_count": 100,
        "batch_size": 50,
        "batch_wait_seconds": 0.5,
    }

    refused = {
        "above the prefetch": (
            {**trigger, "prefetch": 10, "batch_size": 20},
            "must not exceed prefetch (10)",
        ),
        "above the default prefetch": ({**trigger, "batch_size": 300}, "must not exceed prefetch (200)"),
        "on redis": (
            {"type": "pubsub", "channel": "orders", "connection": "broker", "batch_size": 5},
            "batch_size applies to broker: rabbitmq only",
        ),
        "too long a wait": ({**trigger, "batch_size": 5, "batch_wait_seconds": 60}, "batch_wait_seconds"),
    }
    for case, (bad, message) in refused.items():
        template["flows"]["events"] = {"trigger": bad, "steps": steps}
        include = write_include(tmp_path / case.replace(" ", "_"), {"sync": template}, {"acme": customer})
        problems = [p for p in load_project(include).problems if p.file.endswith("integrations/sync.yaml")]
        said = [f"{p.key_path}: {p.message}" for p in problems]
        assert any(s.startswith("flows.events.trigger") and message in s for s in said), (case, said)


def test_flow_fed_by_a_disabled_flow_is_left_out(tmp_path: Path) -> None:
    template = minimal_template()
    template["flows"]["after"] = {
        "trigger": {"type": "asset", "flow": "snapshot"},
        "steps": template["flows"]["snapshot"]["steps"],
    }
    customer = minimal_customer(flows={"snapshot": {"enabled": False}})
    assert plans(tmp_path, {"acme": customer}, sync=template) == {}


def test_step_retries_and_flow_defaults(tmp_path: Path) -> None:
    template = minimal_template()
    template["flows"]["snapshot"]["steps"][1]["retries"] = 7
    template["flows"]["snapshot"]["defaults"] = {"retries": 0, "execution_timeout_minutes": 5}
    plan = plans(tmp_path, {"acme": minimal_customer()}, sync=template)["acme__sync__snapshot"]
    assert plan.tasks[1].retries == 7 and plan.tasks[0].retries is None
    assert plan.default_args["retries"] == 0
    assert plan.default_args["execution_timeout"] == timedelta(minutes=5)


def test_flows_that_deliver_offer_force_resend_and_carry_the_customers_alerts(tmp_path: Path) -> None:
    from b2b_integrations.factory.build import build_dag

    template = minimal_template()
    template["connections"]["out"] = {"type": "sftp"}
    template["flows"]["snapshot"]["steps"].append(
        {
            "id": "send",
            "kind": "deliver",
            "db_connection": "db",
            "targets": [{"type": "sftp", "connection": "out", "folder": "/x"}],
        }
    )
    customer = minimal_customer(connections={"db": "acme_db", "out": "acme_sftp"})
    customer["alerts"] = {"email": ["ops@acme.example"]}
    plan = plans(tmp_path, {"acme": customer}, sync=template)["acme__sync__snapshot"]
    assert plan.params["force_resend"]["default"] is False and plan.alerts == {"email": ["ops@acme.example"]}
    notifier = build_dag(plan).default_args["on_failure_callback"]
    assert notifier.targets.email_to == ("ops@acme.example",)
    plain = plans(tmp_path / "b", {"acme": minimal_customer()}, sync=minimal_template())[
        "acme__sync__snapshot"
    ]
    assert "force_resend" not in plain.params and plain.alerts is None
