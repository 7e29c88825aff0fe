"""Errors as clients read them: OperationOutcome under /fhir, problem details (RFC 9457) under /api.

Every refusal becomes an `ApiError` with one message per problem, so a provider fixing a handover
sees every missing or wrong field at once. Nothing a client sends reaches a 500.
"""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import exc as sql
from starlette.exceptions import HTTPException as StarletteHTTPException

from pathways.commands import Refusal
from pathways.fhir import operation_outcome

log = structlog.get_logger("pathways.api")

FHIR_JSON = "application/fhir+json"
PROBLEM_JSON = "application/problem+json"

ISSUE_CODES: dict[int, str] = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    408: "timeout",
    409: "conflict",
    412: "conflict",
    413: "too-costly",
    415: "not-supported",
    422: "invariant",
    500: "exception",
    503: "transient",
}
"""FHIR OperationOutcome issue code for each status we answer with."""

TITLES: dict[int, str] = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    408: "Request timeout",
    409: "Conflict",
    412: "Precondition failed",
    413: "Content too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    500: "Internal server error",
    503: "Service unavailable",
}

REFUSAL_STATUS: dict[str, int] = {
    "not-found": 404,
    "conflict": 409,
    "non-conforming": 422,
    "invalid": 400,
}


class ApiError(Exception):
    """A request we refuse: an HTTP status and every problem found."""

    def __init__(
        self,
        status: int,
        problems: list[str],
        headers: dict[str, str] | None = None,
        extensions: dict[str, Any] | None = None,
    ) -> None:
        super().__init__("; ".join(problems))
        self.status = status
        self.problems = problems
        self.headers = headers or {}
        self.extensions = extensions or {}
        """RFC 9457 extension members (e.g. `pathway_id`): what a client acts on, so it never
        parses the problem's text."""

    @classmethod
    def from_refusal(cls, refusal: Refusal) -> ApiError:
        return cls(REFUSAL_STATUS.get(refusal.kind, 409), refusal.problems or [str(refusal)])


def unavailable(reason: str) -> ApiError:
    """503: the engine did not answer in time; nothing changed, the client may retry."""
    return ApiError(503, [reason], {"Retry-After": "5"})


OUTCOME_UNKNOWN = "outcome unknown: retry the same request"


def outcome_unknown() -> ApiError:
    """503 for a change whose outcome is not known (it may still be applied): the same request
    again is applied once, by its deterministic Update id or start id."""
    return ApiError(
        503,
        [f"{OUTCOME_UNKNOWN} (the pathway engine did not confirm the change in time; "
         "the same request is applied at most once)"],
        {"Retry-After": "5"},
    )


STORE_DOWN = (sql.OperationalError, sql.InterfaceError, sql.DisconnectionError, sql.TimeoutError)
"""The event store not answering (connection refused or dropped, pool exhausted, database
locked): an outage, not a bug, so 503 and a retry rather than 500."""

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def store_down_unchanged() -> ApiError:
    """503 while the event store is down, for a request that changed nothing."""
    return unavailable("the event store is unavailable: nothing was changed; retry in a few seconds")


def store_unavailable(method: str) -> ApiError:
    """503 while the event store is down: a read changed nothing; a write may have reached the
    engine before the store failed, so its outcome is unknown and the same request is retried."""
    if method in SAFE_METHODS:
        return store_down_unchanged()
    return ApiError(
        503,
        [f"{OUTCOME_UNKNOWN} (the event store did not answer; "
         "the same request is applied at most once)"],
        {"Retry-After": "5"},
    )


class Problem(BaseModel):
    """RFC 9457 problem details, with every problem listed, and extension members where a
    client needs a value from the refusal (absent otherwise)."""

    model_config = ConfigDict(extra="allow")

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    problems: list[str] = Field(default_factory=list)
    pathway_id: str | None = Field(
        None, description="409 on a start: the pathway already running for this patient")


STANDARD_MEMBERS = {"type", "title", "status", "detail", "instance", "problems"}
"""Members an extension never replaces (RFC 9457 section 3.1, and our problem list)."""


class Issue(BaseModel):
    severity: str
    code: str
    diagnostics: str | None = None


class OperationOutcomeModel(BaseModel):
    """The FHIR OperationOutcome our /fhir errors carry (for the OpenAPI document)."""

    resourceType: str = "OperationOutcome"
    issue: list[Issue]


