"""Load every template and customer file under an include folder, collecting every problem.

Each file is loaded in isolation: a broken file never affects another file's customers. A file with a
problem is replaced by its last valid copy when one was kept (``config/last_valid.py``), so its customers
keep running on what worked while the problem is reported. Without a copy, a customer's integrations are
checked one by one, so a typo in one integration's settings does not stop that customer's other
integrations.

A template's other versions live side by side in ``integrations/versions/<name>/<version>.yaml`` (full
templates, checked like the current file); a customer integration pinned to a ``version`` is checked
against, and built from, that version.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from b2b_integrations.config.base import IDENT_PATTERN
from b2b_integrations.config.last_valid import LastValidStore
from b2b_integrations.config.models import (
    VERSION_PATTERN,
    AppSettings,
    Customer,
    CustomerIntegration,
    IntegrationTemplate,
)
from b2b_integrations.config.upgrade import check_upgrade
from b2b_integrations.config.validate import (
    DEFAULT_TRANSFORM_PREFIXES,
    Finding,
    check_customer_integration,
    check_template,
)
from b2b_integrations.config.yaml_source import (
    KeyPath,
    YamlDocument,
    YamlSyntaxError,
    format_key_path,
    load_yaml,
)
from b2b_integrations.errors import Problem

TEMPLATES_DIR = "integrations"
CUSTOMERS_DIR = "customers"
VERSIONS_DIR = "versions"  # integrations/versions/<name>/<version>.yaml: a template's other versions
VERSIONS_KIND = f"{TEMPLATES_DIR}/{VERSIONS_DIR}"
"""``valid_files`` kind (and last valid folder) of version files, whose name there is ``<name>/<version>``."""
APP_FILE = "app.yaml"  # settings of our own app (optional)
_YAML_SUFFIXES = (".yaml", ".yml")


@dataclass
class CustomerInstance:
    """A valid customer with the integrations that passed every check."""

    customer: Customer
    file: str
    integrations: dict[str, CustomerIntegration]


@dataclass
class Project:
    """Everything loaded from one include folder."""

    include_dir: Path
    templates: dict[str, IntegrationTemplate] = field(default_factory=dict)
    customers: list[CustomerInstance] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    files_checked: int = 0
    app: AppSettings | None = None
    valid_files: list[tuple[str, str, Path]] = field(default_factory=list)
    """(kind, name, path) of every template and customer file that loaded without a problem."""
    on_last_valid: dict[str, str] = field(default_factory=dict)
    """Displayed file -> description of the last valid copy now used in its place."""
    template_versions: dict[str, dict[str, IntegrationTemplate]] = field(default_factory=dict)
    """Integration name -> version -> template: every valid version, the current one included."""
    dropped_flows: dict[tuple[str, str], frozenset[str]] = field(default_factory=dict)
    """(integration, version) -> flows left out of a template that has problems only in those flows (and no
    last valid copy): its other flows are built."""

    def template_for(
        self, name: str, settings: CustomerIntegration | None = None
    ) -> IntegrationTemplate | None:
        """The template a customer integration runs on: its pinned version, else the current file."""
        current = self.templates.get(name)
        pinned = settings.version if settings is not None else None
        if pinned is None or (current is not None and current.version == pinned):
            return current
        return self.template_versions.get(name, {}).get(pinned)

    def versions_of(self, name: str) -> list[str]:
        """The versions of an integration that load, oldest first (numbers compared as numbers)."""
        return sorted(self.template_versions.get(name, {}), key=version_sort_key)


def version_sort_key(version: str) -> tuple[tuple[int, int | str], ...]:
    """``1.10`` after ``1.9``: digit runs compare as numbers, other text as text."""
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in re.findall(r"\d+|[^\d.]+", version))


def version_files(root: Path, names: Iterable[str] | None = None) -> list[Path]:
    """``integrations/versions/<name>/*.yaml`` of every integration (or of ``names``), as loads list them."""
    folder = root / TEMPLATES_DIR / VERSIONS_DIR
    if names is None:
        found = sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
        names = [p.name for p in found if not p.name.startswith(".")]
    return [path for name in sorted(set(names)) for path in yaml_files(folder / name)]


def transform_prefixes_from_env() -> tuple[str, ...]:
    """Allowed packages for transform callables: B2B_TRANSFORM_PREFIXES (comma separated) or the default."""
    raw = os.environ.get("B2B_TRANSFORM_PREFIXES", "")
    extra = tuple(p.strip().rstrip(".") + "." for p in raw.split(",") if p.strip())
    return extra or DEFAULT_TRANSFORM_PREFIXES


def load_project(
    include_dir: str | os.PathLike[str],
    transform_prefixes: Iterable[str] | None = None,
    last_valid: LastValidStore | None = None,
    customer_filter: Callable[[str], bool] | None = None,
) -> Project:
    """Load and check ``include_dir/integrations/*.yaml`` and ``include_dir/customers/*.yaml``.

    With ``last_valid``, a file with a problem is replaced by its last valid copy (if that copy still
    loads cleanly); the file's problems are reported all the same, with a note saying so.
    ``customer_filter`` (customer file name -> bool) loads only some customers (a shard of them); every
    template is still loaded, so what a loaded customer gets does not depend on the filter.
    """
    root = Path(include_dir)
    project = Project(include_dir=root)
    if not root.is_dir():
        project.problems.append(Problem(str(root), "", "include folder does not exist"))
        return project
    customers = yaml_files(root / CUSTOMERS_DIR)
    if customer_filter is not None:
        customers = [path for path in customers if customer_filter(path.stem)]
    templates = yaml_files(root / TEMPLATES_DIR)
    _load_files(project, templates, version_files(root), customers, _prefixes(transform_prefixes), last_valid)
    _load_app(project)
    return project


def load_customer_project(
    include_dir: str | os.PathLike[str],
    customer_id: str,
    transform_prefixes: Iterable[str] | None = None,
    last_valid: LastValidStore | None = None,
) -> Project:
    """What :func:`load_project` gives for one customer, reading only that customer's file (and its last
    valid copy) and the templates they name: what a task process needs, at a cost independent of how many
    customers there are.

    The customer's DAGs come out identical to those of a full load: a customer file is checked only
    against the templates its integrations name, so loading just those (from the current file *and* from
    its last valid copy, which may name others) decides its problems, its fallback and its integrations
    the same way. Only the list of known templates in an "unknown integration" message is shorter.
    """
    root = Path(include_dir)
    project = Project(include_dir=root)
    if not re.fullmatch(IDENT_PATTERN, customer_id) or not root.is_dir():
        return project
    customers = _named_files(root / CUSTOMERS_DIR, [customer_id])
    names: set[str] = set()
    for path in customers:
        names |= _integration_names(path)
        copy = last_valid.get(CUSTOMERS_DIR, path.stem) if last_valid is not None else None
        if copy is not None:
            names |= _integration_names(copy.path)
    templates = _named_files(root / TEMPLATES_DIR, names)
    versions = version_files(root, names)
    _load_files(project, templates, versions, customers, _prefixes(transform_prefixes), last_valid)
    return project


def check_customer_text(
    include_dir: str | os.PathLike[str],
    customer_id: str,
    text: str,
    transform_prefixes: Iterable[str] | None = None,
) -> list[Problem]:
    """The problems ``text`` would have as ``customers/<customer_id>.yaml``, found by the same loading
    routine as the CLI and the factory (same messages, same key paths), without touching the include folder.

    What a write through the instances API is checked with before anything is written. Only the customer
    file's own problems are returned (a broken template shows there as "integration template ... is invalid").
    """
    return CustomerChecker(include_dir, transform_prefixes).check(customer_id, text)


class CustomerChecker:
    """:func:`check_customer_text` for many candidate files, reading the templates once (a rollout checks
    every instance of an integration; reading every template per instance cost most of the time)."""

    def __init__(
        self, include_dir: str | os.PathLike[str], transform_prefixes: Iterable[str] | None = None
    ) -> None:
        self.root = Path(include_dir)
        self._templates = Project(include_dir=self.root)
        templates, versions = yaml_files(self.root / TEMPLATES_DIR), version_files(self.root)
        self._broken = _load_templates(
            self._templates, templates, versions, _prefixes(transform_prefixes), None
        )

    def check(self, customer_id: str, text: str) -> list[Problem]:
        shown = display_path(self.root / CUSTOMERS_DIR / f"{customer_id}.yaml", self.root)
        if not re.fullmatch(IDENT_PATTERN, customer_id):
            return [Problem(shown, "id", f"invalid customer id {customer_id!r}: use lower_snake_case")]
        loaded = self._templates
        project = Project(
            include_dir=self.root, templates=loaded.templates, template_versions=loaded.template_versions
        )
        with tempfile.TemporaryDirectory(prefix="b2b-candidate-") as tmp:
            candidate = Path(tmp) / f"{customer_id}.yaml"
            candidate.write_text(text, encoding="utf-8")
            _load_customers(project, [candidate], self._broken, None)
            written_as = display_path(candidate, self.root)
            return [replace(p, file=shown) for p in project.problems if p.file == written_as]


def load_app_settings(include_dir: str | os.PathLike[str]) -> Project:
    """Only ``app.yaml`` (our app's own DAGs), for a task of one of those DAGs."""
    project = Project(include_dir=Path(include_dir))
    _load_app(project)
    return project


def _prefixes(transform_prefixes: Iterable[str] | None) -> tuple[str, ...]:
    return tuple(transform_prefixes) if transform_prefixes is not None else transform_prefixes_from_env()


def _named_files(folder: Path, names: Iterable[str]) -> list[Path]:
    """The files ``folder/<name>.yaml|.yml`` that exist, in the order :func:`yaml_files` lists them."""
    found = (folder / f"{name}{suffix}" for name in names for suffix in _YAML_SUFFIXES)
    return sorted(path for path in found if not path.name.startswith(".") and path.is_file())


def _integration_names(path: Path) -> set[str]:
    """The integration keys a customer file names, read leniently: a file that cannot be read names none
    (the full load reports it; here it only decides which templates to read)."""
    try:
        data = yaml.load(path.read_bytes(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except (OSError, yaml.YAMLError, ValueError):
        return set()
    integrations = data.get("integrations") if isinstance(data, dict) else None
    if not isinstance(integrations, dict):
        return set()
    return {name for name in integrations if isinstance(name, str) and re.fullmatch(IDENT_PATTERN, name)}


def _load_files(
    project: Project,
    template_paths: list[Path],
    version_paths: list[Path],
    customer_paths: list[Path],
    prefixes: tuple[str, ...],
    last_valid: LastValidStore | None,
) -> None:
    """The one loading routine behind every entry point: templates (current files, then the versions kept
    beside them), then customers against them."""
    broken_templates = _load_templates(project, template_paths, version_paths, prefixes, last_valid)
    _load_customers(project, customer_paths, broken_templates, last_valid)


def _load_templates(
    project: Project,
    template_paths: list[Path],
    version_paths: list[Path],
    prefixes: tuple[str, ...],
    last_valid: LastValidStore | None,
) -> dict[str, str]:
    """Templates into ``project``; returns the broken ones without a usable copy (name or ``name/version``
    -> displayed file), which the customers' messages name."""
    root = project.include_dir
    broken_templates: dict[str, str] = {}
    for path in template_paths:
        project.files_checked += 1
        file = display_path(path, root)
        before = len(project.problems)
        template = _load_template(path, file, prefixes, project)
        if template is not None and len(project.problems) == before:
            project.templates[template.name] = template
            project.valid_files.append((TEMPLATES_DIR, path.stem, path))
            continue
        fallback = _from_last_valid(
            last_valid, TEMPLATES_DIR, path.stem, file, project,
            lambda copy, shown, scratch: _load_template(copy, shown, prefixes, scratch),
        )  # fmt: skip
        if fallback is not None:
            project.templates[fallback.name] = fallback
        elif template is not None:  # only some flows were broken: the others are built
            project.templates[template.name] = template
        else:
            broken_templates[path.stem] = file
    for name, template in project.templates.items():
        project.template_versions.setdefault(name, {})[template.version] = template
    for path in version_paths:
        project.files_checked += 1
        file = display_path(path, root)
        name, version = path.parent.name, path.stem
        before = len(project.problems)
        template = _load_template(path, file, prefixes, project, version_of=name)
        if template is not None and len(project.problems) == before:
            project.template_versions.setdefault(name, {})[version] = template
            project.valid_files.append((VERSIONS_KIND, f"{name}/{version}", path))
            continue
        fallback = _from_last_valid(
            last_valid, VERSIONS_KIND, f"{name}/{version}", file, project,
            lambda copy, shown, scratch, of=name: _load_template(copy, shown, prefixes, scratch, version_of=of),
        )  # fmt: skip
        if fallback is not None:
            project.template_versions.setdefault(name, {})[version] = fallback
        elif template is not None:
            project.template_versions.setdefault(name, {})[version] = template
        else:
            broken_templates[f"{name}/{version}"] = file
    return broken_templates


def _load_customers(
    project: Project,
    customer_paths: list[Path],
    broken_templates: dict[str, str],
    last_valid: LastValidStore | None,
) -> None:
    root = project.include_dir
    for path in customer_paths:
        project.files_checked += 1
        file = display_path(path, root)
        before = len(project.problems)
        instance = _load_customer(path, file, project, broken_templates)
        if instance is not None and len(project.problems) == before:
            project.customers.append(instance)
            project.valid_files.append((CUSTOMERS_DIR, path.stem, path))
            continue
        fallback = _from_last_valid(
            last_valid, CUSTOMERS_DIR, path.stem, file, project,
            lambda copy, shown, scratch: _load_customer(copy, shown, scratch, broken_templates),
        )  # fmt: skip
        instance = fallback or instance
        if instance is not None:
            project.customers.append(instance)


def _load_app(project: Project) -> None:
    root = project.include_dir
    app_file = root / APP_FILE
    if app_file.is_file():
        project.files_checked += 1
        doc = _read(app_file, display_path(app_file, root), project)
        if doc is not None and not doc.duplicate_keys:
            project.app = _Reporter(doc, display_path(app_file, root), project).validate(
                AppSettings, doc.data
            )


def _from_last_valid(
    store: LastValidStore | None,
    kind: str,
    name: str,
    file: str,
    project: Project,
    load: Callable[[Path, str, Project], Any],
) -> Any:
    """The file's last valid copy, loaded against the current project, if it has none of the problems.

    A copy is used whole or not at all: half an edit applied (one integration new, another old) would run
    a configuration nobody wrote.
    """
    copy = store.get(kind, name) if store is not None else None
    if copy is None:
        return None
    scratch = Project(
        include_dir=project.include_dir,
        templates=project.templates,
        template_versions=project.template_versions,
    )
    loaded = load(copy.path, file, scratch)
    if loaded is None or scratch.problems:
        project.warnings.append(
            Problem(file, "", f"its last valid copy ({copy.path}) does not load either; not used")
        )
        return None
    what = "this customer's integrations keep" if kind == CUSTOMERS_DIR else "its flows keep"
    project.problems.append(
        Problem(
            file,
            "",
            f"{what} running on {copy.describe()}; fix the problems listed for this file to apply it",
        )
    )
    project.on_last_valid[file] = copy.describe()
    return loaded


def yaml_files(folder: Path) -> list[Path]:
    """The YAML files of a folder, as every load lists them (sorted; dot-files skipped)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix in _YAML_SUFFIXES and not p.name.startswith("."))


def display_path(path: Path, root: Path) -> str:
    """Paths in messages: relative to the include folder's parent (``include/customers/acme.yaml``)."""
    try:
        return str(path.relative_to(root.parent))
    except ValueError:
        return str(path)


class _Reporter:
    """Turns findings and pydantic errors of one file into located problems."""

    def __init__(self, doc: YamlDocument, file: str, project: Project):
        self.doc, self.file, self.project = doc, file, project
        self.errors = 0

    def add(self, finding: Finding, prefix: KeyPath = ()) -> None:
        path = (*prefix, *finding.path)
        problem = Problem(self.file, format_key_path(path), finding.message, self.doc.line_of(path))
        if finding.warning:
            self.project.warnings.append(problem)
        else:
            self.errors += 1
            self.project.problems.append(problem)

    def add_all(self, findings: Iterable[Finding], prefix: KeyPath = ()) -> None:
        for finding in findings:
            self.add(finding, prefix)

    def validate(self, model: type[BaseModel], data: Any, prefix: KeyPath = ()) -> Any:
        try:
            return model.model_validate(data)
        except ValidationError as e:
            self.add_all(_findings_from_pydantic(e, data), prefix)
            return None


def _read(path: Path, file: str, project: Project) -> YamlDocument | None:
    """The parsed file, or None if it cannot be read. Duplicate keys are reported here; what they cost
    (the file, or one integration entry) is the caller's decision."""
    try:
        doc = load_yaml(path)
    except YamlSyntaxError as e:
        project.problems.append(Problem(file, "", str(e), e.line))
        return None
    except (OSError, UnicodeDecodeError) as e:
        project.problems.append(Problem(file, "", f"cannot read file: {e}"))
        return None
    if not isinstance(doc.data, dict):
        project.problems.append(Problem(file, "", "expected a mapping of keys at the top of the file", 1))
        return None
    for key_path, line in doc.duplicate_keys:
        project.problems.append(
            Problem(file, format_key_path(key_path), "duplicate key: a later value would silently win", line)
        )
    return doc


def _load_template(
    path: Path, file: str, prefixes: tuple[str, ...], project: Project, version_of: str | None = None
) -> IntegrationTemplate | None:
    """A template file; ``version_of``: the integration whose other version this file is
    (``versions/<version_of>/<version>.yaml``)."""
    doc = _read(path, file, project)
    if doc is None or doc.duplicate_keys:
        return None
    report = _Reporter(doc, file, project)
    template, findings = _template_findings(doc.data, path, prefixes, project, version_of)
    report.add_all(findings)
    if report.errors == 0:
        return template
    return _without_broken_flows(doc.data, findings, prefixes, report, project)


def _template_findings(
    data: dict[str, Any], path: Path, prefixes: tuple[str, ...], project: Project, version_of: str | None
) -> tuple[IntegrationTemplate | None, list[Finding]]:
    try:
        template = IntegrationTemplate.model_validate(data)
    except ValidationError as e:
        return None, _findings_from_pydantic(e, data)
    findings: list[Finding] = []
    if version_of is None and template.name != path.stem:
        findings.append(
            Finding(("name",), f"template name {template.name!r} must equal the file name {path.stem!r}")
        )
    if version_of is not None:
        findings.extend(_check_version_file(template, version_of, path.stem, project))
    findings.extend(check_template(template, prefixes))
    findings.extend(check_upgrade(template))
    return template, findings


def _without_broken_flows(
    data: dict[str, Any],
    findings: list[Finding],
    prefixes: tuple[str, ...],
    report: _Reporter,
    project: Project,
) -> IntegrationTemplate | None:
    """The template without the flows its problems are in, when every problem is inside some flow and
    another flow is left: one broken flow must not cost every customer the template's other flows.

    Flows triggered by a left-out flow's output are left out too; the rest is checked again as a whole.
    """
    flows = data.get("flows")
    broken: set[str] = set()
    while True:
        errors = [f for f in findings if not f.warning]
        if not isinstance(flows, dict) or any(
            len(f.path) < 2 or f.path[0] != "flows" or f.path[1] not in flows for f in errors
        ):
            return None
        broken |= {str(f.path[1]) for f in errors}
        chained = _triggered_by(flows, broken)
        for name, upstream in sorted(chained.items()):
            report.add(
                Finding(
                    ("flows", name, "trigger", "flow"),
                    f"runs on the output of flow {upstream!r}, which has problems: not built either",
                )
            )
        broken |= set(chained)
        kept = {name: flow for name, flow in flows.items() if name not in broken}
        if not kept:
            return None
        try:
            template = IntegrationTemplate.model_validate({**data, "flows": kept})
        except ValidationError:
            return None
        findings = check_template(template, prefixes)
        if not any(not f.warning for f in findings):
            project.dropped_flows[(template.name, template.version)] = frozenset(broken)
            return template
        report.add_all(findings)


def _triggered_by(flows: dict[str, Any], broken: set[str]) -> dict[str, str]:
    """Flows (not yet in ``broken``) whose asset trigger leads back to a broken flow -> that flow."""
    chained: dict[str, str] = {}
    changed = True
    while changed:
        changed = False
        for name, flow in flows.items():
            trigger = flow.get("trigger") if isinstance(flow, dict) else None
            upstream = (
                trigger.get("flow") if isinstance(trigger, dict) and trigger.get("type") == "asset" else None
            )
            if name not in broken and name not in chained and (upstream in broken or upstream in chained):
                chained[name] = str(upstream)
                changed = True
    return chained


def _check_version_file(
    template: IntegrationTemplate, name: str, version: str, project: Project
) -> Iterable[Finding]:
    if template.name != name:
        yield Finding(("name",), f"template name {template.name!r} must equal its folder's name {name!r}")
    if not re.fullmatch(VERSION_PATTERN, version):
        yield Finding(
            (),
            f"invalid version file name {version!r}: letters, digits, '.', '_', '+', '-' (as customers pin it)",
        )
    elif template.version != version:
        yield Finding(("version",), f"version {template.version!r} must equal the file name {version!r}")
    current = project.templates.get(name)
    if current is not None and current.version == version:
        yield Finding(
            ("version",),
            f"version {version!r} is also the current file's version (integrations/{name}.yaml); "
            "keep one copy of a version",
        )


def _load_customer(
    path: Path, file: str, project: Project, broken_templates: dict[str, str]
) -> CustomerInstance | None:
    doc = _read(path, file, project)
    if doc is None:
        return None
    # A duplicate key inside one integration entry costs that entry; anywhere else, the customer.
    duplicated_entries = {p[1] for p, _ in doc.duplicate_keys if len(p) >= 2 and p[0] == "integrations"}
    if any(len(p) < 2 or p[0] != "integrations" for p, _ in doc.duplicate_keys):
        return None
    report = _Reporter(doc, file, project)
    raw_integrations = doc.data.get("integrations") or {}
    good: dict[str, CustomerIntegration] = {}
    if isinstance(raw_integrations, dict):
        for name, raw in raw_integrations.items():
            if name in duplicated_entries:
                continue
            errors_before = report.errors
            prefix: KeyPath = ("integrations", name)
            settings = report.validate(CustomerIntegration, raw if raw is not None else {}, prefix)
            if settings is None:
                continue
            template = project.template_for(name, settings)
            if template is None:
                report.add(_no_template(project, name, settings.version, broken_templates, prefix))
                continue
            dropped = project.dropped_flows.get((name, template.version), frozenset())
            report.add_all(check_customer_integration(name, settings, template, dropped))
            if report.errors == errors_before:
                good[name] = settings
    header = {**doc.data, "integrations": good} if isinstance(raw_integrations, dict) else doc.data
    customer: Customer | None = report.validate(Customer, header)
    if customer is None:
        return None
    if customer.id != path.stem:
        report.add(Finding(("id",), f"customer id {customer.id!r} must equal the file name {path.stem!r}"))
        return None
    return CustomerInstance(customer=customer, file=file, integrations=good)


def _no_template(
    project: Project, name: str, pinned: str | None, broken_templates: dict[str, str], prefix: KeyPath
) -> Finding:
    """Why a customer integration has no template to run on: unknown or broken, the integration or the
    version it is pinned to."""
    if pinned is not None and (name in project.template_versions or name in broken_templates):
        if f"{name}/{pinned}" in broken_templates:
            return Finding(
                (*prefix, "version"),
                f"version {pinned!r} of integration {name!r} is invalid (see {broken_templates[f'{name}/{pinned}']}); "
                "its DAGs are not built",
            )
        broken = (
            f" (the current file {broken_templates[name]} is invalid)" if name in broken_templates else ""
        )
        return Finding(
            (*prefix, "version"),
            f"unknown version {pinned!r} of integration {name!r}; available: {project.versions_of(name)}{broken}",
        )
    if name in broken_templates:
        return Finding(
            prefix,
            f"integration template {name!r} is invalid (see {broken_templates[name]}); its DAGs are not built",
        )
    return Finding(prefix, f"unknown integration {name!r}; expected one of {sorted(project.templates)}")


def _findings_from_pydantic(error: ValidationError, data: Any) -> list[Finding]:
    findings = []
    for item in error.errors(include_url=False):
        path = _data_path(item["loc"], data)
        if item["type"] == "union_tag_invalid":  # point at the kind/type key itself, and at its line
            path = (*path, str(item.get("ctx", {}).get("discriminator", "")).strip("'"))
        findings.append(Finding(path, _describe(item)))
    return findings


def _data_path(loc: tuple[Any, ...], data: Any) -> KeyPath:
    """Drop the parts of a pydantic location that are not keys of the data (union tags, validator names)."""
    path: list[str | int] = []
    current = data
    for part in loc:
        if part == "[key]":  # pydantic's marker for "the key itself is invalid"
            continue
        if isinstance(current, dict) and part in current:
            current = current[part]
            path.append(part)
        elif isinstance(current, list) and isinstance(part, int) and part < len(current):
            current = current[part]
            path.append(part)
        elif isinstance(current, dict) and isinstance(part, str) and not _is_tag(part, current):
            path.append(part)  # a missing or unknown key: still the place to point at
            current = None
    return tuple(path)


def _is_tag(part: str, mapping: dict[str, Any]) -> bool:
    # Pydantic puts the discriminator value ("schedule", "load", "cursor"...) or a type name into the location.
    return part in (mapping.get("kind"), mapping.get("type"), mapping.get("style")) or part.startswith(
        ("function-", "json-or-python")
    )


def _describe(item: Any) -> str:
    kind, message = item["type"], item["msg"]
    if kind == "string_pattern_mismatch" and item.get("ctx", {}).get("pattern") == IDENT_PATTERN:
        return (
            f"invalid name {item.get('input')!r}: use lower_snake_case "
            "(starts with a letter; letters, digits, single underscores)"
        )
    if kind == "missing":
        return "required key is missing"
    if kind == "union_tag_invalid":
        ctx = item.get("ctx", {})
        key = str(ctx.get("discriminator", "")).strip("'")
        return f"unknown {key} {ctx.get('tag')!r}; expected one of {ctx.get('expected_tags')}"
    if kind == "extra_forbidden":
        return "unknown key (check the spelling against the documented keys)"
    if kind.startswith("value_error"):
        return message.removeprefix("Value error, ")
    got = item.get("input")
    if isinstance(got, dict | list):
        return f"{message}"
    return f"{message} (got {got!r})"
