"""The HTTP app: ``POST /predict`` through the dynamic batcher, health, readiness, metadata
and Prometheus metrics. Built around a :class:`~torchlab.exporters.runtime.Predictor` that is
loaded once at start-up; no endpoint loads a model at runtime.

Request bodies larger than a few rows or a small image are decoded into model inputs in
worker threads (``run_in_threadpool``), so decoding a large image never holds up the event
loop: ``/health`` and other requests are answered meanwhile.

``POST /predict`` with a JSON body and ``POST /predict/image`` are answered by the
:class:`~torchlab.serve.guard.Guard` in front of FastAPI's routing, through the same
functions as the routes declared here for the OpenAPI schema: per request, FastAPI's
routing, request object and dependency solving cost more than decoding a small image.
"""

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pydantic
from fastapi import FastAPI, File, Request, UploadFile
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from torchlab.errors import DataError
from torchlab.exporters.runtime import Predictor
from torchlab.serve.answers import Prediction, response_of
from torchlab.serve.batcher import DynamicBatcher, ModelFailed, QueueFull
from torchlab.serve.guard import Guard
from torchlab.serve.limits import RETRY_AFTER_S, Busy, OverBudget, PixelBudget
from torchlab.serve.metrics import CONTENT_TYPE, Metrics
from torchlab.serve.requests import BadRequest, Decoded, Later, request_kind
from torchlab.serve.responses import (
    Answer,
    error,
    install_error_handlers,
    invalid_body,
    unreadable,
)
from torchlab.serve.settings import ServeSettings

RETRY = {"Retry-After": str(RETRY_AFTER_S)}
ANSWERS: dict[int | str, dict[str, Any]] = {
    code: {} for code in (400, 401, 408, 413, 422, 503, 504)
}
IMAGE_BODY = {
    "required": True,
    "content": {
        media: {"schema": {"type": "string", "format": "binary"}}
        for media in ("image/png", "image/jpeg", "image/*", "application/octet-stream")
    },
}


