"""TorchServe handler for torchlab archives (copied into ``model.mar``).

Requests: a tabular model takes ``{"rows": [{column: value, ...}, ...]}`` as JSON; an image
model takes the image file's bytes as the body. Each request is answered with a list of
predictions, one per row or image, exactly as ``torchlab predict`` computes them: the
archive's ``export.json`` rebuilds the run's featurizer (the same preprocessing code).
"""

from __future__ import annotations

import json
from typing import Any

_predictor: Any = None


def _inputs(predictor: Any, body: Any) -> Any:
    if predictor.kind.name == "image":
        if not isinstance(body, (bytes, bytearray)):
            raise ValueError("send the image file's bytes as the request body")
        return predictor.images_to_inputs([bytes(body)])
    if isinstance(body, (bytes, bytearray)):
        body = json.loads(body)
    if not isinstance(body, dict) or not isinstance(body.get("rows"), list):
        raise ValueError('send JSON shaped {"rows": [{column: value, ...}, ...]}')
    return predictor.rows_to_inputs(body["rows"])


def handle(data: list[dict[str, Any]] | None, context: Any) -> list[Any] | None:
    """TorchServe's entry point: one answer per request in the (possibly batched) list."""
    global _predictor
    import torch

    from torchlab.exporters.runtime import load_export

    if _predictor is None:
        _predictor = load_export(context.system_properties["model_dir"])
    if data is None:  # TorchServe's initialisation call
        return None
    parts = [_inputs(_predictor, row.get("data") or row.get("body")) for row in data]
    outputs = _predictor(torch.cat(parts))
    records, answers, start = _predictor.records(outputs), [], 0
    for part in parts:
        answers.append(records[start : start + len(part)])
        start += len(part)
    return answers
