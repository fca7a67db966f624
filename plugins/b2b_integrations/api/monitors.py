"""``POST /api/v1/monitors/evaluate``: one evaluation of every instance's alert monitors (the monitors DAG
calls it every minute). Engineers' Airflow tokens only, with DAG edit permission: it may pause DAGs."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from b2b_integrations.api import models
from b2b_integrations.api.access import authorize
from b2b_integrations.api.deps import Services, Svc, Who

router = APIRouter(prefix="/api/v1/monitors", tags=["monitors"])
_projects: dict[str, Any] = {}
_lock = threading.Lock()


def _live_project(svc: Services) -> Any:
    from b2b_integrations.config.live import LiveProject

    with _lock:
        key = str(svc.include_dir)
        if key not in _projects:
            _projects[key] = LiveProject(svc.include_dir, lambda project: project)
        return _projects[key].get()


def _deactivator(svc: Services) -> Any:
    def deactivate(customer: str, integration: str, session: Any) -> list[str]:
        from b2b_integrations.instances.deployment import set_paused

        # The same change the deactivate endpoint makes: the file's flag (a version in the instance's
        # history, by "monitors") and the pause, so an engineer sees who did it and reactivates as usual.
        svc.store.update(customer, integration, lambda s: {**s, "active": False},
                         if_match=None, actor="monitors", action="deactivate")  # fmt: skip
        return set_paused(customer, integration, True, session)

    return deactivate


@router.post(
    "/evaluate",
    summary="Evaluate every instance's monitors now: raise new alerts once, deliver those due",
    responses=models.error_responses(models.COMMON_ERRORS),
)
async def evaluate(who: Who, svc: Svc) -> dict[str, Any]:
    authorize(who, "write", engineer_only=True)
    return await run_in_threadpool(_evaluate, svc)


def _evaluate(svc: Services) -> dict[str, Any]:
    from airflow.configuration import conf
    from airflow.utils.session import create_session

    from b2b_integrations.monitors.evaluate import run_once

    summary = run_once(
        _live_project(svc),
        create_session,
        datetime.now(UTC),
        _deactivator(svc),
        conf.get("api", "base_url", fallback="http://localhost:8080/"),
    )
    return summary.as_json()
