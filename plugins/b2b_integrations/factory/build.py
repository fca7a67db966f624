"""Plan -> Airflow DAG. The only place that instantiates operators."""

from __future__ import annotations

import importlib
from functools import cache
from typing import TYPE_CHECKING, Any

from airflow.sdk import DAG, Asset, Param

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator

    from b2b_integrations.factory.plan import AssetRef, DagPlan, PubSubWatch, SyncPlan

# A fixed start date keeps DAG definitions stable between parses; catchup is off unless a template asks.
START_DATE_ISO = "2025-01-01T00:00:00+00:00"


PUBSUB_POLL_SECONDS = 0.5  # the redis trigger sleeps this long whenever the channel has nothing


@cache
def operator_class(dotted_path: str) -> type[BaseOperator]:
    module_name, _, class_name = dotted_path.rpartition(".")
    return getattr(importlib.import_module(module_name), class_name)


@cache
def _start_date() -> Any:
    from datetime import datetime

    return datetime.fromisoformat(START_DATE_ISO)


def _asset(ref: AssetRef) -> Asset:
    if ref.watch is None:
        return Asset(name=ref.name, uri=ref.uri)
    # A pub/sub inbox: the triggerer listens on the channel and turns each message into an asset event.
    from airflow.providers.common.messaging.triggers.msg_queue import MessageQueueTrigger
    from airflow.sdk import AssetWatcher

    watch = ref.watch
    trigger: Any
    if watch.broker == "rabbitmq":
        trigger = _amqp_trigger(watch)
    else:
        trigger = MessageQueueTrigger(
            scheme="redis+pubsub",
            channels=[watch.channel],
            redis_conn_id=watch.conn_id,
            poll_interval=PUBSUB_POLL_SECONDS,
        )
    return Asset(
        name=ref.name, uri=ref.uri, watchers=[AssetWatcher(name=f"{ref.name}.pubsub", trigger=trigger)]
    )


def _amqp_trigger(watch: PubSubWatch) -> Any:
    """common-messaging's ``MessageQueueTrigger`` with this package's ``amqp`` queue provider (registered by
    the package's provider entry point); where the package was copied rather than installed, the provider
    is unknown and our trigger is used directly. Either way the triggerer runs the same acking trigger."""
    from airflow.providers.common.messaging.triggers.msg_queue import (
        MESSAGE_QUEUE_PROVIDERS,
        MessageQueueTrigger,
    )

    from b2b_integrations.triggers.amqp import AMQP_SCHEME, AmqpMessageTrigger

    kwargs: dict[str, Any] = {"queue_name": watch.channel, "amqp_conn_id": watch.conn_id}
    if watch.prefetch:
        kwargs["prefetch_count"] = watch.prefetch
    if watch.batch_size and watch.batch_size > 1:
        kwargs["batch_size"] = watch.batch_size
        if watch.batch_wait_seconds is not None:
            kwargs["batch_wait_seconds"] = watch.batch_wait_seconds
    if any(provider.scheme_matches(AMQP_SCHEME) for provider in MESSAGE_QUEUE_PROVIDERS):
        return MessageQueueTrigger(scheme=AMQP_SCHEME, **kwargs)
    return AmqpMessageTrigger(**kwargs)


def _alerts(plan: DagPlan) -> Any:
    # Always attached: a customer without targets still alerts the operator's defaults, read when sent.
    from b2b_integrations.alerts import failure_callback

    return failure_callback(
        plan.alerts, customer_id=plan.customer_id, integration=plan.integration, flow=plan.flow
    )


def _share(plan: DagPlan) -> dict[str, Any]:
    """The customer's pool and weight, only when set: unset, the serialized DAG stays as it was."""
    share: dict[str, Any] = {}
    if plan.pool is not None:
        share["pool"] = plan.pool
    if plan.priority_weight is not None:
        share["priority_weight"] = plan.priority_weight
    return share


def build_dag(plan: DagPlan, auto_register: bool = True) -> DAG:
    """Create the DAG and its tasks for one plan; tasks run in the order of the flow's steps.

    ``auto_register=False`` builds it only to see that it builds: a DAG made in a ``with`` block is
    otherwise collected by the DagBag of whichever DAG file is being parsed."""
    schedule: Any = _asset(plan.schedule_asset) if plan.schedule_asset is not None else plan.schedule
    dag = DAG(
        dag_id=plan.dag_id,
        description=plan.description,
        doc_md=plan.doc_md,
        schedule=schedule,
        start_date=_start_date(),
        catchup=plan.catchup,
        max_active_runs=plan.max_active_runs,
        tags=list(plan.tags),
        default_args={**plan.default_args, **_share(plan), "on_failure_callback": _alerts(plan)},
        params={name: Param(**spec) for name, spec in plan.params.items()},
        auto_register=auto_register,
        **(
            {}
            if plan.paused_upon_creation is None
            else {"is_paused_upon_creation": plan.paused_upon_creation}
        ),
    )
    previous = None
    # Event-driven flows: the first step reads the events queued on the inbox since the last run that
    # finished; the last step, once its work is done, moves that position (see StepOperator).
    inbox = plan.inbox
    last = len(plan.tasks) - 1
    with dag:
        for index, task in enumerate(plan.tasks):
            kwargs: dict[str, Any] = dict(task.arguments)
            if task.retries is not None:
                kwargs["retries"] = task.retries
            if task.doc_md:
                kwargs["doc_md"] = task.doc_md
            if index == last and plan.outlet_asset is not None:
                kwargs["outlets"] = [_asset(plan.outlet_asset)]
            if inbox is not None and index in (0, last):
                kwargs["inlets"] = [_asset(inbox)]
                kwargs["event_inbox"] = inbox.uri
                if index == last:
                    kwargs["event_cursor_from"] = plan.tasks[0].task_id
            operator = operator_class(task.operator)(task_id=task.task_id, **kwargs)
            if previous is not None:
                previous >> operator
            previous = operator
        if plan.sync is not None:
            _add_sync_tasks(dag, plan.sync, previous)
    return dag


def _add_sync_tasks(dag: DAG, sync: SyncPlan, last_step: BaseOperator | None) -> None:
    """The callback task after the steps, and the result step marked as the DAG's result."""
    # Airflow's own GET .../dagRuns/{run}/wait returns the XComs of tasks marked as the DAG's result.
    dag.task_dict[sync.result_task_id].returns_dag_result = True
    spec = sync.callback
    callback = operator_class(spec.operator)(task_id=spec.task_id, doc_md=spec.doc_md, **spec.arguments)
    if last_step is not None:
        last_step >> callback
    # A teardown runs once the steps are done whatever their outcome, and the run's state is decided by
    # the steps alone: a failed step still fails the run, a failed callback does not.
    callback.as_teardown()
