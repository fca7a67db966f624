"""The production stack's files (docker-compose.yaml, Dockerfile, .env.example, .dockerignore), checked for
structure since no Docker engine runs here: the services of Airflow's official CeleryExecutor compose,
health checks, shared secrets from .env only, mounts, the image built here wherever the package runs, and
the demo: every demo customer's connection defined, every demo command accepted by its script."""

from __future__ import annotations

import fnmatch
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yaml").read_text(encoding="utf-8"))
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
AIRFLOW_COMPONENTS = {
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-triggerer": "triggerer",
    "airflow-worker": "celery worker",
}
AIRFLOW_SERVICES = {*AIRFLOW_COMPONENTS, "airflow-init", "airflow-cli", "flower"}
ONE_SHOT = {"airflow-init", "airflow-cli"}
SHARED_SECRETS = ("AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__API__SECRET_KEY")
SECRET_NAME = re.compile(r"(PASSWORD|SECRET|FERNET_KEY|TOKEN|API_KEY)$")
_REFERENCE = re.compile(
    r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}|\$(?P<bare>[A-Za-z_]\w*)"
)


class MissingVariable(Exception):
    pass


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's variable substitution: ${X}, ${X:-default}, ${X-default}, ${X:?error}, ${X?error}, $$."""

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group("name") or match.group("bare")
        op, arg, value = match.group("op"), match.group("arg"), env.get(name)
        if op == ":-":
            return value or arg
        if op == "-":
            return arg if value is None else value
        if op in (":?", "?") and (value is None or (op == ":?" and not value)):
            raise MissingVariable(f"{name}: {arg}")
        return value or ""

    return _REFERENCE.sub(substitute, text)


def references(text: str) -> list[tuple[str, str | None]]:
    """(variable, operator) of every ${...} in ``text``."""
    return [
        (m.group("name") or m.group("bare"), m.group("op"))
        for m in _REFERENCE.finditer(text)
        if m.group(0) != "$$"
    ]


def _env_file(path: Path) -> dict[str, str]:
    pairs = (
        line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#")
    )
    return {key.strip(): value.strip() for key, value in pairs}


ENV_EXAMPLE = _env_file(REPO / ".env.example")
# Every value filled in, as a user's .env would be, each secret distinct so its origin can be told.
FILLED = {key: value or f"filled-{key.lower()}" for key, value in ENV_EXAMPLE.items()}


def _environment(service: str) -> dict[str, str]:
    env = SERVICES[service].get("environment") or {}
    assert isinstance(env, dict), f"{service}: environment must be a mapping"
    return {key: str(value) for key, value in env.items()}


def _command_text(service: dict[str, Any]) -> str:
    parts = [service.get("entrypoint") or "", service.get("command") or ""]
    return " ".join(" ".join(p) if isinstance(p, list) else str(p) for p in parts)


# ------------------------------------------------------------------------------------------------ services


def test_the_services_of_airflows_celery_compose_and_the_demo() -> None:
    assert {
        "postgres",
        "redis",
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "airflow-worker",
        "airflow-init",
        "demo-sftp",
        "demo-crm",
        "demo-smtp",
        "app-db",
    } <= set(SERVICES)
    for service, command in AIRFLOW_COMPONENTS.items():
        assert SERVICES[service]["command"] == command
    assert SERVICES["airflow-cli"]["profiles"] == ["debug"] and SERVICES["flower"]["profiles"] == ["flower"]


def test_every_long_running_service_has_a_health_check_and_restarts() -> None:
    for name, service in SERVICES.items():
        if name in ONE_SHOT:
            continue
        check = service.get("healthcheck")
        assert check and check["test"][0] in ("CMD", "CMD-SHELL"), f"{name}: no health check"
        assert service.get("restart") == "always", f"{name}: not restarted"