def create_app(predictor: Predictor, settings: ServeSettings | None = None) -> FastAPI:
    """The FastAPI app serving ``predictor``; the batcher starts with the app's lifespan.

    ``app.state`` holds its ``settings`` and ``metrics`` (see
    :func:`~torchlab.serve.server.server_config`).
    """
    settings = settings or ServeSettings()
    metrics = Metrics()
    budget = PixelBudget(settings.max_request_pixels, settings.max_inflight_pixels)
    metrics.watch(decoding=lambda: budget.held)
    kind = request_kind(predictor, settings.max_rows, settings.max_pixels, budget)
    response = response_of(predictor.task.deployment.resolve("answer") or Prediction)
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
    app.state.settings, app.state.metrics = settings, metrics
    install_error_handlers(app, metrics)

    async def decode(convert: Any, given: Any, field: str = "") -> Decoded | Answer:
        """``convert(given)`` as :class:`Decoded` inputs or a 4xx/503; what it leaves for
        :class:`Later` runs in a worker thread."""
        try:
            decoded = convert(given)
            if isinstance(decoded, Later):
                decoded = await run_in_threadpool(decoded.work)
        except OverBudget as exc:
            metrics.error("too_large")
            return error(413, str(exc))
        except Busy as exc:
            metrics.error("busy")
            return error(503, str(exc), headers=RETRY)
        except BadRequest as exc:
            metrics.error("bad_request")
            return error(400, str(exc))
        except DataError as exc:
            metrics.error("bad_input")
            return error(422, f"{field}{exc}")
        return decoded if isinstance(decoded, Decoded) else Decoded(decoded, given)

    async def answer(decoded: Decoded) -> Answer:
        try:
            outputs = await state["batcher"].submit(decoded.inputs, settings.timeout_s)
        except QueueFull:
            metrics.error("queue_full")
            return error(
                503, "The server is at capacity (request queue full); retry shortly.", RETRY
            )
        except (TimeoutError, asyncio.TimeoutError):  # the same class from Python 3.11
            metrics.error("timeout")
            return error(504, f"No answer within {settings.timeout_s} s; retry or send fewer rows.")
        except ModelFailed as exc:
            metrics.error("model")
            return error(500, f"The model failed on the batch holding this request ({exc}).")
        if kind.records is None:
            predictions = predictor.records(outputs)
        else:
            try:
                predictions = kind.records(outputs, decoded.inputs, decoded.context)
            except DataError as exc:
                metrics.error("bad_input")
                return error(422, str(exc))
        for cell in decoded.unseen:
            predictions[cell.row].setdefault("warnings", []).append(cell.warning)
            metrics.unseen(cell.column)
        return Answer({"predictions": predictions})

    @app.post(
        "/predict",
        response_model=response,
        response_model_exclude_none=True,
        responses=ANSWERS,
    )
    async def predict(body: kind.model) -> Any:  # type: ignore[name-defined]
        """Predict for table rows, base64-encoded images, texts or series histories (the
        request schema is the served model's)."""
        return await body_answer(body)

    async def body_answer(body: pydantic.BaseModel) -> Answer:
        decoded = await decode(kind.decode, body)
        return decoded if isinstance(decoded, Answer) else await answer(decoded)

    async def json_answer(content_type: str, body: bytes) -> Answer | None:
        """``POST /predict``'s answer to a JSON body, read and validated as FastAPI does
        (the same errors); the Guard calls it directly under load. None: another content
        type or an empty body, which FastAPI's route answers."""
        if not body or content_type.partition(";")[0].strip().lower() != "application/json":
            return None
        try:
            given = json.loads(body)
        except json.JSONDecodeError as exc:
            return invalid_body([{"type": "json_invalid", "loc": ("body", exc.pos)}], metrics)
        except Exception as exc:  # too deep, not UTF-8, an integer too long
            return unreadable(exc, metrics)
        if given is None:  # FastAPI says the body is missing
            return None
        try:
            request = kind.model.model_validate(given, from_attributes=True)  # as FastAPI
        except pydantic.ValidationError as exc:
            errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]
            return invalid_body(errors, metrics)
        return await body_answer(request)

    if kind.files is not None:

        @app.post(
            "/predict/upload",
            response_model=response,
            response_model_exclude_none=True,
            responses=ANSWERS,
        )
        async def predict_upload(files: list[UploadFile] = File(...)) -> Any:  # noqa: B008
            """Predict for uploaded image files (multipart/form-data, field ``files``)."""
            if len(files) > settings.max_rows:
                return error(422, f"Field 'files': at most {settings.max_rows} images per request.")
            images = [await f.read() for f in files]
            decoded = await decode(kind.files, images, "Field 'files': ")
            return decoded if isinstance(decoded, Answer) else await answer(decoded)

        @app.post(
            "/predict/image",
            response_model=response,
            response_model_exclude_none=True,
            responses={**ANSWERS, 415: {}},
            openapi_extra={"requestBody": IMAGE_BODY},
        )
        async def predict_image(request: Request) -> Any:
            """Predict for one image sent as the raw body (``Content-Type: image/png``,
            ``image/jpeg``, ...): no base64, JSON or multipart to parse, the cheapest path."""
            return await image_answer(request.headers.get("content-type", ""), await request.body())

        async def image_answer(content_type: str, body: bytes) -> Answer:
            """``POST /predict/image``'s answer; the Guard calls it directly under load."""
            media = content_type.partition(";")[0].strip().lower()
            if not (media.startswith("image/") or media == "application/octet-stream"):
                metrics.error("bad_request")
                return error(
                    415,
                    f"POST /predict/image takes the image file itself as the body, with "
                    f"Content-Type image/png, image/jpeg, ... (received {media or 'none'}); "
                    "send JSON to /predict.",
                )
            if not body:
                metrics.error("bad_request")
                return error(400, "The request body is empty; send the image file as the body.")
            decoded = await decode(kind.files, [body], "Body: ")
            return decoded if isinstance(decoded, Answer) else await answer(decoded)

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

    @app.get("/metrics", response_class=Response)
    async def prometheus() -> Response:
        """Prometheus text format: requests, latency, batch sizes, errors, unseen categories,
        queue depth, pixels being decoded, process memory."""
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    paths = {route.path for route in app.routes}
    direct = {"/predict": json_answer}
    if kind.files is not None:
        direct["/predict/image"] = image_answer
    app.add_middleware(Guard, metrics=metrics, settings=settings, paths=paths, direct=direct)  # type: ignore[arg-type]
    return app
