"""The one error body every failure is answered with: ``{"error": "<one sentence>"}``.

FastAPI answers its own failures (a body it cannot parse, an unknown path, a wrong method,
an unhandled exception) with other bodies; the handlers here give each the documented one,
naming what was wrong and how to fix it.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from torchlab.serve.metrics import Metrics


def dumps(content: Any) -> bytes:
    """``content`` as JSON, by orjson: an answer of predictions in a few microseconds, where
    the standard library took tens on a server's every request. NaN becomes null."""
    return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)


class Answer(JSONResponse):
    """A JSON answer serialised by :func:`dumps`."""

    def render(self, content: Any) -> bytes:
        return dumps(content)


def error(status: int, message: str, headers: dict[str, str] | None = None, **extra: Any) -> Answer:
    """The documented error answer, ``{"error": message, **extra}``."""
    return Answer({"error": message, **extra}, status_code=status, headers=headers)


async def respond(
    send: Any, status: int, message: str, headers: dict[str, str] | None = None
) -> None:
    """The documented error answer sent on a raw ASGI ``send`` (for middleware)."""
    body = dumps({"error": message})
    fields = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    fields += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": fields})
    await send({"type": "http.response.body", "body": body})


def unreadable_body(cause: BaseException | None) -> str:
    """Why a body could not be read as JSON, from the exception the parser raised."""
    if isinstance(cause, RecursionError):
        return (
            "The request body nests arrays or objects too deeply to read; send a flat JSON object."
        )
    if isinstance(cause, UnicodeDecodeError):
        return "The request body is not valid UTF-8; send JSON encoded as UTF-8."
    if isinstance(cause, ValueError) and "integer string conversion" in str(cause):
        return (
            "The request body holds an integer with too many digits to read (over 4300); "
            "send numbers of a usual size."
        )
    return "The request body cannot be read as JSON; send a JSON object."


def install_error_handlers(app: FastAPI, metrics: Metrics) -> None:
    """Answer validation errors, FastAPI's own HTTP errors and unhandled exceptions with
    the documented body."""

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return invalid_body(list(exc.errors()), metrics)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        path, status = request.url.path, exc.status_code
        if status == 400:  # FastAPI could not parse the body; the parser's error says why
            return unreadable(exc.__cause__, metrics)
        if status == 404:
            message = f"There is no endpoint {path}; GET /docs lists them."
        elif status == 405:
            allowed = (exc.headers or {}).get("Allow", "another method")
            message = f"{request.method} is not allowed on {path}; use {allowed}."
        else:
            message = str(exc.detail)
        return error(status, message, headers=exc.headers)

    @app.exception_handler(Exception)
    async def failed(request: Request, exc: Exception) -> JSONResponse:
        # Registered for Exception, Starlette calls this last, then re-raises so the server
        # logs the traceback.
        metrics.error("internal")
        return error(
            500,
            f"The server failed on this request ({type(exc).__name__}); it goes on serving "
            "others, and its log holds the details.",
            # uvicorn closes the connection after an unhandled error: say so, or a client
            # sends its next request on it and gets a reset.
            headers={"Connection": "close"},
        )


def unreadable(cause: BaseException | None, metrics: Metrics) -> Answer:
    """The 400 answer to a body the JSON parser could not read (``cause`` says why)."""
    metrics.error("malformed_json")
    return error(400, unreadable_body(cause))


def invalid_body(errors: list[Any], metrics: Metrics) -> Answer:
    """The answer to a body that fails its schema (pydantic's ``errors``, located under
    ``body``): 400 for JSON that cannot be read, else 422 naming the first field."""
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    if first.get("type") == "json_invalid":
        metrics.error("malformed_json")
        return error(400, "The request body is not valid JSON; send a JSON object.")
    where = ".".join(str(p) for p in first["loc"] if p != "body") or "body"
    metrics.error("validation")
    detail = [{"field": ".".join(map(str, e["loc"][1:])), "message": e["msg"]} for e in errors]
    if first.get("type") == "extra_forbidden":  # e.g. max_new_tokens for a language model
        message = (
            f"Field '{where}' is not part of this model's request; remove it "
            "(GET /metadata shows the request schema)."
        )
        return error(422, message, detail=detail[:20])
    return error(422, f"Field '{where}': {first['msg']}.", detail=detail[:20])
