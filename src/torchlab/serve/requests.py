"""Request bodies per input kind: a pydantic model (so the OpenAPI schema is exact) and how
a validated body becomes model inputs. A new input kind (text, series) registers its own.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import pydantic
import torch
from pydantic import ConfigDict, Field, GetPydanticSchema
from pydantic_core import core_schema

from torchlab.errors import DataError
from torchlab.registry import Registry
from torchlab.serve.limits import OverBudget, PixelBudget

REQUEST_KINDS = Registry(
    "request kind", ["torchlab.serve.requests", "torchlab.serve.series", "torchlab.serve.pixels"]
)


class BadRequest(Exception):
    """A request that is well-formed JSON but wrong (400), naming the field."""


@dataclass(frozen=True)
class Limits:
    """What one request may hold: rows (or images, texts, series), pixels per image, and
    the pixel budget its images are decoded under."""

    max_rows: int
    max_pixels: int
    pixels: PixelBudget


@dataclass(frozen=True)
class RequestKind:
    """How one input kind is posted to ``/predict``.

    Attributes:
        model: The pydantic model of the JSON body (shown in the OpenAPI schema).
        decode: Validated body -> model inputs ``(B, ...)`` (a tensor or a dict of them),
            or :class:`Later` for work too large for the event loop.
        records: ``(outputs, inputs, body)`` -> one JSON-ready answer per row; by default
            the predictor's label and probabilities (or values, or generated text).
        example: Rows -> a model input to warm up with; by default the input kind's.
        files: Uploaded files (bytes each) -> model inputs (or :class:`Later`); when set,
            the server also answers ``/predict/upload`` and ``/predict/image``.
    """

    model: type[pydantic.BaseModel]
    decode: Callable[[Any], Any]
    records: Callable[[Any, Any, Any], list[dict[str, Any]]] | None = None
    example: Callable[[int], Any] | None = None
    files: Callable[[list[bytes]], Any] | None = None


@dataclass(frozen=True)
class Later:
    """Decoding too large for the event loop, returned by ``decode`` or ``files`` in place
    of inputs: the server runs ``work`` in a worker thread, so that other requests and
    ``/health`` are answered meanwhile. Small requests are decoded at once: handing them to
    a thread cost more than decoding them (about 0.25 ms of the server's CPU each)."""

    work: Callable[[], Any]


# Up to these, a request is decoded on the event loop (tens of microseconds): images whose
# headers hold this many pixels in all, and table rows or texts (of MAX_INLINE_CHARS).
MAX_INLINE_PIXELS = 128 * 128
MAX_INLINE_ROWS = 8
MAX_INLINE_CHARS = 4096


def now_or_later(small: bool, work: Callable[[], Any]) -> Any:
    """``work()`` when the request is small, else :class:`Later` for a worker thread."""
    return work() if small else Later(work)


def done(decoded: Any) -> Any:
    """What ``decode`` gave, with the work it left for later done here (outside a server)."""
    return decoded.work() if isinstance(decoded, Later) else decoded


@dataclass(frozen=True)
class Unseen:
    """A table cell holding a category not seen in training (encoded as all zeros)."""

    row: int
    column: str
    value: str

    @property
    def warning(self) -> str:
        shown = self.value if len(self.value) <= 40 else f"{self.value[:40]}..."
        return (
            f"column '{self.column}': {shown!r} was not seen in training; treated as all-zero "
            "one-hot"
        )


@dataclass(frozen=True)
class Decoded:
    """Model inputs with what their answers need beyond the outputs (e.g. each image's own
    size), for ``decode`` or ``files`` to return; ``records`` then gets ``context`` in place
    of the request body. ``unseen`` cells are reported in their rows' answers."""

    inputs: Any
    context: Any = None
    unseen: tuple[Unseen, ...] = ()


def one_of(message: str, *choices: core_schema.CoreSchema) -> GetPydanticSchema:
    """A union answered with one error ``message`` (not one error per choice)."""
    return GetPydanticSchema(
        lambda _type, _handler: core_schema.union_schema(
            list(choices), custom_error_type="invalid_value", custom_error_message=message
        )
    )


# Strict numbers: JSON true and "5.1" are refused (bool is an int in Python, hence strict).
FINITE = core_schema.float_schema(strict=True, allow_inf_nan=False)
Finite = Annotated[float, Field(strict=True, allow_inf_nan=False)]
NumberOrBlank = Annotated[
    float | str | None,
    one_of(
        'Input should be a finite number, or null or "" for a blank',
        FINITE,
        core_schema.literal_schema([""]),
        core_schema.none_schema(),
    ),
]
CategoryOrBlank = Annotated[
    str | bool | int | float | None,
    one_of(
        'Input should be text, a finite number, true or false, or null or "" for a blank',
        core_schema.str_schema(strict=True),
        core_schema.bool_schema(strict=True),
        core_schema.int_schema(strict=True),
        FINITE,
        core_schema.none_schema(),
    ),
]
MAX_TOKENS = 1024  # longest text a generation request may send, in tokens


@REQUEST_KINDS.register("tabular")
def tabular(predictor: Any, limits: Limits) -> RequestKind:
    """``{"rows": [{column: value}, ...]}``: a trained column left out, null or ``""`` is a
    blank, imputed as a blank CSV cell is."""
    fields: dict[str, Any] = {}
    for i, column in enumerate(predictor.featurizer.columns):
        kind = NumberOrBlank if column.kind == "numeric" else CategoryOrBlank
        fields[f"c{i}"] = (kind, Field(None, alias=column.name))
    row = pydantic.create_model(
        "Row", __config__=ConfigDict(extra="forbid", populate_by_name=False), **fields
    )
    body = pydantic.create_model(
        "TabularRequest",
        __config__=ConfigDict(extra="forbid"),
        rows=(list[row], Field(..., min_length=1, max_length=limits.max_rows)),  # type: ignore[valid-type]
    )

    def inputs(request: Any) -> Decoded:
        frame = predictor.rows_to_frame([r.model_dump(by_alias=True) for r in request.rows])
        unseen = tuple(Unseen(*cell) for cell in predictor.featurizer.unseen(frame))
        return Decoded(predictor.frame_to_inputs(frame), unseen=unseen)

    def decode(request: Any) -> Any:
        return now_or_later(len(request.rows) <= MAX_INLINE_ROWS, lambda: inputs(request))

    return RequestKind(body, decode)


@REQUEST_KINDS.register("image")
def image(predictor: Any, limits: Limits) -> RequestKind:
    """``{"images": ["<base64 PNG/JPEG>", ...]}``."""
    body = pydantic.create_model(
        "ImageRequest",
        __config__=ConfigDict(extra="forbid"),
        images=(list[str], Field(..., min_length=1, max_length=limits.max_rows)),
    )

    decode, files = image_decoding(predictor, limits, lambda inputs, sizes: inputs)
    return RequestKind(body, decode, files=files)


def image_decoding(
    predictor: Any, limits: Limits, inputs: Callable[[torch.Tensor, list[Any]], Any]
) -> tuple[Callable[[Any], Any], Callable[[list[bytes]], Any]]:
    """``decode`` (a body of base64 images) and ``files`` (uploaded images) for an image
    model; both give ``inputs(pixels (B, C, H, W), each image's (h, w))``, or :class:`Later`
    unless the images are small. Headers are checked at once, so a bad or oversized image is
    answered before any decoding."""

    def files(images: list[bytes]) -> Any:
        opened = predictor.open_images(images, limits.max_pixels)  # headers: bounded work

        def work() -> Any:
            return inputs(
                *predictor.decode_images(images, limits.max_pixels, limits.pixels.hold, opened)
            )

        return now_or_later(sum(i.width * i.height for i in opened) <= MAX_INLINE_PIXELS, work)

    def decode(request: Any) -> Any:
        decoded = named(lambda: files([b64(i, text) for i, text in enumerate(request.images)]))
        return Later(lambda: named(decoded.work)) if isinstance(decoded, Later) else decoded

    def named(work: Callable[[], Any]) -> Any:
        try:
            return work()
        except OverBudget:  # 413, about all the images
            raise
        except DataError as exc:
            raise DataError(f"Field 'images': {exc}") from None

    return decode, files


@REQUEST_KINDS.register("text")
def text(predictor: Any, limits: Limits) -> RequestKind:
    """``{"texts": ["...", ...]}``: token ids padded to the trained ``max_length``.

    Fixed-width ids let the batcher concatenate requests; text models derive the mask and
    lengths from the padding id, so the padding changes no result.
    """
    body = pydantic.create_model(
        "TextRequest",
        __config__=ConfigDict(extra="forbid"),
        texts=(list[str], Field(..., min_length=1, max_length=limits.max_rows)),
    )
    featurizer = predictor.featurizer
    if not hasattr(featurizer, "texts_to_inputs"):  # seq2seq and language models
        return generation(predictor, body)

    def ids(texts: list[str]) -> torch.Tensor:
        ids = featurizer.texts_to_inputs(texts)["ids"]  # (B, T <= max_length)
        width = featurizer.max_length - ids.shape[1]
        return torch.nn.functional.pad(ids, (0, width), value=featurizer.tokenizer.pad_id)

    def decode(request: Any) -> Any:
        for i, text in enumerate(request.texts):
            if not text.strip():
                raise DataError(f"Field 'texts.{i}' is empty; send non-empty texts.")
        return now_or_later(small_texts(request.texts), lambda: ids(request.texts))

    return RequestKind(body, decode)


def small_texts(texts: list[str]) -> bool:
    return len(texts) <= MAX_INLINE_ROWS and sum(map(len, texts)) <= MAX_INLINE_CHARS


def generation(predictor: Any, body: type[pydantic.BaseModel]) -> RequestKind:
    """Texts to generate from (seq2seq sources, language-model prompts): ids padded with -1,
    as ``torchlab predict`` feeds them, and answered with the generated text."""
    featurizer = predictor.featurizer
    vocabulary = max(1, len(predictor.spec.class_names))

    def decode(request: Any) -> Any:
        if any(not text.strip() for text in request.texts):
            at = next(i for i, text in enumerate(request.texts) if not text.strip())
            raise DataError(f"Field 'texts.{at}' is empty; send some text to generate from.")
        return now_or_later(small_texts(request.texts), lambda: ids(request.texts))

    def ids(texts: list[str]) -> torch.Tensor:
        ids = featurizer.encode(texts)  # (B, T), -1 after each text's end
        if ids.shape[1] > MAX_TOKENS:  # bounded work per request; positional tables end too
            at = int((ids >= 0).sum(1).argmax())
            raise DataError(
                f"Field 'texts.{at}' is {ids.shape[1]} tokens long, over the limit of "
                f"{MAX_TOKENS}; send shorter texts."
            )
        return ids

    def example(rows: int) -> torch.Tensor:
        return torch.randint(0, vocabulary, (rows, max(1, predictor.spec.input_shape[0])))

    return RequestKind(body, decode, example=example)


def concat(parts: list[Any]) -> Any:
    """Model inputs of several requests as one batch: tensors (or dicts of them) joined on
    the batch axis; token ids of different lengths are padded with -1, the padding
    ``torchlab predict`` uses for generation (models derive lengths from it)."""
    if isinstance(parts[0], dict):
        return {name: concat([part[name] for part in parts]) for name in parts[0]}
    width = max(part.shape[-1] for part in parts) if parts[0].ndim == 2 else None
    if width is not None and any(part.shape[-1] != width for part in parts):
        parts = [torch.nn.functional.pad(p, (0, width - p.shape[-1]), value=-1) for p in parts]
    return torch.cat(parts)


def rows(inputs: Any) -> int:
    """The batch size of model inputs (a tensor or a dict of tensors)."""
    return len(next(iter(inputs.values())) if isinstance(inputs, dict) else inputs)


def b64(index: int, text: str) -> bytes:
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(
            f"Field 'images.{index}' is not valid base64; send the image file base64-encoded."
        ) from None
    if not data:
        raise BadRequest(f"Field 'images.{index}' is empty; send an image file base64-encoded.")
    return data


def request_kind(
    predictor: Any, max_rows: int, max_pixels: int, budget: PixelBudget | None = None
) -> RequestKind:
    """How ``predictor``'s inputs are posted, with these limits (``budget``: the pixels
    decoded at once, per request and over requests; its defaults when None)."""
    entry = REQUEST_KINDS.get(predictor.kind.name, "input kind")
    return entry.builder(predictor, Limits(max_rows, max_pixels, budget or PixelBudget()))
