"""Airflow's internals as the sync endpoint needs them, in one module: who is calling, may they, and DAG
runs, task states and XComs in the metadata database.

Runs inside the Airflow API server (the plugin's FastAPI app is mounted there), so it uses the same auth
manager that issued the caller's token at ``/auth/token`` and the same database session factory. Each
function opens a short session and closes it: nothing holds a connection while a caller waits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from b2b_integrations.sync.outcome import RunView
from b2b_integrations.sync.protocol import sync_request

Deployment = Literal["ready", "missing", "paused"]


class Unauthenticated(Exception):
    """No usable credential: no ``Authorization: Bearer`` header, or a token that is invalid or expired."""


class RunNotStarted(Exception):
    """Airflow refused to create the run (the DAG went away, or its params do not validate)."""


@dataclass(frozen=True)
class Caller:
    """The authenticated user behind a request."""

    id: str
    name: str
    user: Any
    """The auth manager's user object, for authorization checks."""


class AirflowRuns:
    """:class:`~b2b_integrations.sync.service.RunsBackend` on the running Airflow."""

    async def caller(self, authorization: str | None) -> Caller:
        """The user a ``Bearer`` JWT (from Airflow's ``/auth/token``) belongs to.

        Only the header counts, never the UI's session cookie: a cookie would let any page the user visits
        start runs on their behalf (CSRF).
        """
        from airflow.api_fastapi.app import get_auth_manager
        from jwt import InvalidTokenError

        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("send 'Authorization: Bearer <token>' with a token from POST /auth/token")
        try:
            user = await get_auth_manager().get_user_from_token(token.strip())
        except InvalidTokenError as e:  # includes ExpiredSignatureError
            raise Unauthenticated(f"the token is not valid ({type(e).__name__})") from None
        return Caller(id=str(user.get_id()), name=str(user.get_name()), user=user)

    def may_trigger(self, caller: Caller, dag_id: str) -> bool:
        """What Airflow asks before ``POST /api/v2/dags/{dag_id}/dagRuns``: may create runs of the DAG."""
        return self._allowed(caller, dag_id, "POST", ("RUN",))

    def may_read(self, caller: Caller, dag_id: str) -> bool:
        """May read the DAG's runs and their XComs (the result is an XCom)."""
        return self._allowed(caller, dag_id, "GET", ("RUN", "XCOM"))

    @staticmethod
    def _allowed(caller: Caller, dag_id: str, method: str, entities: tuple[str, ...]) -> bool:
        from airflow.api_fastapi.app import get_auth_manager
        from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
        from airflow.models.dag import DagModel

        details = DagDetails(id=dag_id, team_name=DagModel.get_team_name(dag_id))
        manager = get_auth_manager()
        return all(
            manager.is_authorized_dag(
                method=method,  # type: ignore[arg-type]
                access_entity=DagAccessEntity[entity],
                details=details,
                user=caller.user,
            )
            for entity in entities
        )

    def deployment(self, dag_id: str) -> Deployment:
        """Whether the flow's DAG can run now: parsed and current, and not paused."""
        from airflow.models.dag import DagModel
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as session:
            row = session.execute(
                select(DagModel.is_paused, DagModel.is_stale).where(DagModel.dag_id == dag_id)
            ).first()
        if row is None or row.is_stale:
            return "missing"
        return "paused" if row.is_paused else "ready"

    def start(self, dag_id: str, run_id: str, conf: dict[str, Any], caller: Caller) -> bool:
        """Create the run (queued); False if a run with this id exists already (a repeated key)."""
        from airflow.api.common.trigger_dag import trigger_dag
        from airflow.exceptions import DagNotFound, DagRunAlreadyExists
        from airflow.utils.types import DagRunTriggeredByType
        from sqlalchemy.exc import IntegrityError

        try:
            trigger_dag(
                dag_id,
                triggered_by=DagRunTriggeredByType.REST_API,
                triggering_user_name=caller.name,
                run_id=run_id,
                conf=conf,
                replace_microseconds=False,
            )
        except DagRunAlreadyExists:
            return False
        except IntegrityError:  # the same key twice at the same moment: the other call created it
            return False
        except DagNotFound:
            raise RunNotStarted("this flow's DAG is not deployed") from None
        except ValueError as e:  # e.g. ParamValidationError: the customer's config no longer fits the DAG
            raise RunNotStarted(f"this flow's DAG refused the run ({type(e).__name__})") from None
        return True

    def request_of(self, dag_id: str, run_id: str) -> dict[str, Any] | None:
        """The sync request recorded in a run's conf; ``{}`` for a run started otherwise; None: no run."""
        from airflow.models.dagrun import DagRun
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as session:
            row = session.execute(
                select(DagRun.conf).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id)
            ).first()
        if row is None:
            return None
        return sync_request(row.conf) or {}

    def view(self, dag_id: str, run_id: str) -> RunView | None:
        """The run's state and its tasks' states; None if there is no such run."""
        from airflow.models.dagrun import DagRun
        from airflow.models.taskinstance import TaskInstance
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as session:
            state = session.scalar(
                select(DagRun.state).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id)
            )
            if state is None:
                return None
            rows = session.execute(
                select(TaskInstance.task_id, TaskInstance.state).where(
                    TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id
                )
            ).all()
        return RunView(run_id, str(state), {task_id: _state(value) for task_id, value in rows})

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str) -> Any:
        """One XCom value of the run (None if absent), decoded as Airflow's own API decodes it."""
        from airflow.models.xcom import XComModel
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as session:
            row = session.execute(
                select(XComModel.value).where(
                    XComModel.dag_id == dag_id,
                    XComModel.run_id == run_id,
                    XComModel.task_id == task_id,
                    XComModel.key == key,
                    XComModel.map_index == -1,
                )
            ).first()
        return None if row is None else XComModel.deserialize_value(row)


def _state(value: Any) -> str | None:
    return None if value is None else str(getattr(value, "value", value))
