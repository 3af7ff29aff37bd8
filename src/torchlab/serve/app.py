"""The HTTP app: ``POST /predict`` through the dynamic batcher, health, readiness, metadata
and Prometheus metrics. Built around a :class:`~torchlab.exporters.runtime.Predictor` that is
loaded once at start-up; no endpoint loads a model at runtime.
"""

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from typing import Any

from fastapi import FastAPI, File, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field

from torchlab.errors import ConfigError, DataError
from torchlab.exporters.runtime import Predictor
from torchlab.serve.batcher import DynamicBatcher, ModelFailed, QueueFull
from torchlab.serve.metrics import Metrics
from torchlab.serve.requests import BadRequest, Decoded, request_kind

OPEN_PATHS = {"/health", "/ready", "/docs", "/openapi.json", "/docs/oauth2-redirect"}


@dataclass(frozen=True)
class ServeSettings:
    """How the server batches and what it accepts.

    Attributes:
        max_batch: Most rows per model call; 1 turns dynamic batching off.
        max_wait_ms: How long the first request of a batch waits for others.
        queue_size: Most requests waiting for the model; more get 503.
        timeout_s: Per-request time limit; a slower answer gets 504.
        max_body_bytes: Largest request body (413 beyond, counted as it streams in).
        max_rows: Most rows or images in one request.
        max_pixels: Most pixels in one uploaded image.
        api_key: When set, requests other than health/ready/docs need header ``X-API-Key``.
    """

    max_batch: int = 32
    max_wait_ms: float = 5.0
    queue_size: int = 1024
    timeout_s: float = 10.0
    max_body_bytes: int = 8 * 1024 * 1024
    max_rows: int = 256
    max_pixels: int = 16_000_000
    api_key: str | None = None

    def __post_init__(self) -> None:
        for name in ("max_batch", "queue_size", "max_body_bytes", "max_rows", "max_pixels"):
            if getattr(self, name) < 1:
                raise ConfigError(
                    f"Received {name}={getattr(self, name)}; expected a positive integer."
                )
        for name in ("max_wait_ms", "timeout_s"):
            if not getattr(self, name) > 0 and not (
                name == "max_wait_ms" and self.max_wait_ms == 0
            ):
                raise ConfigError(
                    f"Received {name}={getattr(self, name)}; expected a positive number."
                )

    def public(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "api_key"}


class Box(BaseModel):
    """One box found in an image, in the pixels of the image as sent."""

    box: list[float] = Field(..., description="x0, y0, x1, y1")
    label: str
    score: float


class Prediction(BaseModel):
    """One answer: a label and probabilities, values, generated text, a forecast, the boxes
    found in an image, or an image's mask of classes (base64 PNG) and class fractions."""

    label: str | int | list[str] | None = None
    probabilities: dict[str, float] | None = None
    prediction: dict[str, float] | None = None
    output: str | None = None
    timestamps: list[str] | None = None
    forecast: dict[str, list[float]] | None = None
    lower: dict[str, list[float]] | None = None
    upper: dict[str, list[float]] | None = None
    detections: list[Box] | None = None
    mask: str | None = None
    fractions: dict[str, float] | None = None


class PredictResponse(BaseModel):
    predictions: list[Prediction]


def error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