def test_celery_executor_with_redis_as_broker_and_postgres_for_metadata_and_results() -> None:
    for service in AIRFLOW_SERVICES:
        env = {k: interpolate(v, FILLED) for k, v in _environment(service).items()}
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", service
        broker = urlsplit(env["AIRFLOW__CELERY__BROKER_URL"])
        assert (broker.scheme, broker.hostname) == ("redis", "redis")
        for key, scheme in (
            ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "postgresql+psycopg2"),
            ("AIRFLOW__CELERY__RESULT_BACKEND", "db+postgresql"),
        ):
            url = urlsplit(env[key])
            assert (url.scheme, url.hostname, url.path) == (scheme, "postgres", "/airflow"), (service, key)
            assert url.password == FILLED["POSTGRES_PASSWORD"]
        api = urlsplit(env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
        assert (api.hostname, api.port, api.path) == ("airflow-apiserver", 8080, "/execution/")
    assert SERVICES["postgres"]["environment"]["POSTGRES_DB"] == "airflow"


def test_the_init_service_migrates_creates_the_admin_and_checks_the_config() -> None:
    init = SERVICES["airflow-init"]
    env = _environment("airflow-init")
    assert env["_AIRFLOW_DB_MIGRATE"] == "true" and env["_AIRFLOW_WWW_USER_CREATE"] == "true"
    assert references(env["_AIRFLOW_WWW_USER_PASSWORD"]) == [("AIRFLOW_ADMIN_PASSWORD", ":?")]
    assert init["user"] == "0:0"
    script = _command_text(init)
    assert "/entrypoint airflow version" in script
    assert "python -m b2b_integrations validate /opt/airflow/include" in script
    # Capped customers' pools exist before any of their tasks is scheduled.
    assert "python -m b2b_integrations pools /opt/airflow/include" in script


def test_components_start_after_their_dependencies_are_healthy_and_the_init_finished() -> None:
    for service in AIRFLOW_SERVICES - {"airflow-init", "airflow-cli"}:
        depends = SERVICES[service]["depends_on"]
        assert depends["postgres"] == {"condition": "service_healthy"}, service
        assert depends["redis"] == {"condition": "service_healthy"}, service
        assert depends["airflow-init"] == {"condition": "service_completed_successfully"}, service
    assert SERVICES["airflow-worker"]["depends_on"]["airflow-apiserver"] == {"condition": "service_healthy"}


def test_workers_scale_with_compose_scale() -> None:
    worker = SERVICES["airflow-worker"]
    # A fixed name, hostname or host port would make the second replica fail to start.
    assert not {"container_name", "hostname", "ports"} & set(worker)
    env = _environment("airflow-worker")
    assert env["DUMB_INIT_SETSID"] == "0"  # warm shutdown: running tasks finish on `compose stop`


# ------------------------------------------------------------------------------------- image and mounts


def test_every_service_running_the_package_uses_the_image_built_from_this_repo() -> None:
    image = SERVICES["airflow-apiserver"]["image"]
    runs_package = {
        name
        for name, service in SERVICES.items()
        if name in AIRFLOW_SERVICES or re.search(r"b2b_integrations|/include/demo/", _command_text(service))
    }
    assert runs_package == AIRFLOW_SERVICES | {"demo-sftp", "demo-crm"}
    for name in runs_package:
        assert SERVICES[name].get("build") == ".", f"{name}: not built from this repo"
        assert SERVICES[name]["image"] == image, f"{name}: another image"
    others = {name: s.get("image", "") for name, s in SERVICES.items() if name not in runs_package}
    assert all(img and "build" not in SERVICES[n] for n, img in others.items()), others


def test_the_dockerfile_installs_the_package_pinned_on_the_official_image() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    pinned = re.search(r"^apache-airflow==(\S+)$", (REPO / "constraints.txt").read_text(), re.M)
    assert pinned
    assert re.search(rf"^ARG AIRFLOW_VERSION={re.escape(pinned.group(1))}$", dockerfile, re.M)
    assert re.search(
        r"^FROM apache/airflow:\$\{AIRFLOW_VERSION\}-python\$\{PYTHON_VERSION\}$", dockerfile, re.M
    )
    install = re.search(r"^RUN pip install (.+)$", dockerfile, re.M)
    assert (
        install
        and '"apache-airflow==${AIRFLOW_VERSION}" -c /opt/b2b/constraints.txt /opt/b2b' in install.group(1)
    )
    for copied in ("plugins/b2b_integrations_plugin.py plugins/.airflowignore /opt/airflow/plugins/",
                   "dags/ /opt/airflow/dags/", "include/ /opt/airflow/include/"):  # fmt: skip
        assert copied in dockerfile


def test_dags_plugins_include_and_the_shared_staging_folder_are_mounted() -> None:
    named = set(COMPOSE["volumes"])
    for service in AIRFLOW_SERVICES:
        volumes = SERVICES[service]["volumes"]
        env = _environment(service)
        for mount in (
            "./dags:/opt/airflow/dags",
            "./plugins:/opt/airflow/plugins",
            "./include:/opt/airflow/include",
        ):
            assert mount in volumes, (service, mount)
        assert env["B2B_INCLUDE_DIR"] == "/opt/airflow/include"
        # Tasks of one run may land on different workers: the staged records must be on a shared volume.
        assert f"b2b-data:{env['B2B_DATA_DIR']}" in volumes, service
        for volume in volumes:
            source = volume.split(":")[0]
            assert source.startswith("./") or source in named, (service, volume)


# -------------------------------------------------------------------------------------------- secrets


def test_secrets_come_only_from_env_and_are_the_same_in_every_component() -> None:
    for name in SERVICES:
        for key, value in _environment(name).items():
            if SECRET_NAME.search(key) and not key.startswith("AIRFLOW_CONN_"):  # those: the next test
                assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]+\}", value), (
                    f"{name}: {key} is not a required ${{VAR}}"
                )
    for key in SHARED_SECRETS:
        assert len({_environment(s)[key] for s in AIRFLOW_SERVICES}) == 1, key
    required = {name for service in SERVICES for v in _environment(service).values() for name, op in references(v) if op == ":?"}  # fmt: skip
    assert {"POSTGRES_PASSWORD", "AIRFLOW_FERNET_KEY", "AIRFLOW_JWT_SECRET", "AIRFLOW_API_SECRET_KEY",
            "AIRFLOW_ADMIN_PASSWORD"} <= required  # fmt: skip
    # Unfilled, compose refuses to start rather than run with empty secrets.
    with pytest.raises(MissingVariable, match="POSTGRES_PASSWORD"):
        interpolate(_environment("postgres")["POSTGRES_PASSWORD"], ENV_EXAMPLE)


