"""The live deployment the fault scenarios share (see fault_deployment.py): started once per session, and
only when a fault test is selected."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fault_deployment import Deployment, running_deployment


@pytest.fixture(scope="session")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with running_deployment(tmp_path_factory.mktemp("faults")) as live:
        yield live


@pytest.fixture(autouse=True)
def _restarts_baseline(deployment: Deployment) -> None:
    """What the stack restarted before this test, so its figures show only its own restarts."""
    deployment.restarts_before = dict(deployment.stack.restarts)