def create_app(predictor: Predictor, settings: ServeSettings | None = None) -> FastAPI:
    """The FastAPI app serving ``predictor``; the batcher starts with the app's lifespan."""
    settings = settings or ServeSettings()
    metrics = Metrics()
    kind = request_kind(predictor, settings.max_rows, settings.max_pixels)
    state: dict[str, Any] = {"ready": False, "batcher": None}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher = DynamicBatcher(
            predictor,
            max_batch=settings.max_batch,
            max_wait=settings.max_wait_ms / 1000,
            queue_size=settings.queue_size,
            metrics=metrics,
        )
        await batcher.start()
        state["batcher"] = batcher
        # Warm up at batch 1 and the largest batch, so the first callers see normal latency.
        for rows in {1, settings.max_batch}:
            example = (
                kind.example(rows)
                if kind.example is not None
                else predictor.kind.example(predictor.spec.input_shape, rows)
            )
            await asyncio.get_running_loop().run_in_executor(batcher.executor, predictor, example)
        state["ready"] = True
        yield
        state["ready"] = False
        await batcher.stop()

    app = FastAPI(
        title="torchlab model server",
        version="1",
        description=f"Predictions of {predictor.metadata.get('recipe', 'a torchlab model')} "
        f"({predictor.metadata.get('format', 'eager')}).",
        lifespan=lifespan,
    )

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
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

    async def run(inputs: Any, body: Any = None) -> JSONResponse:
        if isinstance(inputs, Decoded):  # records get what the answers need (image sizes)
            inputs, body = inputs.inputs, inputs.context
        try:
            outputs = await state["batcher"].submit(inputs, settings.timeout_s)
        except QueueFull:
            metrics.error("queue_full")
            return error(503, "The server is at capacity (request queue full); retry shortly.")
        except TimeoutError:
            metrics.error("timeout")
            return error(504, f"No answer within {settings.timeout_s} s; retry or send fewer rows.")
        except ModelFailed as exc:
            metrics.error("model")
            return error(500, f"The model failed on the batch holding this request ({exc}).")
        if kind.records is not None:
            try:
                return JSONResponse({"predictions": kind.records(outputs, inputs, body)})
            except DataError as exc:
                metrics.error("bad_input")
                return error(422, str(exc))
        return JSONResponse({"predictions": predictor.records(outputs)})

    def decode(body: Any) -> Any:
        try:
            return kind.decode(body)
        except BadRequest as exc:
            metrics.error("bad_request")
            return error(400, str(exc))
        except DataError as exc:
            metrics.error("bad_input")
            return error(422, str(exc))

    @app.post(
        "/predict",
        response_model=PredictResponse,
        response_model_exclude_none=True,
        responses={400: {}, 401: {}, 413: {}, 422: {}, 503: {}, 504: {}},
    )
    async def predict(body: kind.model) -> Any:  # type: ignore[name-defined]
        """Predict for table rows, base64-encoded images, texts or series histories (the
        request schema is the served model's)."""
        inputs = decode(body)
        return inputs if isinstance(inputs, JSONResponse) else await run(inputs, body)

    if kind.files is not None:

        @app.post(
            "/predict/upload",
            response_model=PredictResponse,
            response_model_exclude_none=True,
            responses={400: {}, 401: {}, 413: {}, 422: {}, 503: {}, 504: {}},
        )
        async def predict_upload(files: list[UploadFile] = File(...)) -> Any:  # noqa: B008
            """Predict for uploaded image files (multipart/form-data, field ``files``)."""
            if len(files) > settings.max_rows:
                return error(422, f"Field 'files': at most {settings.max_rows} images per request.")
            images = [await f.read() for f in files]
            try:
                inputs = kind.files(images)
            except DataError as exc:
                metrics.error("bad_input")
                return error(422, f"Field 'files': {exc}")
            return await run(inputs)

    @app.get("/health")
    async def health() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/ready", responses={503: {}})
    async def ready() -> Any:
        """Readiness: the model is loaded and warmed up."""
        if not state["ready"]:
            return error(503, "The model is still loading.")
        return {"status": "ready"}

    @app.get("/metadata")
    async def metadata() -> dict[str, Any]:
        """What the model expects and returns, where it came from, how it was verified."""
        return {
            **predictor.metadata,
            "class_names": list(predictor.spec.class_names),
            "target_names": list(predictor.spec.target_names),
            "request": kind.model.model_json_schema(by_alias=True),
            "settings": settings.public(),
        }

    @app.get("/metrics", response_class=PlainTextResponse)
    async def prometheus() -> str:
        """Prometheus text format: requests, latency, batch sizes, errors, queue depth."""
        return metrics.render()

    paths = {route.path for route in app.routes}
    app.add_middleware(Guard, metrics=metrics, settings=settings, paths=paths)  # type: ignore[arg-type]
    return app


class Guard:
    """ASGI middleware: API key, request-size limit on the streamed body, request metrics.

    The body limit is counted as the body arrives, so a client that sends no (or a false)
    Content-Length still cannot make the server hold more than ``max_body_bytes``.
    """

    def __init__(
        self, app: Any, *, metrics: Metrics, settings: ServeSettings, paths: set[str]
    ) -> None:
        self.app, self.metrics, self.settings, self.paths = app, metrics, settings, paths

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, path, status = time.perf_counter(), scope["path"], [500]

        async def send_status(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.guarded(scope, receive, send_status)
        finally:
            known = path if path in self.paths else "other"  # bounded label values
            self.metrics.request(known, status[0], time.perf_counter() - started)

    async def guarded(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        key = self.settings.api_key
        if key is not None and scope["path"] not in OPEN_PATHS:
            given = dict(scope["headers"]).get(b"x-api-key", b"")
            if not secrets.compare_digest(given, key.encode()):
                self.metrics.error("unauthorized")
                await respond(send, 401, "Missing or wrong API key; send header X-API-Key.")
                return
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        limit = self.settings.max_body_bytes
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await self.too_large(send, limit)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > limit:
                await self.too_large(send, limit)
                return
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def too_large(self, send: Any, limit: int) -> None:
        self.metrics.error("too_large")
        await respond(
            send, 413, f"The request body is over {limit} bytes; send fewer rows per request."
        )


async def respond(send: Any, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
