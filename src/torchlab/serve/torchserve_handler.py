"""TorchServe handler for torchlab archives (copied into ``model.mar``).

Requests take the JSON bodies of ``torchlab serve``'s ``POST /predict``: ``{"rows": [...]}``
for a tabular model, ``{"images": ["<base64>", ...]}`` for an image model and
``{"texts": ["...", ...]}`` for a text classifier; an image file's bytes or a UTF-8 text as
the whole body are one image or one text. Each request is answered with a list of
predictions, one per row, image or text, exactly as ``torchlab predict`` computes them: the
archive's ``export.json`` and side files (``tokenizer.json``) rebuild the run's featurizer,
and the server's own request decoding turns bodies into model inputs.
"""

from __future__ import annotations

import json
from typing import Any

SHAPES = {
    "image": 'the image file as the body, or {"images": ["<base64 image>", ...]}',
    "tabular": '{"rows": [{column: value, ...}, ...]}',
    "text": '{"texts": ["...", ...]}, or one UTF-8 text as the body',
}

_predictor: Any = None
_request: Any = None  # the server's request kind of the model's inputs
_settings: Any = None  # the server's default limits on rows and pixels per request


def _body(kind: str, body: Any) -> Any:
    """The request as the server's JSON body (a dict), or an image file's bytes."""
    if isinstance(body, (bytes, bytearray)):
        if kind == "image" and not bytes(body).lstrip().startswith(b"{"):  # not JSON
            return bytes(body)
        try:
            body = bytes(body).decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"The request body is not UTF-8; send {SHAPES[kind]}.") from None
    if isinstance(body, str) and body.lstrip().startswith("{"):
        try:
            return json.loads(body)
        except ValueError:
            raise ValueError(f"The request body is not valid JSON; send {SHAPES[kind]}.") from None
    if isinstance(body, str) and kind == "text":
        return {"texts": [body]}
    return body


def _inputs(body: Any) -> Any:
    """One request's model inputs, through the server's validation and decoding."""
    import pydantic

    from torchlab.serve.requests import Decoded

    kind = _predictor.kind.name
    body = _body(kind, body)
    if isinstance(body, bytes):
        return _predictor.images_to_inputs([body], max_pixels=_settings.max_pixels)
    try:
        request = _request.model.model_validate(body)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"])) or "body"
        raise ValueError(f"Field '{where}': {first['msg']}; send {SHAPES[kind]}.") from None
    inputs = _request.decode(request)
    return inputs.inputs if isinstance(inputs, Decoded) else inputs  # table rows come as Decoded


def handle(data: list[dict[str, Any]] | None, context: Any) -> list[Any] | None:
    """TorchServe's entry point: one answer per request in the (possibly batched) list.

    A request that cannot be read gets status 400 and one sentence saying why; the others in
    its batch are answered as usual.
    """
    global _predictor, _request, _settings
    from torchlab.errors import DataError
    from torchlab.exporters.runtime import load_export
    from torchlab.serve import ServeSettings
    from torchlab.serve.requests import BadRequest, concat, request_kind, rows

    if _predictor is None:
        _predictor = load_export(context.system_properties["model_dir"])
        _settings = ServeSettings()
        _request = request_kind(_predictor, _settings.max_rows, _settings.max_pixels)
    if data is None:  # TorchServe's initialisation call
        return None
    answers: list[Any] = [None] * len(data)
    parts: dict[int, Any] = {}
    for i, request in enumerate(data):
        try:
            parts[i] = _inputs(request.get("data") or request.get("body"))
        except (ValueError, DataError, BadRequest) as exc:
            context.set_response_status(400, str(exc), i)
            answers[i] = {"code": 400, "message": str(exc)}
    if parts:
        records, start = _predictor.records(_predictor(concat(list(parts.values())))), 0
        for i, part in parts.items():
            answers[i] = records[start : start + rows(part)]
            start += rows(part)
    return answers
