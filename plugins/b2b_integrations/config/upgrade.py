"""A template version's ``upgrade`` block: checking it, and carrying an instance's settings over (pure).

A rollout moves an instance from whatever version it is on to a target version; the target's ``upgrade``
says how the settings carry over: renamed config variables and connection slots keep their values under
the new name, and ``defaults`` fill variables the instance has no value for. Renames are not chained
through intermediate versions (versions are free-form text, so there is no order to chain by): a version
that should accept instances of several older versions lists the old names of each.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

from b2b_integrations.config.models import IntegrationTemplate
from b2b_integrations.config.validate import Finding
from b2b_integrations.config.variables import check_value


def check_upgrade(template: IntegrationTemplate) -> list[Finding]:
    """Renames must point at declared variables and slots, defaults must fit their variables."""
    upgrade = template.upgrade
    if upgrade is None:
        return []
    findings: list[Finding] = []
    for scope, declared, what in (
        ("config", template.config, "config variable"),
        ("connections", template.connections, "connection slot"),
    ):
        renames: dict[str, str] = getattr(upgrade.renames, scope)
        findings.extend(_check_renames(scope, renames, set(declared), what))
    for key, value in upgrade.defaults.items():
        path = ("upgrade", "defaults", key)
        var = template.config.get(key)
        if var is None:
            findings.append(
                Finding(path, f"unknown config variable {key!r}; expected one of {sorted(template.config)}")
            )
        elif (problem := check_value(var, value)) is not None:
            findings.append(Finding(path, problem))
    return findings


def _check_renames(scope: str, renames: dict[str, str], declared: set[str], what: str) -> Iterator[Finding]:
    targets: dict[str, str] = {}
    for old, new in renames.items():
        path = ("upgrade", "renames", scope, old)
        if new not in declared:
            yield Finding(path, f"renames to unknown {what} {new!r}; expected one of {sorted(declared)}")
        if old in declared:
            yield Finding(
                path, f"{old!r} is still a {what} of this version; a rename would move its value away"
            )
        if new in targets:
            yield Finding(
                path, f"{targets[new]!r} is renamed to {new!r} too; which value would win is unclear"
            )
        targets[new] = old


def upgraded_settings(
    template: IntegrationTemplate, settings: dict[str, Any], to_version: str, apply_upgrade: bool = True
) -> dict[str, Any]:
    """An instance's settings (the plain block of its customer file) moved to ``template`` = ``to_version``.

    ``apply_upgrade=False`` only pins the version (an unpinned instance already on it). A renamed value
    whose new name already has one is left under its old name: the check then reports the old name as
    unknown instead of one of the two values being dropped without a word.
    """
    after = copy.deepcopy(settings)
    upgrade = template.upgrade
    if apply_upgrade and upgrade is not None:
        for scope in ("config", "connections"):
            values = after.get(scope)
            renames: dict[str, str] = getattr(upgrade.renames, scope)
            if isinstance(values, dict) and renames:
                after[scope] = {
                    (renames[key] if key in renames and renames[key] not in values else key): value
                    for key, value in values.items()
                }
        config = after.get("config")
        missing = {
            k: v for k, v in upgrade.defaults.items() if not isinstance(config, dict) or k not in config
        }
        if missing and (config is None or isinstance(config, dict)):
            after["config"] = {**(config or {}), **copy.deepcopy(missing)}
    return {"version": to_version, **{k: v for k, v in after.items() if k != "version"}}