def test_connection_passwords_come_from_env_too() -> None:
    for key, value in _environment("airflow-scheduler").items():
        if not key.startswith("AIRFLOW_CONN_"):
            continue
        filled = interpolate(value, FILLED)
        password = json.loads(filled).get("password") if filled.startswith("{") else urlsplit(filled).password
        if password is not None:
            assert password.startswith("filled-"), f"{key}: a password written into the compose file"


def test_env_example_names_every_variable_and_holds_no_secret() -> None:
    text = (REPO / "docker-compose.yaml").read_text()
    without_default = {name for name, op in references(text) if op in (None, ":?", "?")}
    assert without_default - {"HOSTNAME"} <= set(ENV_EXAMPLE), without_default - set(ENV_EXAMPLE)
    for key, value in ENV_EXAMPLE.items():
        if SECRET_NAME.search(key) and key != "DEMO_CRM_CLIENT_ID":
            assert value == "", f".env.example: {key} has a value"
    interpolate(text, FILLED)  # every reference resolves once .env is filled in
    assert ".env" in (REPO / ".gitignore").read_text().split()


# ------------------------------------------------------------------------------------------------- demo


def _demo_connection_ids() -> set[str]:
    found = set()
    for path in (REPO / "include" / "customers").glob("*.yaml"):
        customer = yaml.safe_load(path.read_text(encoding="utf-8"))
        for integration in (customer.get("integrations") or {}).values():
            found.update((integration.get("connections") or {}).values())
    return found


