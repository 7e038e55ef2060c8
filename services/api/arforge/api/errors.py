"""One error shape for every API failure: ``{"error": {"code": "...", "message": "..."}}``.

Routes raise :class:`ApiError`; :func:`install_error_handlers` maps it, FastAPI's request
validation errors (422, ``code="validation_error"`` with a ``fields`` list) and Starlette's
default 404 / 405 / other HTTP errors onto that shape.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

log = logging.getLogger("arforge.api")


class FieldError(BaseModel):
    """One invalid field: ``loc`` is the path (e.g. ``["params", "max_frames"]``)."""

    loc: list[str | int]
    message: str
    type: str


class ErrorBody(BaseModel):
    code: str = Field(examples=["not_found"], description="Machine-readable error code")
    message: str = Field(examples=["job not found"], description="A sentence for people")
    fields: list[FieldError] | None = Field(None, description="Per-field problems (422 only)")
    details: dict[str, Any] | None = Field(
        None,
        examples=[{"job_id": "0b8c6f5e-2a9d-4c1e-9f4b-7d2e1a3c5b6f"}],
        description="Facts about the error a client can act on (e.g. the job an "
        "`idempotency_conflict` key belongs to)",
    )


class ErrorResponse(BaseModel):
    """The body of every 4xx / 5xx response."""

    error: ErrorBody


class ApiError(Exception):
    """An HTTP error with a machine-readable ``code`` and a human ``message``.

    ``fields`` (optional) lists per-field problems as ``{"loc", "message", "type"}`` dicts.
    ``headers`` are added to the response (e.g. ``WWW-Authenticate`` on 401);
    ``details`` (optional) is a JSON object a client can act on.
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        fields: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields
        self.headers = headers
        self.details = details


def error_json(
    status: int,
    code: str,
    message: str,
    fields: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    details: dict[str, Any] | None = None,
) -> JSONResponse:
    """A JSONResponse in the standard error shape."""
    body: dict[str, Any] = {"code": code, "message": message}
    if fields is not None:
        body["fields"] = fields
    if details is not None:
        body["details"] = details
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def field_errors(errors: Any) -> list[dict[str, Any]]:
    """Pydantic / FastAPI ``errors()`` -> ``[{"loc", "message", "type"}]`` (JSON-safe)."""
    out = []
    for e in errors:
        out.append(
            {
                "loc": [p if isinstance(p, int) else str(p) for p in e.get("loc", ())],
                "message": str(e.get("msg", "invalid value")),
                "type": str(e.get("type", "value_error")),
            }
        )
    return out


_DEFAULT_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
}


async def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_json(exc.status, exc.code, exc.message, exc.fields, exc.headers, exc.details)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    fields = field_errors(exc.errors())
    first = fields[0] if fields else None
    where = ".".join(str(p) for p in first["loc"]) if first else "request"
    msg = f"invalid request: {where}: {first['message']}" if first else "invalid request"
    return error_json(422, "validation_error", msg, fields)


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _DEFAULT_CODES.get(exc.status_code, "http_error")
    detail = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    if exc.status_code == 404 and detail == "Not Found":
        detail = "no such resource"
    elif exc.status_code == 405 and detail == "Method Not Allowed":
        detail = "method not allowed on this resource"
    return error_json(exc.status_code, code, detail, headers=getattr(exc, "headers", None))


async def _client_gone(request: Request, _: Exception) -> JSONResponse:
    # The client hung up mid-request (e.g. an upload cut short): nobody will read the
    # answer and the handler has cleaned up; not a server error worth a traceback.
    log.info("client disconnected during %s %s", request.method, request.url.path)
    return error_json(400, "client_disconnected", "the client closed the connection")


async def _unhandled(_: Request, exc: Exception) -> JSONResponse:
    return error_json(500, "internal_error", "the server failed to handle this request")


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that give every error the standard shape."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(ClientDisconnect, _client_gone)
    app.add_exception_handler(Exception, _unhandled)


def not_found(what: str = "resource") -> ApiError:
    """404 ``not_found`` — also the answer for another tenant's resources (never 403)."""
    return ApiError(404, "not_found", f"{what} not found")


# OpenAPI ``responses=`` helper: document the error shape for the given status codes.
def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {
        s: {"model": ErrorResponse, "description": _DEFAULT_CODES.get(s, "error")} for s in statuses
    }