def error_response(request: Request, error: ApiError) -> JSONResponse:
    """Render for the caller's side of the API."""
    headers = dict(error.headers)
    if error.status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if request.url.path.startswith("/fhir"):
        code = ISSUE_CODES.get(error.status, "processing")
        body: dict[str, Any] = operation_outcome([("error", code, p) for p in error.problems])
        return JSONResponse(body, error.status, headers, media_type=FHIR_JSON)
    problem = Problem(
        title=TITLES.get(error.status, "Error"),
        status=error.status,
        detail="; ".join(error.problems),
        problems=error.problems,
        **{k: v for k, v in error.extensions.items() if k not in STANDARD_MEMBERS},
    )
    body = problem.model_dump(exclude_none=True)
    return JSONResponse(body, error.status, headers, media_type=PROBLEM_JSON)


def _location(loc: tuple[Any, ...]) -> str:
    """A member's position written one way everywhere: patient.nhs_number, status[1]."""
    path = ""
    for part in loc:
        if part == "body" and not path:
            continue
        if isinstance(part, int):
            path = f"{path or 'body'}[{part}]"
        else:
            path = f"{path}.{part}" if path else str(part)
    return path or "body"


def validation_problems(error: RequestValidationError) -> list[str]:
    """One message per invalid parameter or body member; never the submitted value itself."""
    return [f"{_location(tuple(e['loc']))}: {e['msg']}" for e in error.errors()]


def refuse_unknown_parameters(request: Request, known: set[str]) -> None:
    """400 naming every query parameter the route does not know, so a client never believes a
    filter was applied when it was not; `Prefer: handling=lenient` ignores them instead."""
    unknown = sorted({name for name in request.query_params if name not in known})
    if not unknown or lenient(request.headers.get("prefer")):
        return
    raise ApiError(
        400,
        [f"unknown search parameter {name[:40]!r} (send Prefer: handling=lenient to ignore it)"
         for name in unknown[:20]],
    )


def lenient(prefer: str | None) -> bool:
    """Whether the client sent `Prefer: handling=lenient` (FHIR: ignore what is not understood)."""
    preferences = {p.strip().replace(" ", "").lower() for p in (prefer or "").split(",")}
    return "handling=lenient" in preferences


def install(app: FastAPI) -> None:
    """Route every error through `error_response`; a bug logs its type, never the request."""

    @app.middleware("http")
    async def contain_bugs(request: Request, call_next: Any) -> Any:
        try:
            return await call_next(request)
        except STORE_DOWN as error:
            log.warning("event store unavailable", path=request.url.path,
                        error_type=type(error).__name__)
            return error_response(request, store_unavailable(request.method))
        except Exception as error:  # a bug: its message or traceback could quote patient data
            log.error("request failed", path=request.url.path, error_type=type(error).__name__)
            return error_response(request, ApiError(500, ["internal error"]))

    async def on_api_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, ApiError)
        return error_response(request, error)

    async def on_validation(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        malformed = any(e["type"] == "json_invalid" for e in error.errors())
        status = 400 if malformed or request.url.path.startswith("/fhir") else 422
        return error_response(request, ApiError(status, validation_problems(error)))

    async def on_http(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, StarletteHTTPException)
        problems = [str(error.detail)] if error.detail else [TITLES.get(error.status_code, "Error")]
        headers = dict(error.headers or {})
        return error_response(request, ApiError(error.status_code, problems, headers))

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)


def fhir_errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for FHIR routes: each status answers with an OperationOutcome."""
    return {
        status: {"model": OperationOutcomeModel, "description": TITLES.get(status, "Error")}
        for status in statuses
    }


def api_errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for coordinator routes: each status answers with problem details.

    Every route may answer 400 (malformed), 401, 403 (a provider token) and 422 (invalid input);
    a route taking a body also 408, 413 and 415 (limits at the door, see api.door).
    """
    schema = {"$ref": "#/components/schemas/Problem"}
    return {
        status: {
            "model": Problem,
            "description": TITLES.get(status, "Error"),
            "content": {PROBLEM_JSON: {"schema": schema}},
        }
        for status in sorted({400, 401, 403, 422, *statuses})
    }
