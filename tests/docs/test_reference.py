"""docs/reference/ is what scripts/gen_reference.py writes from the config models today, and names every
step kind, trigger, delivery target and option of them, so no documented option list can drift."""

from __future__ import annotations

import importlib.util
import re
import sys
import typing

import pytest
from pydantic import BaseModel

from b2b_integrations.config.models import AppSettings, Customer, IntegrationTemplate
from b2b_integrations.config.steps import STEP_MODELS
from b2b_integrations.config.triggers import Trigger
from helpers import REPO

REFERENCE = REPO / "docs" / "reference"


def _generator():  # noqa: ANN202
    spec = importlib.util.spec_from_file_location("gen_reference", REPO / "scripts" / "gen_reference.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gen_reference"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_committed_reference_is_what_the_models_generate() -> None:
    files = _generator().render_all()
    committed = {p.name: p.read_text(encoding="utf-8") for p in REFERENCE.glob("*.md")}
    stale = sorted(name for name in files.keys() | committed.keys() if files.get(name) != committed.get(name))
    assert stale == [], f"docs/reference/{stale} out of date: run .venv/bin/python scripts/gen_reference.py"


def _sections() -> dict[str, str]:
    """Model name -> its section's text, over every reference page."""
    sections = {}
    for page in REFERENCE.glob("*.md"):
        for match in re.finditer(r"^## [^\n]*\{#(\w+)\}\n(.*?)(?=^## |\Z)", page.read_text(), re.S | re.M):
            sections[match.group(1)] = match.group(2)
    return sections


def _models(root: type[BaseModel]) -> set[type[BaseModel]]:
    """Every model a root holds, at any depth (options of options, union members, list items)."""
    found: set[type[BaseModel]] = set()

    def walk(annotation: object) -> None:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if annotation not in found:
                found.add(annotation)
                for info in annotation.model_fields.values():
                    walk(info.annotation)
            return
        for arg in typing.get_args(annotation):
            walk(arg)

    walk(root)
    return found


MODELS = sorted(
    set().union(*(_models(m) for m in (IntegrationTemplate, Customer, AppSettings))), key=lambda m: m.__name__
)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_every_option_of_every_model_has_a_row(model: type[BaseModel]) -> None:
    section = _sections().get(model.__name__.lower())
    assert section is not None, f"{model.__name__} has no section in docs/reference/"
    for name, info in model.model_fields.items():
        option = info.alias or name
        assert re.search(rf"^\| `{re.escape(option)}` \|", section, re.M), f"{model.__name__}.{option}"


def test_every_step_kind_and_trigger_type_is_a_heading() -> None:
    steps = (REFERENCE / "steps.md").read_text()
    triggers = (REFERENCE / "triggers.md").read_text()
    for model in STEP_MODELS:
        kind = typing.get_args(model.model_fields["kind"].annotation)[0]
        assert f"## `{kind}` {{#{model.__name__.lower()}}}" in steps
    for model in typing.get_args(typing.get_args(Trigger)[0]):
        kind = typing.get_args(model.model_fields["type"].annotation)[0]
        assert f"## `{kind}` {{#{model.__name__.lower()}}}" in triggers
