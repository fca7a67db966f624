"""Rollouts: moving customers' instances of an integration to another template version.

:func:`plan_rollout` is pure apart from reading the include folder: per affected instance it works out the
settings on the target version (its ``upgrade`` renames and defaults applied, ``version`` pinned) and checks
the customer file with that block replaced by the same loader as ``validate`` and the instances API, so a
dry run lists every instance that would fail and why before anything changes. :func:`apply_rollout` writes
the items that passed through the instance store, each guarded by the ETag the plan read: an instance
changed since the plan is refused, not overwritten.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from b2b_integrations.config.base import IDENT_PATTERN
from b2b_integrations.config.loader import (
    CUSTOMERS_DIR,
    CustomerChecker,
    display_path,
    load_project,
    yaml_files,
)
from b2b_integrations.config.upgrade import upgraded_settings
from b2b_integrations.errors import Problem
from b2b_integrations.instances import documents
from b2b_integrations.instances.errors import InstanceError, InvalidChange, PreconditionFailed

ROLLOUT_ACTION = "rollout"


@dataclass(frozen=True)
class RolloutItem:
    """One instance a rollout would move: from which version, the settings it would get, and what stops it."""

    customer: str
    file: str
    from_version: str
    """The version it runs on now (its pin, else the current file's version)."""
    pinned: bool
    to_version: str
    etag: str
    """ETag of the settings the plan read: the write is refused if they changed since."""
    settings: dict[str, Any]
    changes: list[dict[str, Any]]
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class RolloutPlan:
    """What a rollout of ``integration`` to ``to_version`` would do; ``problems`` stop it as a whole."""

    integration: str
    to_version: str
    items: list[RolloutItem] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    """Customers already pinned to ``to_version``."""
    unreadable: list[Problem] = field(default_factory=list)
    """Customer files that cannot be parsed: whether they have the integration is unknown, so they are left
    out (and named) rather than stopping every other customer's move."""

    @property
    def ok(self) -> bool:
        return not self.problems and not self.unreadable and all(item.ok for item in self.items)


@dataclass(frozen=True)
class RolloutOutcome:
    """What happened to one item: applied (with the instance's new history version) or why not."""

    item: RolloutItem
    applied: bool
    version: int | None = None
    problems: list[Problem] = field(default_factory=list)
    reason: str = ""


class InstanceWriter(Protocol):
    """The part of ``instances.store.InstanceStore`` a rollout writes through."""

    def update(
        self, customer: str, integration: str, change: Any, *, if_match: str | None, actor: str, action: str
    ) -> Any: ...


def plan_rollout(
    include_dir: str | Path, integration: str, to_version: str, customers: Iterable[str] | None = None
) -> RolloutPlan:
    """Every instance of ``integration`` (of ``customers`` only, when given) not pinned to ``to_version``
    yet, with its settings on that version and the problems the loader finds in them; changes nothing."""
    root = Path(include_dir)
    plan = RolloutPlan(integration, str(to_version))
    templates = load_project(root, customer_filter=lambda _: False)
    target = templates.template_versions.get(integration, {}).get(plan.to_version)
    if target is None:
        known = templates.versions_of(integration)
        message = (
            f"unknown version {plan.to_version!r} of integration {integration!r}; available: {known}"
            if known
            else f"unknown integration {integration!r}; expected one of {sorted(templates.template_versions)}"
        )
        plan.problems.append(Problem(integration, "version", message))
        return plan
    current = templates.templates.get(integration)
    wanted = set(customers) if customers is not None else None
    paths = {p.stem: p for p in yaml_files(root / CUSTOMERS_DIR) if re.fullmatch(IDENT_PATTERN, p.stem)}
    for customer in sorted(wanted - set(paths)) if wanted is not None else []:
        plan.problems.append(Problem(f"customer {customer}", "", "no such customer"))
    checker = CustomerChecker(root)
    for customer, path in paths.items():
        if wanted is not None and customer not in wanted:
            continue
        item = _plan_item(checker, path, customer, integration, plan.to_version, target, current)
        if item is None:
            if wanted is not None:
                plan.problems.append(
                    Problem(
                        display_path(path, root),
                        "integrations",
                        f"customer {customer!r} has no {integration!r}",
                    )
                )
        elif isinstance(item, Problem):
            plan.unreadable.append(item)
        elif item.from_version == plan.to_version and item.pinned:
            plan.unchanged.append(customer)
        else:
            plan.items.append(item)
    return plan


def _plan_item(
    checker: CustomerChecker,
    path: Path,
    customer: str,
    integration: str,
    to_version: str,
    target: Any,
    current: Any,
) -> RolloutItem | Problem | None:
    shown = display_path(path, checker.root)
    try:
        text = path.read_text(encoding="utf-8")
        document = documents.parse(text)
    except Exception as e:  # ruamel's own error tree, ValueError, OSError, UnicodeDecodeError
        return Problem(
            shown, "", f"cannot be read ({type(e).__name__}); not part of this rollout until fixed"
        )
    before = documents.integration_block(document, integration)
    if before is None:
        return None
    pin = before.get("version")
    pinned = pin is not None
    from_version = str(pin) if pinned else (current.version if current is not None else "?")
    if pinned and from_version == to_version:
        return RolloutItem(
            customer, shown, from_version, True, to_version, documents.etag(before), before, []
        )
    after = upgraded_settings(target, before, to_version, apply_upgrade=from_version != to_version)
    candidate = documents.dump(documents.with_integration(document, integration, after))
    return RolloutItem(
        customer=customer,
        file=shown,
        from_version=from_version,
        pinned=pinned,
        to_version=to_version,
        etag=documents.etag(before),
        settings=after,
        changes=documents.changes(before, after),
        problems=_blocking(checker, customer, integration, text, candidate),
    )


def _blocking(
    checker: CustomerChecker, customer: str, integration: str, text: str, candidate: str
) -> list[Problem]:
    """The candidate file's problems that the rollout causes or that are about this integration (a problem
    another integration of the customer already had is not the rollout's to solve; the store ignores it
    the same way)."""
    found = checker.check(customer, candidate)
    if not found:
        return []
    already = {(p.key_path, p.message) for p in checker.check(customer, text)}
    scope = f"integrations.{integration}"
    return [
        p
        for p in found
        if (p.key_path, p.message) not in already
        or p.key_path == scope
        or p.key_path.startswith((scope + ".", scope + "["))
    ]


def apply_rollout(store: InstanceWriter, plan: RolloutPlan, actor: str) -> list[RolloutOutcome]:
    """Write the plan's ok items through the instance store; items with problems are reported, not written.

    Each write carries the ETag the plan read, so an instance edited since the plan is refused (plan
    again); the store checks the file once more with the loader before writing, so nothing invalid lands.
    """
    outcomes = []
    for item in plan.items:
        if not item.ok:
            outcomes.append(RolloutOutcome(item, False, problems=item.problems, reason="would fail"))
            continue
        try:
            record = store.update(
                item.customer,
                plan.integration,
                change=lambda _settings, new=item.settings: new,
                if_match=item.etag,
                actor=actor,
                action=ROLLOUT_ACTION,
            )
        except PreconditionFailed:
            outcomes.append(
                RolloutOutcome(item, False, reason="the instance changed since the plan was made; plan again")
            )
        except InvalidChange as e:
            outcomes.append(RolloutOutcome(item, False, problems=e.problems, reason="refused by the loader"))
        except InstanceError as e:
            outcomes.append(RolloutOutcome(item, False, reason=str(e)))
        else:
            outcomes.append(RolloutOutcome(item, True, version=getattr(record, "version", None)))
    return outcomes
