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
from pydantic import ConfigDict, Field

from torchlab.errors import DataError
from torchlab.registry import Registry

REQUEST_KINDS = Registry(
    "request kind", ["torchlab.serve.requests", "torchlab.serve.series", "torchlab.serve.pixels"]
)


class BadRequest(Exception):
    """A request that is well-formed JSON but wrong (400), naming the field."""


@dataclass(frozen=True)
class RequestKind:
    """How one input kind is posted to ``/predict``.

    Attributes:
        model: The pydantic model of the JSON body (shown in the OpenAPI schema).
        decode: Validated body -> model inputs ``(B, ...)`` (a tensor or a dict of them).
        records: ``(outputs, inputs, body)`` -> one JSON-ready answer per row; by default
            the predictor's label and probabilities (or values, or generated text).
        example: Rows -> a model input to warm up with; by default the input kind's.
        files: Uploaded files (bytes each) -> model inputs; when set, the server also
            answers multipart uploads on ``/predict/upload``.
    """

    model: type[pydantic.BaseModel]
    decode: Callable[[Any], Any]
    records: Callable[[Any, Any, Any], list[dict[str, Any]]] | None = None
    example: Callable[[int], Any] | None = None
    files: Callable[[list[bytes]], Any] | None = None


@dataclass(frozen=True)
class Decoded:
    """Model inputs with what their answers need beyond the outputs (e.g. each image's own
    size), for ``decode`` or ``files`` to return; ``records`` then gets ``context`` in place
    of the request body."""

    inputs: Any
    context: Any


Finite = Annotated[float, Field(allow_inf_nan=False)]
MAX_TOKENS = 1024  # longest text a generation request may send, in tokens


@REQUEST_KINDS.register("tabular")
def tabular(predictor: Any, max_rows: int, max_pixels: int) -> RequestKind:
    """``{"rows": [{column: value}, ...]}``: every trained column, null for a blank."""
    fields: dict[str, Any] = {}
    for i, column in enumerate(predictor.featurizer.columns):
        kind = Finite | None if column.kind == "numeric" else str | Finite | None
        fields[f"c{i}"] = (kind, Field(..., alias=column.name))
    row = pydantic.create_model(
        "Row", __config__=ConfigDict(extra="forbid", populate_by_name=False), **fields
    )
    body = pydantic.create_model(
        "TabularRequest",
        __config__=ConfigDict(extra="forbid"),
        rows=(list[row], Field(..., min_length=1, max_length=max_rows)),  # type: ignore[valid-type]
    )

    def decode(request: Any) -> torch.Tensor:
        return predictor.rows_to_inputs([r.model_dump(by_alias=True) for r in request.rows])

    return RequestKind(body, decode)


@REQUEST_KINDS.register("image")
def image(predictor: Any, max_rows: int, max_pixels: int) -> RequestKind:
    """``{"images": ["<base64 PNG/JPEG>", ...]}``."""
    body = pydantic.create_model(
        "ImageRequest",
        __config__=ConfigDict(extra="forbid"),
        images=(list[str], Field(..., min_length=1, max_length=max_rows)),
    )

    def files(images: list[bytes]) -> torch.Tensor:
        return predictor.images_to_inputs(images, max_pixels=max_pixels)

    def decode(request: Any) -> torch.Tensor:
        try:
            return files([b64(i, text) for i, text in enumerate(request.images)])
        except DataError as exc:
            raise DataError(f"Field 'images': {exc}") from None

    return RequestKind(body, decode, files=files)


@REQUEST_KINDS.register("text")
def text(predictor: Any, max_rows: int, max_pixels: int) -> RequestKind:
    """``{"texts": ["...", ...]}``: token ids padded to the trained ``max_length``.

    Fixed-width ids let the batcher concatenate requests; text models derive the mask and
    lengths from the padding id, so the padding changes no result.
    """
    body = pydantic.create_model(
        "TextRequest",
        __config__=ConfigDict(extra="forbid"),
        texts=(list[str], Field(..., min_length=1, max_length=max_rows)),
    )
    featurizer = predictor.featurizer
    if not hasattr(featurizer, "texts_to_inputs"):  # seq2seq and language models
        return generation(predictor, body)

    def decode(request: Any) -> torch.Tensor:
        try:
            ids = featurizer.texts_to_inputs(request.texts)["ids"]  # (B, T <= max_length)
        except DataError as exc:
            raise DataError(f"Field 'texts': {exc}") from None
        width = featurizer.max_length - ids.shape[1]
        return torch.nn.functional.pad(ids, (0, width), value=featurizer.tokenizer.pad_id)

    return RequestKind(body, decode)


def generation(predictor: Any, body: type[pydantic.BaseModel]) -> RequestKind:
    """Texts to generate from (seq2seq sources, language-model prompts): ids padded with -1,
    as ``torchlab predict`` feeds them, and answered with the generated text."""
    featurizer = predictor.featurizer
    vocabulary = max(1, len(predictor.spec.class_names))

    def decode(request: Any) -> torch.Tensor:
        if any(not text.strip() for text in request.texts):
            at = next(i for i, text in enumerate(request.texts) if not text.strip())
            raise DataError(f"Field 'texts.{at}' is empty; send some text to generate from.")
        ids = featurizer.encode(request.texts)  # (B, T), -1 after each text's end
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


def request_kind(predictor: Any, max_rows: int, max_pixels: int) -> RequestKind:
    entry = REQUEST_KINDS.get(predictor.kind.name, "input kind")
    return entry.builder(predictor, max_rows, max_pixels)
