"""The customer portal's e2e setting, shared by tests/integration/test_portal_e2e.py and a developer's
``python tests/integration/portal_stack.py`` (the same stack, left running to look at the pages).

Customer ``portalco`` starts with no instance; ``rivalco`` (the other tenant) has ``showcase``. The
templates: the shipped ``crm_contacts`` (its ``contacts`` flow started by hand, against the demo CRM over
OAuth2), ``showcase``, whose config has one variable of every type the wizard renders, and ``inbox``, a
webhook flow whose signing secret only an engineer binds (the marketplace says so).
"""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path
from typing import Any

from airflow_stack import AirflowStack, start_airflow_stack
from helpers import PG, shipped_template, write_include

CUSTOMER, RIVAL = "portalco", "rivalco"
RIVAL_NAME = "Rival Widgets Ltd"
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"portal-e2e-webhook-signing-key-0").decode()


def templates() -> dict[str, dict[str, Any]]:
    crm = shipped_template("crm_contacts")
    # One quick retry: on a loaded machine a task's first call to the execution API can time out; a wrong
    # credential fails at once all the same (the step raises AirflowFailException).
    crm["defaults"] = {"retries": 1, "retry_delay_seconds": 1}
    crm["flows"]["contacts"]["trigger"] = {"type": "manual"}
    del crm["flows"]["invoices"]
    showcase = {
        "name": "showcase",
        "description": "Sample rows into our app, with one setting of every kind.",
        "defaults": {"retries": 1, "retry_delay_seconds": 1},  # as crm's
        "config": {
            "row_count": {
                "type": "integer",
                "default": 3,
                "minimum": 1,
                "maximum": 50,
                "description": "Rows per run.",
            },
            "region": {"type": "string", "choices": ["eu", "us"], "description": "Where your data lives."},
            "score_floor": {"type": "number", "default": 0.5, "description": "Lowest score kept."},
            "include_archived": {
                "type": "boolean",
                "default": False,
                "description": "Copy archived rows too.",
            },
            "labels": {"type": "list", "items": "string", "description": "Labels put on every row."},
        },  # fmt: skip
        "connections": {
            "partner_api": {"type": "http", "description": "Your partner system's API."},
            "db": {"type": "postgres", "shared": "portal_app_db"},
        },
        "flows": {
            "rows": {
                "description": "Copies sample rows.",
                "trigger": {"type": "manual"},
                "steps": [
                    {
                        "id": "make",
                        "kind": "transform",
                        "callable": "sample_transforms.rows",
                        "options": {"count": "${config.row_count}", "tag": "${config.region}"},
                    },
                    {
                        "id": "load",
                        "kind": "load",
                        "connection": "db",
                        "table": "portal_rows",
                        "key": ["id"],
                        "create_table": True,
                        "columns": {"id": "INTEGER", "tag": "TEXT", "score": "REAL"},
                    },
                ],
            }
        },
    }
    inbox = {
        "name": "inbox",
        "description": "Invoice events your billing system sends us.",
        "connections": {
            "webhook_secret": {"type": "generic", "description": "Signing secret (set up by us)."},
            "db": {"type": "postgres", "shared": "portal_app_db"},
        },
        "flows": {
            "events": {
                "description": "Stores each invoice event.",
                "trigger": {
                    "type": "webhook",
                    "signature": "standard_webhooks",
                    "secret_connection": "webhook_secret",
                },
                "steps": [
                    {
                        "id": "normalise",
                        "kind": "transform",
                        "callable": "b2b_integrations.transforms.common.select_columns",
                        "options": {"rename": {"invoice_id": "id"}, "columns": ["id", "status"]},
                    },
                    {
                        "id": "store",
                        "kind": "load",
                        "connection": "db",
                        "table": "portal_events",
                        "key": ["id"],
                        "create_table": True,
                        "columns": {"id": "VARCHAR(40)", "status": "VARCHAR(20)"},
                    },
                ],
            }
        },
    }
    return {"crm_contacts": crm, "showcase": showcase, "inbox": inbox}


def customers() -> dict[str, dict[str, Any]]:
    return {
        CUSTOMER: {"id": CUSTOMER, "name": "Portal Co", "integrations": {}},
        RIVAL: {
            "id": RIVAL,
            "name": RIVAL_NAME,
            "integrations": {
                "showcase": {
                    "config": {"region": "us", "labels": ["rival"]},
                    "connections": {"partner_api": "rival_partner", "db": "portal_app_db"},
                }
            },
        },
    }


def start(root: Path, app_db: str, extra_env: dict[str, str] | None = None) -> AirflowStack:
    include = write_include(root / "include", templates(), customers())
    stack = start_airflow_stack(
        include,
        {
            "AIRFLOW_CONN_DEMO_APP_DB": f"{PG}/{app_db}",
            "AIRFLOW_CONN_PORTAL_APP_DB": f"{PG}/{app_db}",
            "AIRFLOW_CONN_PORTAL_HOOKS": json.dumps({"conn_type": "generic", "password": WEBHOOK_SECRET}),
            "AIRFLOW_CONN_RIVAL_PARTNER": json.dumps({"conn_type": "http", "host": "rival.example.com"}),
            "B2B_CUSTOMER_TOKEN_SECRET": uuid.uuid4().hex,
            # the demo CRM listens on loopback, which customer connections may not use otherwise
            "B2B_CALLBACK_ALLOWED_NETWORKS": "127.0.0.1/32",
            "B2B_CONNECTION_TEST_INTERVAL_SECONDS": "1",
            "B2B_TRANSFORM_PREFIXES": "b2b_integrations.transforms,sample_transforms",
            "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
            **(extra_env or {}),
        },
    )
    stack.include = include  # type: ignore[attr-defined]
    return stack


if __name__ == "__main__":  # a stack to look at: prints the portal URL for each customer, runs until killed
    import sys
    import tempfile
    import time

    import httpx
    import psycopg2

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from crm_server import start_crm_server

    db = f"portal_dev_{uuid.uuid4().hex[:6]}"
    admin = psycopg2.connect(f"{PG}/postgres")
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{db}"')
    crm = start_crm_server()
    dev = start(Path(tempfile.mkdtemp(prefix="portal-dev-")), db)
    headers = {"Authorization": f"Bearer {dev.token()}"}
    print("crm", crm.url, "stack", dev.url, "home", dev.home, flush=True)
    for who in (CUSTOMER, RIVAL):
        answer = httpx.post(
            f"{dev.url}/b2b/api/v1/customers/{who}/tokens", headers=headers, json={"ttl_seconds": 86400}
        )
        print(who, f"{dev.url}/b2b/portal/#token={answer.json()['token']}", flush=True)
    print("admin", headers["Authorization"], flush=True)
    while True:
        time.sleep(60)
