"""Airflow provider info of this package (entry point ``apache_airflow_provider``).

Registers only what Airflow's providers manager must find by name: the ``amqp`` queue provider of
common-messaging's ``MessageQueueTrigger``. The AirflowPlugin itself is registered by the plugins-folder
shim, not here (see pyproject.toml)."""

from __future__ import annotations

from typing import Any


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "b2b-integrations",
        "name": "B2B integrations",
        "description": "B2B integration patterns as Airflow building blocks, deployed per customer from YAML.",
        "queues": ["b2b_integrations.triggers.amqp.AmqpMessageQueueProvider"],
    }
