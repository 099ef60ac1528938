"""How the web apps (`emofuse serve`, `emofuse label`) answer a failed request: always
``{"detail": "..."}`` JSON, a validation error as one readable line, and an unexpected
error as a 500 that names its type only (the traceback goes to the server log, with the
route's template rather than the raw path)."""

from __future__ import annotations

import logging

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.requests import Request

from emofuse.serve.uploads import not_a_file


def install_error_handlers(app: FastAPI, log: logging.Logger) -> None:
    """Answer ``app``'s HTTP errors, invalid requests (422) and unexpected exceptions (500,
    logged to ``log`` with the traceback) as ``{"detail": ...}``."""

    @app.exception_handler(HTTPException)
    async def _http_problem(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"detail": str(exc.detail)}, exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": validation_detail(exc)}, 422)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        route = getattr(request.scope.get("route"), "path", "-")  # never the raw path
        log.error(
            "unexpected error %s on %s %s", type(exc).__name__, request.method, route,
            exc_info=exc,
        )  # fmt: skip
        return JSONResponse(
            {"detail": f"internal error ({type(exc).__name__}); see server log"}, 500
        )


def validation_detail(err: RequestValidationError) -> str:
    """A request's validation errors as one line: ``field 'x': why; ...``."""
    parts = []
    for e in err.errors():
        where = ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "request"
        if "UploadFile" in str(e.get("msg", "")):  # a file field sent as text
            parts.append(not_a_file(where, e.get("input")))
            continue
        parts.append(f"field '{where}': {e.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def app_version() -> str:
    """The installed emofuse version (the OpenAPI document's)."""
    from emofuse import __version__

    return __version__
