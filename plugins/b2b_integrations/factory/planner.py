"""Config -> plan. Pure: takes loaded models, returns DagPlans, never touches Airflow or the network."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import timedelta
from typing import Any

from b2b_integrations.config.limits import customer_pool
from b2b_integrations.config.loader import CustomerInstance, Project
from b2b_integrations.config.models import CustomerIntegration, Flow, IntegrationTemplate, Pattern
from b2b_integrations.config.references import has_reference, resolve
from b2b_integrations.config.schedules import parse_schedule
from b2b_integrations.config.steps import StepBase
from b2b_integrations.config.triggers import (
    AssetTrigger,
    PubSubTrigger,
    ScheduleTrigger,
    SyncTrigger,
    WebhookTrigger,
)
from b2b_integrations.config.variables import JSON_TYPES
from b2b_integrations.factory.plan import AssetRef, DagPlan, PubSubWatch, SyncPlan, TaskPlan
from b2b_integrations.naming import (
    CALLBACK_TASK_ID,
    DAG_ID_SEPARATOR,  # noqa: F401 - kept importable from here for code written against it
    dag_id_for,
    inbox_asset_name,
    inbox_asset_uri,
    output_asset_name,
    output_asset_uri,
)

# Triggers whose runs arrive as Airflow asset events (webhooks, app events, pub/sub messages).
EVENT_TRIGGERS = frozenset({"webhook", "app_event", "pubsub"})
# Airflow validates every Param with jsonschema at parse and again at serialization, and jsonschema first
# checks the schema against its dialect's metaschema. Draft 7's metaschema is ~3x cheaper to check than the
# default 2020-12 one and covers what params use (type, enum, minimum, maximum, pattern): measured
# 1000 customers x 3 flows, parse 14.7 s -> 11.3 s and serialization 35 s -> 20 s (benchmarks/parse_dags.py).
PARAM_SCHEMA_DIALECT = "http://json-schema.org/draft-07/schema#"
# Each sync call is a run; one at a time would queue every caller behind the one before (templates may
# still set max_active_runs, e.g. 1 when calls must reach the third party in order).
SYNC_MAX_ACTIVE_RUNS = 16
# Airflow's conventional default connection per pub/sub broker, when a template names no slot.
DEFAULT_BROKER_CONN_IDS = {"redis": "redis_default", "rabbitmq": "amqp_default"}
SYNC_CALLBACK_OPERATOR = "b2b_integrations.operators.sync_callback.SyncCallbackOperator"


def inbox_asset(customer_id: str, integration: str, flow: str) -> AssetRef:
    """The asset that receives a flow's incoming events (webhook, app event, pub/sub)."""
    names = (customer_id, integration, flow)
    return AssetRef(name=inbox_asset_name(*names), uri=inbox_asset_uri(*names))


def output_asset(customer_id: str, integration: str, flow: str) -> AssetRef:
    """The asset a flow updates when it finishes, for flows triggered by its output."""
    names = (customer_id, integration, flow)
    return AssetRef(name=output_asset_name(*names), uri=output_asset_uri(*names))


def infer_pattern(flow: Flow) -> Pattern:
    """The pattern a flow implements, from its trigger and step kinds (templates may state it instead)."""
    if flow.pattern is not None:
        return flow.pattern
    kinds = {step.kind for step in flow.steps}  # type: ignore[attr-defined]
    trigger = flow.trigger.type
    if trigger in ("webhook", "pubsub"):
        return Pattern.EVENT_DRIVEN_IMPORT
    if trigger == "app_event":
        return Pattern.EVENT_DRIVEN_EXPORT
    if trigger == "sync":
        return Pattern.SYNCHRONOUS
    for kind, pattern in (
        ("sftp_import", Pattern.SCHEDULED_FILE_IMPORT),
        ("object_import", Pattern.SCHEDULED_FILE_IMPORT),
        ("http_import", Pattern.SCHEDULED_DATA_IMPORT),
        ("report_export", Pattern.SCHEDULED_FILE_EXPORT),
    ):
        if kind in kinds:
            return pattern
    return Pattern.CUSTOM


