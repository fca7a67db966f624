"""Rules that span fields or files, each reported with the exact key path it is about.

Pure functions over already-parsed models: no I/O, so the CLI and the DAG factory give the same verdict.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from b2b_integrations.config.base import JINJA_REFUSED, jinja_markers_in
from b2b_integrations.config.models import CONN_ID_PATTERN, CustomerIntegration, IntegrationTemplate
from b2b_integrations.config.references import CUSTOMER_FIELDS, iter_references, resolve
from b2b_integrations.config.steps import StepBase, TransformStep
from b2b_integrations.config.triggers import (
    AssetTrigger,
    PubSubTrigger,
    ScheduleTrigger,
    SyncTrigger,
    WebhookTrigger,
)
from b2b_integrations.config.variables import check_value
from b2b_integrations.config.yaml_source import KeyPath

DEFAULT_TRANSFORM_PREFIXES = ("b2b_integrations.transforms.", "b2b_transforms.")
# Step kinds whose operator reads a synchronous call's request body when it is a flow's first step.
SYNC_INPUT_KINDS = frozenset({"http_call"})


@dataclass(frozen=True)
class Finding:
    """One rule violation; warnings do not stop DAGs from being built."""

    path: KeyPath
    message: str
    warning: bool = False


def check_template(template: IntegrationTemplate, transform_prefixes: Iterable[str]) -> list[Finding]:
    """Check references inside one integration template."""
    prefixes = tuple(transform_prefixes)
    findings: list[Finding] = []
    for flow_name, flow in template.flows.items():
        flow_path: KeyPath = ("flows", flow_name)
        findings.extend(_check_trigger(template, flow_name, flow_path))
        seen_ids: set[str] = set()
        for index, step in enumerate(flow.steps):
            step_path: KeyPath = (*flow_path, "steps", index)
            if step.id in seen_ids:
                findings.append(
                    Finding((*step_path, "id"), f"duplicate step id {step.id!r} in flow {flow_name!r}")
                )
            seen_ids.add(step.id)
            findings.extend(_check_step(template, step, step_path, prefixes))
    findings.extend(_asset_cycles(template))
    if not findings:
        # With the declared defaults, where every referenced variable has one: a mistake in the template
        # itself (an unknown option beside a ${...}) is then reported once, on the template.
        defaults = {key: var.default for key, var in template.config.items() if var.default is not None}
        slots = {slot: slot for slot in template.connections}
        findings.extend(_check_resolved_steps(template, defaults, slots, (), set()))
    return findings


def _check_trigger(template: IntegrationTemplate, flow_name: str, flow_path: KeyPath) -> Iterator[Finding]:
    trigger = template.flows[flow_name].trigger
    path: KeyPath = (*flow_path, "trigger")
    slot_fields = {WebhookTrigger: "secret_connection", PubSubTrigger: "connection"}
    slot_field = slot_fields.get(type(trigger))  # type: ignore[call-overload]
    if slot_field and (slot := getattr(trigger, slot_field)) and slot not in template.connections:
        yield Finding((*path, slot_field), _unknown("connection slot", slot, template.connections))
    if isinstance(trigger, AssetTrigger):
        if trigger.flow == flow_name:
            yield Finding((*path, "flow"), "a flow cannot be triggered by its own output")
        elif trigger.flow not in template.flows:
            yield Finding((*path, "flow"), _unknown("flow", trigger.flow, template.flows))
    if isinstance(trigger, SyncTrigger):
        yield from _check_sync(template, flow_name, trigger, path)
    if isinstance(trigger, PubSubTrigger):
        yield from _check_references(template, {"channel": trigger.channel}, path)


def _check_sync(
    template: IntegrationTemplate, flow_name: str, trigger: SyncTrigger, path: KeyPath
) -> Iterator[Finding]:
    steps = template.flows[flow_name].steps
    step_ids = [s.id for s in steps]
    if trigger.result_step and trigger.result_step not in step_ids:
        yield Finding((*path, "result_step"), _unknown("step", trigger.result_step, step_ids))
    slot = trigger.callback_secret_connection
    if slot and slot not in template.connections:
        yield Finding(
            (*path, "callback_secret_connection"), _unknown("connection slot", slot, template.connections)
        )
    if trigger.input_schema is not None:
        import jsonschema

        validator = jsonschema.validators.validator_for(
            trigger.input_schema, default=jsonschema.Draft202012Validator
        )
        try:
            validator.check_schema(trigger.input_schema)
        except jsonschema.SchemaError as e:
            where = "/".join(str(p) for p in e.absolute_path)
            yield Finding(
                (*path, "input_schema"),
                f"not a valid JSON Schema{f' at {where}' if where else ''}: {e.message}",
            )
    first_kind = steps[0].kind  # type: ignore[attr-defined]
    if first_kind not in SYNC_INPUT_KINDS:
        yield Finding(
            (*path[:-1], "steps", 0, "kind"),
            f"the first step of a sync flow gets the request body only if its kind is one of "
            f"{sorted(SYNC_INPUT_KINDS)}; a {first_kind!r} step gets no input",
            warning=True,
        )


def _check_step(
    template: IntegrationTemplate, step: StepBase, path: KeyPath, prefixes: tuple[str, ...]
) -> Iterator[Finding]:
    for where, slot in step.connection_slots():
        if slot not in template.connections:
            yield Finding((*path, *where), _unknown("connection slot", slot, template.connections))
    yield from _check_references(template, step.step_options, path)
    # Templates may name Python callables, only from allow-listed packages (customers never can).
    field, dotted = (
        ("callable", step.callable)
        if isinstance(step, TransformStep)
        else ("transform", getattr(step, "transform", None))
    )
    if isinstance(dotted, str) and not dotted.replace(":", ".").startswith(prefixes):
        yield Finding(
            (*path, field),
            f"{field} {dotted!r} is outside the allowed packages {list(prefixes)} "
            "(set B2B_TRANSFORM_PREFIXES to allow another package)",
        )


def _check_references(
    template: IntegrationTemplate, options: dict[str, Any], path: KeyPath
) -> Iterator[Finding]:
    scopes: dict[str, Iterable[str]] = {
        "config": template.config,
        "connections": template.connections,
        "customer": CUSTOMER_FIELDS,
    }
    for ref_path, scope, name in iter_references(options):
        where = (*path, *ref_path)
        if not scope:
            yield Finding(
                where,
                f"malformed reference {name!r}: use ${{config.NAME}}, ${{customer.id}}, ${{connections.SLOT}}",
            )
        elif name not in scopes[scope]:
            yield Finding(where, _unknown(f"{scope} name in reference", name, scopes[scope]))


def _asset_cycles(template: IntegrationTemplate) -> Iterator[Finding]:
    upstream = {
        name: flow.trigger.flow
        for name, flow in template.flows.items()
        if isinstance(flow.trigger, AssetTrigger)
    }
    reported: set[str] = set()
    for start in upstream:
        chain, current = [start], upstream.get(start)
        while current is not None and current not in chain:
            chain.append(current)
            current = upstream.get(current)
        if current == start and len(chain) > 1 and not reported.intersection(chain):
            reported.update(chain)
            cycle = " -> ".join([*chain, start])
            yield Finding(("flows", start, "trigger", "flow"), f"asset triggers form a cycle: {cycle}")


def check_customer_integration(
    name: str,
    settings: CustomerIntegration,
    template: IntegrationTemplate,
    dropped_flows: frozenset[str] = frozenset(),
) -> list[Finding]:
    """Check a customer's values for one integration against the template's declarations.

    ``dropped_flows``: flows the loader left out of the template for their own problems; a customer's
    override of one is not this customer's mistake.
    """
    base: KeyPath = ("integrations", name)
    findings: list[Finding] = []
    for key, value in settings.config.items():
        path = (*base, "config", key)
        var = template.config.get(key)
        if var is None:
            findings.append(
                Finding(path, _unknown("config variable", key, template.config, f" of integration {name!r}"))
            )
            continue
        problem = check_value(var, value)
        if problem:
            findings.append(Finding(path, problem))
        findings.extend(Finding((*path, *p), JINJA_REFUSED) for p in jinja_markers_in(value))
    for key, var in template.config.items():
        if var.is_required and key not in settings.config:
            description = f" ({var.description})" if var.description else ""
            findings.append(
                Finding(
                    (*base, "config"), f"missing required value {key!r} of type {var.type.value}{description}"
                )
            )
    findings.extend(_check_connections(base, settings, template))
    findings.extend(_check_flow_overrides(base, settings, template, dropped_flows))
    if not findings:  # resolving values already reported as wrong would only repeat those problems
        config = {key: var.default for key, var in template.config.items()} | settings.config
        findings.extend(
            _check_resolved_steps(template, config, dict(settings.connections), base, set(settings.config))
        )
        findings.extend(_check_monitors(template, settings, config, base))
    return findings


def _check_monitors(
    template: IntegrationTemplate, settings: CustomerIntegration, config: dict[str, Any], base: KeyPath
) -> Iterator[Finding]:
    """The template's and the customer's ``monitors:`` merged and filled in with this customer's values
    (each level alone was checked by its model; a ``${config.*}`` only now has a value)."""
    from b2b_integrations.config.monitors import MonitorConfigError, effective

    if template.monitors is None and settings.monitors is None:
        return
    try:
        effective(template.monitors, settings.monitors, config=config)
    except MonitorConfigError as e:
        key = () if e.key == "monitors" else tuple(e.key.split("."))
        yield Finding((*base, "monitors", *key), f"with this customer's values: {e.message}")


def _check_resolved_steps(
    template: IntegrationTemplate,
    config: dict[str, Any],
    connections: dict[str, str],
    base: KeyPath,
    customer_keys: set[str],
) -> Iterator[Finding]:
    """Check the option blocks that hold ``${config.*}`` or ``${connections.*}`` once filled in.

    A step model skips its option checks while a block still holds a reference (the value is unknown), so
    here each such step is validated again with the references resolved as the planner resolves them. A
    step referencing a variable without a value is left alone (that is reported as a missing value).
    ``base`` is the customer's ``integrations.<name>`` (empty: checking the template with its defaults);
    the finding points at the customer's own value when exactly one of the step's references has one.
    """
    scopes = {"config": config, "connections": connections}
    for flow_name, flow in template.flows.items():
        for index, step in enumerate(flow.steps):
            refs = [(scope, name) for _, scope, name in iter_references(step.step_options)]
            if not any(scope in scopes for scope, _ in refs):
                continue
            if any(scope == "config" and config.get(name) is None for scope, name in refs):
                continue
            raw = step.model_dump(by_alias=True)
            try:
                type(step).model_validate(resolve(raw, scopes))
            except ValidationError as e:
                step_path: KeyPath = ("flows", flow_name, "steps", index)
                used = sorted({name for scope, name in refs if scope == "config"})
                for item in e.errors(include_url=False):
                    where = ".".join(str(part) for part in item["loc"])
                    what = item["msg"].removeprefix("Value error, ")
                    detail = f"{where}: {what}" if where else what
                    if not base:
                        yield Finding(step_path, f"with the declared defaults: {detail}")
                        continue
                    values = ", ".join(f"config.{name}={config[name]!r}" for name in used)
                    message = (
                        f"flow {flow_name!r} step {step.id!r} is invalid with this customer's values"
                        f"{f' ({values})' if values else ''}: {detail}"
                    )
                    own = [name for name in used if name in customer_keys]
                    yield Finding((*base, "config", own[0]) if len(own) == 1 else base, message)


def _check_connections(
    base: KeyPath, settings: CustomerIntegration, template: IntegrationTemplate
) -> Iterator[Finding]:
    for slot, conn_id in settings.connections.items():
        path = (*base, "connections", slot)
        if slot not in template.connections:
            yield Finding(path, _unknown("connection slot", slot, template.connections))
        elif not re.fullmatch(CONN_ID_PATTERN, conn_id):
            yield Finding(
                path, f"invalid Airflow connection id {conn_id!r}: use letters, digits, '_', '.', '-'"
            )
    for slot, declared in template.connections.items():
        if declared.required and slot not in settings.connections:
            what = f" ({declared.description})" if declared.description else ""
            yield Finding((*base, "connections"), f"missing connection id for required slot {slot!r}{what}")


def _check_flow_overrides(
    base: KeyPath, settings: CustomerIntegration, template: IntegrationTemplate, dropped_flows: frozenset[str]
) -> Iterator[Finding]:
    for flow_name, override in settings.flows.items():
        path = (*base, "flows", flow_name)
        flow = template.flows.get(flow_name)
        if flow is None and flow_name in dropped_flows:
            continue
        if flow is None:
            yield Finding(path, _unknown("flow", flow_name, template.flows))
        elif override.schedule is not None and not isinstance(flow.trigger, ScheduleTrigger):
            yield Finding(
                (*path, "schedule"),
                f"flow {flow_name!r} is triggered by {flow.trigger.type!r}, so it has no schedule to override",
            )


def _unknown(what: str, name: str, known: Iterable[str], scope: str = "") -> str:
    names = sorted(known)
    expected = f"expected one of {names}" if names else "none declared"
    return f"unknown {what} {name!r}{scope}; {expected}"
