"""One error shape for the instances API: ``{"error": <code>, "detail": <text>, ...}`` with its status."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from b2b_integrations.instances.errors import (
    Conflict,
    InstanceError,
    InvalidChange,
    NotFound,
    PreconditionFailed,
    PreconditionRequired,
)

log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(
        self, status: int, error: str, detail: str, headers: dict[str, str] | None = None, **extra: Any
    ):
        super().__init__(detail)
        self.status, self.error, self.detail, self.headers, self.extra = status, error, detail, headers, extra


def problem_json(problem: Any) -> dict[str, Any]:
    return {
        "file": problem.file,
        "line": problem.line,
        "key_path": problem.key_path,
        "message": problem.message,
    }


def _instance_error(error: InstanceError) -> ApiError:
    if isinstance(error, NotFound):
        return ApiError(404, "not_found", str(error))
    if isinstance(error, PreconditionRequired):
        return ApiError(428, "precondition_required", str(error))
    if isinstance(error, PreconditionFailed):
        headers = {"ETag": error.current_etag} if error.current_etag else None
        return ApiError(412, "precondition_failed", str(error), headers)
    if isinstance(error, InvalidChange):
        return ApiError(
            422, "invalid", "the change was refused; nothing was changed",
            problems=[problem_json(p) for p in error.problems],
        )  # fmt: skip
    if isinstance(error, Conflict):
        return ApiError(409, "conflict", str(error))
    return ApiError(400, "bad_request", str(error))


def add_error_handlers(app: FastAPI) -> None:
    async def api_error(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, ApiError)
        return JSONResponse(
            {"error": error.error, "detail": error.detail, **error.extra}, error.status, headers=error.headers
        )

    async def instance_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, InstanceError)
        return await api_error(request, _instance_error(error))

    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        # Logged with its traceback (a 500 is a bug to fix); the caller gets no internals.
        log.error("b2b-integrations: %s %s failed", request.method, request.url.path, exc_info=error)
        return JSONResponse({"error": "internal", "detail": "unexpected error; it was logged"}, 500)

    async def invalid_request(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        where = ["/".join(str(part) for part in item.get("loc", ())) for item in error.errors()]
        return JSONResponse(
            {"error": "invalid_request", "detail": f"invalid {', '.join(where) or 'request'}"}, 422
        )

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(InstanceError, instance_error)
    app.add_exception_handler(Exception, unexpected)