def plan_project(project: Project, integration: str | None = None) -> list[DagPlan]:
    """Every DAG of every enabled customer integration flow (of ``integration`` only, when given), in a
    stable order."""
    plans: list[DagPlan] = []
    for instance in project.customers:
        if not instance.customer.enabled:
            continue
        for name, settings in instance.integrations.items():
            if settings.enabled and integration in (None, name):
                template = project.template_for(name, settings)
                assert template is not None  # the loader keeps only integrations that have their template
                plans.extend(plan_integration(instance, name, settings, template))
    return plans


def plan_integration(
    instance: CustomerInstance, name: str, settings: CustomerIntegration, template: IntegrationTemplate
) -> list[DagPlan]:
    customer = instance.customer
    config = {key: var.default for key, var in template.config.items()} | settings.config
    scopes = {
        "config": config,
        "customer": {"id": customer.id, "name": customer.name},
        "connections": dict(settings.connections),
    }
    consumed = _flows_with_output_consumers(template.flows.items())
    plans = []
    for flow_name, flow in template.flows.items():
        override = settings.flows.get(flow_name)
        if override is not None and not override.enabled:
            continue
        if not _upstream_enabled(flow, settings):
            continue
        plans.append(
            _plan_flow(
                instance, name, template, flow_name, flow, settings, scopes, config, flow_name in consumed
            )
        )
    return plans


def _flows_with_output_consumers(flows: Iterable[tuple[str, Flow]]) -> set[str]:
    return {flow.trigger.flow for _, flow in flows if isinstance(flow.trigger, AssetTrigger)}


def _upstream_enabled(flow: Flow, settings: CustomerIntegration) -> bool:
    # A flow fed by a disabled flow's output would never run: leave it out rather than build a dead DAG.
    if isinstance(flow.trigger, AssetTrigger):
        upstream = settings.flows.get(flow.trigger.flow)
        return upstream is None or upstream.enabled
    return True


