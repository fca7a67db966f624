"""What a change to an instance can run into; the API maps each to one HTTP status."""

from __future__ import annotations

from collections.abc import Iterable

from b2b_integrations.errors import B2BError, Problem


class InstanceError(B2BError):
    """Root of the instance store's refusals."""


class NotFound(InstanceError):
    """No such customer or instance (or none the caller may see: the same answer either way)."""


class Conflict(InstanceError):
    """The change contradicts the current state (create of something that exists)."""


class PreconditionRequired(InstanceError):
    """An update of something that exists came without ``If-Match``: it could overwrite a change unseen."""


class PreconditionFailed(InstanceError):
    """``If-Match`` names a version that is no longer current: someone else changed it since."""

    def __init__(self, current_etag: str | None) -> None:
        self.current_etag = current_etag
        super().__init__("the instance changed since it was read; read it again and re-apply the change")


class InvalidChange(InstanceError):
    """The loader refuses the file the change would write; nothing was written."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = list(problems)
        super().__init__(f"{len(self.problems)} problem(s); nothing was changed")