def test_every_connection_the_demo_customers_use_is_defined_and_well_formed() -> None:
    env = {k: interpolate(v, FILLED) for k, v in _environment("airflow-worker").items()}
    for conn_id in sorted(_demo_connection_ids()):
        value = env.get(f"AIRFLOW_CONN_{conn_id.upper()}")
        assert value, f"no AIRFLOW_CONN_{conn_id.upper()} for the demo customers' connection {conn_id}"
        if value.startswith("{"):
            assert json.loads(value)["conn_type"]
        else:
            assert urlsplit(value).scheme and urlsplit(value).hostname
    alerts = json.loads(env["AIRFLOW_CONN_" + env["AIRFLOW__B2B_ALERTS__EMAIL_CONN_ID"].upper()])
    assert (alerts["host"], alerts["port"]) == ("demo-smtp", 1025) and 1025 in SERVICES["demo-smtp"]["expose"]


def _hosts_in_connections() -> set[str | None]:
    hosts = set()
    for key, value in _environment("airflow-worker").items():
        if key.startswith("AIRFLOW_CONN_"):
            filled = interpolate(value, FILLED)
            hosts.add(json.loads(filled).get("host") if filled.startswith("{") else urlsplit(filled).hostname)
    return hosts - {None}


def test_demo_connections_point_at_services_of_this_file() -> None:
    assert _hosts_in_connections() <= set(SERVICES)


@pytest.mark.parametrize("service", ["demo-sftp", "demo-crm"])
def test_demo_commands_use_only_flags_their_scripts_accept_and_listen_beyond_loopback(service: str) -> None:
    entrypoint = SERVICES[service]["entrypoint"]
    script = REPO / entrypoint[1].removeprefix("/opt/airflow/")
    command = [interpolate(str(part), FILLED) for part in SERVICES[service]["command"]]
    flags = {part.split("=", 1)[0] for part in command if part.startswith("--")}
    helptext = subprocess.run(
        [sys.executable, str(script), "--help"], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    accepted = set(re.findall(r"(--[a-z][a-z0-9-]*)", helptext))
    assert flags <= accepted, f"{script.name} does not accept {sorted(flags - accepted)}"
    host = command[command.index("--host") + 1] if "--host" in command else None
    host = host or next((p.split("=", 1)[1] for p in command if p.startswith("--host=")), None)
    assert host == "0.0.0.0", (
        f"{service} must listen on every interface to be reachable from other containers"
    )


# ------------------------------------------------------------------------------------------ .dockerignore


def _ignored(path: str, patterns: list[str]) -> bool:
    verdict = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern.lstrip("!").rstrip("/")
        candidates = [path, *(str(Path(*Path(path).parts[:i])) for i in range(1, len(Path(path).parts)))]
        if any(fnmatch.fnmatch(c, body) or fnmatch.fnmatch(c, body.removeprefix("**/")) for c in candidates):
            verdict = not negate
    return verdict


def test_dockerignore_keeps_secrets_and_local_state_out_but_not_what_the_image_needs() -> None:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for local in (".env", ".venv", ".git", "logs", "plugins/b2b_integrations/__pycache__"):
        assert _ignored(local, patterns), local
    copied = re.findall(r"^COPY (?:--\S+ )*(.+) \S+$", (REPO / "Dockerfile").read_text(), re.M)
    sources = [src.rstrip("/") for line in copied for src in line.split()]
    assert "constraints.txt" in sources and "plugins/b2b_integrations" in sources
    for source in sources:
        assert (REPO / source).exists() and not _ignored(source, patterns), source