def _plan_flow(
    instance: CustomerInstance,
    integration: str,
    template: IntegrationTemplate,
    flow_name: str,
    flow: Flow,
    settings: CustomerIntegration,
    scopes: dict[str, dict[str, Any]],
    config: dict[str, Any],
    has_consumers: bool,
) -> DagPlan:
    customer = instance.customer
    pattern = infer_pattern(flow)
    schedule, schedule_asset, catchup = _schedule(customer.id, integration, flow_name, flow, settings)
    if isinstance(flow.trigger, PubSubTrigger) and schedule_asset is not None:
        slot = flow.trigger.connection
        watch = PubSubWatch(
            channel=resolve(flow.trigger.channel, scopes),
            conn_id=(settings.connections.get(slot) if slot else None)
            or DEFAULT_BROKER_CONN_IDS[flow.trigger.broker],
            broker=flow.trigger.broker,
            prefetch=flow.trigger.prefetch,
            batch_size=flow.trigger.batch_size,
            batch_wait_seconds=flow.trigger.batch_wait_seconds,
        )
        schedule_asset = replace(schedule_asset, watch=watch)
    run_defaults = flow.defaults or template.defaults
    dag_id = dag_id_for(customer.id, integration, flow_name)
    tasks = tuple(_plan_task(step, index, flow, scopes) for index, step in enumerate(flow.steps))
    base_context = {"customer_id": customer.id, "integration": integration, "flow": flow_name}
    tasks = tuple(
        TaskPlan(t.task_id, t.kind, t.operator, {**base_context, **t.arguments}, t.retries, t.doc_md)
        for t in tasks
    )
    sync = None
    doc_md = _doc_md(instance, integration, template, flow_name, flow, pattern, schedule, config, settings)
    if isinstance(flow.trigger, SyncTrigger):
        sync = _sync_plan(flow.trigger, tasks, settings, base_context)
        doc_md += (
            f"\n\n## Synchronous endpoint\n\n`POST /b2b/sync/{customer.id}/{integration}/{flow_name}` "
            f"answers with the return value of `{sync.result_task_id}`; `{CALLBACK_TASK_ID}` sends it to the "
            "caller's `Callback-Url` when one was given."
        )
    if isinstance(flow.trigger, WebhookTrigger):
        doc_md += (
            f"\n\n## Webhook URL\n\nThe third party calls `POST /b2b/webhooks/{customer.id}/{integration}/{flow_name}` "
            f"on the Airflow API server's address, signed with `{flow.trigger.signature}`"
            + (
                f" (secret: the password of connection slot `{flow.trigger.secret_connection}`)."
                if flow.trigger.secret_connection
                else "."
            )
        )
    return DagPlan(
        dag_id=dag_id,
        customer_id=customer.id,
        integration=integration,
        flow=flow_name,
        pattern=pattern.value,
        schedule=schedule,
        schedule_asset=schedule_asset,
        outlet_asset=output_asset(customer.id, integration, flow_name) if has_consumers else None,
        catchup=catchup,
        max_active_runs=_max_active_runs(flow, sync is not None, customer.limits.max_active_runs),
        paused_upon_creation=None if settings.active is None else not settings.active,
        tags=(
            f"customer:{customer.id}",
            f"integration:{integration}",
            f"pattern:{pattern.value}",
            *customer.tags,
        ),
        description=f"{customer.name}: {template.description or integration} / {flow.description or flow_name}"[
            :200
        ],
        doc_md=doc_md,
        params=_params(template, config, flow),
        default_args={
            "owner": run_defaults.owner,
            "retries": run_defaults.retries,
            "retry_delay": timedelta(seconds=run_defaults.retry_delay_seconds),
            "retry_exponential_backoff": run_defaults.retry_exponential_backoff,
            "max_retry_delay": timedelta(seconds=run_defaults.max_retry_delay_seconds),
            "execution_timeout": (
                timedelta(minutes=run_defaults.execution_timeout_minutes)
                if run_defaults.execution_timeout_minutes
                else None
            ),
        },
        tasks=tasks,
        source_file=instance.file,
        inbox=schedule_asset if flow.trigger.type in EVENT_TRIGGERS else None,
        alerts=customer.alerts.model_dump() if customer.alerts else None,
        sync=sync,
        pool=customer_pool(customer.id) if customer.limits.max_active_tasks else None,
        priority_weight=customer.limits.priority_weight if customer.limits.priority_weight != 1 else None,
    )


def _max_active_runs(flow: Flow, sync: bool, customer_cap: int | None) -> int:
    wanted = flow.max_active_runs or (SYNC_MAX_ACTIVE_RUNS if sync else 1)
    return min(wanted, customer_cap) if customer_cap else wanted


def _sync_plan(
    trigger: SyncTrigger,
    tasks: tuple[TaskPlan, ...],
    settings: CustomerIntegration,
    base_context: dict[str, str],
) -> SyncPlan:
    steps = [task.task_id for task in tasks]
    result = trigger.result_step or steps[-1]
    slot = trigger.callback_secret_connection
    callback = TaskPlan(
        task_id=CALLBACK_TASK_ID,
        kind="sync_callback",
        operator=SYNC_CALLBACK_OPERATOR,
        arguments={
            **base_context,
            "steps": steps,
            "result_task_id": result,
            "secret_conn_id": settings.connections.get(slot) if slot else None,
        },
        doc_md="POSTs the run's result or error to the caller's Callback-Url, signed (Standard Webhooks); "
        "does nothing when the call gave none.",
    )
    return SyncPlan(result_task_id=result, callback=callback)


def _schedule(
    customer_id: str, integration: str, flow_name: str, flow: Flow, settings: CustomerIntegration
) -> tuple[str | timedelta | None, AssetRef | None, bool]:
    trigger = flow.trigger
    if isinstance(trigger, ScheduleTrigger):
        override = settings.flows.get(flow_name)
        expr = override.schedule if override is not None and override.schedule else trigger.schedule
        return parse_schedule(expr), None, trigger.catchup
    if isinstance(trigger, AssetTrigger):
        return None, output_asset(customer_id, integration, trigger.flow), False
    if trigger.type in EVENT_TRIGGERS:
        return None, inbox_asset(customer_id, integration, flow_name), False
    return None, None, False  # manual and sync flows are started by a person or an API call


def _plan_task(step: StepBase, index: int, flow: Flow, scopes: dict[str, dict[str, Any]]) -> TaskPlan:
    options = step.step_options
    arguments = step.operator_arguments(resolve(options, scopes))
    # Arguments that use ${config.*} are re-resolved at run time from the run's params, so a manual run
    # with edited params uses them; the values resolved here are the customer's (scheduled runs). They are
    # keyed by operator argument: an option grouped into one argument (a table target) re-resolves whole.
    config_refs: dict[str, Any] = {}
    if step.config_option_keys:
        plan_scopes = {scope: values for scope, values in scopes.items() if scope != "config"}
        grouped = step.operator_arguments(options)
        config_refs = {k: resolve(v, plan_scopes) for k, v in grouped.items() if has_reference(v, "config")}
    step.bind_connections(arguments, scopes["connections"])
    kind: str = step.kind  # type: ignore[attr-defined]
    arguments["input_task_id"] = flow.steps[index - 1].id if index else None
    if config_refs:
        arguments["config_refs"] = config_refs
    return TaskPlan(
        task_id=step.id,
        kind=kind,
        operator=step.operator,
        arguments=arguments,
        retries=step.retries,
        doc_md=step.description,
    )


def _params(template: IntegrationTemplate, config: dict[str, Any], flow: Flow) -> dict[str, dict[str, Any]]:
    """The customer's effective config as typed params: a validated form for manual runs in the UI."""
    params: dict[str, dict[str, Any]] = {}
    for key, var in template.config.items():
        spec: dict[str, Any] = {
            "default": config.get(key),
            "type": JSON_TYPES[var.type],
            "$schema": PARAM_SCHEMA_DIALECT,
        }
        if var.description:
            spec["description"] = var.description
        constraints = {
            "enum": var.choices,
            "minimum": var.minimum,
            "maximum": var.maximum,
            "pattern": var.pattern,
        }
        spec.update({name: value for name, value in constraints.items() if value is not None})
        params[key] = spec
    if any(step.kind == "deliver" for step in flow.steps):  # type: ignore[attr-defined]
        # An explicit choice in the trigger form: send again what the delivery ledger says was sent.
        params["force_resend"] = {
            "default": False,
            "type": "boolean",
            "$schema": PARAM_SCHEMA_DIALECT,
            "description": "Deliver again even if this period was delivered before.",
        }
    return params


def _doc_md(
    instance: CustomerInstance,
    integration: str,
    template: IntegrationTemplate,
    flow_name: str,
    flow: Flow,
    pattern: Pattern,
    schedule: str | timedelta | None,
    config: dict[str, Any],
    settings: CustomerIntegration,
) -> str:
    customer = instance.customer
    lines = [
        f"# {customer.name} · {integration} · {flow_name}",
        "",
        template.description,
        "",
        flow.description,
        "",
        f"- **Customer**: `{customer.id}` (config: `{instance.file}`)",
        f"- **Integration**: `{integration}` version {template.version}",
        f"- **Pattern**: {pattern.value}",
        f"- **Trigger**: {flow.trigger.type}" + (f" `{schedule}`" if schedule is not None else ""),
        "",
        "## Steps",
        *(
            f"{i}. `{s.id}` ({s.kind}){' - ' + s.description if s.description else ''}"
            for i, s in enumerate(flow.steps, 1)
        ),  # type: ignore[attr-defined]
    ]
    if config:
        lines += ["", "## Config", "", "| variable | value |", "| --- | --- |"]
        lines += [f"| `{k}` | `{v!r}` |" for k, v in sorted(config.items())]
    if settings.connections:
        lines += ["", "## Connections", "", "| slot | Airflow connection id |", "| --- | --- |"]
        lines += [f"| `{k}` | `{v}` |" for k, v in sorted(settings.connections.items())]
    return "\n".join(lines)
