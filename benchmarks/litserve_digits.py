"""LitServe serving a torchlab ONNX export, for ``serve_load.py --litserve`` to compare with.

Run in LitServe's own environment (``benchmarks/.venv-litserve``, made by ``serve_load.py``):
LitServe is no torchlab dependency. It does what ``torchlab serve`` does for an image model,
with the preprocessing the export's ``export.json`` states: decode each base64 PNG of
``{"images": [...]}``, scale to [0, 1], subtract the mean, divide by the standard deviation,
batch up to 32 requests for up to 5 ms, run ONNX Runtime, and answer the label and the class
probabilities.

    benchmarks/.venv-litserve/bin/python benchmarks/litserve_digits.py EXPORT_DIR PORT
"""

from __future__ import annotations

import base64
import io
import json
import sys
from pathlib import Path

import litserve as ls
import numpy as np
import onnxruntime
from PIL import Image


class DigitsAPI(ls.LitAPI):
    def __init__(self, export: Path) -> None:
        super().__init__(max_batch_size=32, batch_timeout=0.005)
        self.export = export

    def setup(self, device: str) -> None:
        sidecar = json.loads((self.export / "export.json").read_text())
        steps = sidecar["preprocessing"]
        self.size = tuple(steps["size"])
        self.mode = "L" if steps["channels"] == 1 else "RGB"
        self.mean = np.asarray(steps["mean"], np.float32).reshape(-1, 1, 1)
        self.std = np.asarray(steps["std"], np.float32).reshape(-1, 1, 1)
        self.classes = sidecar.get("class_names") or [str(i) for i in range(10)]
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(
            str(self.export / "model.onnx"), options, providers=["CPUExecutionProvider"]
        )
        self.input = self.session.get_inputs()[0].name

    def decode_request(self, request: dict) -> np.ndarray:  # type: ignore[type-arg]
        data = base64.b64decode(request["images"][0])
        image = Image.open(io.BytesIO(data)).convert(self.mode)
        if image.size != self.size[::-1]:
            image = image.resize(self.size[::-1], Image.BILINEAR)
        pixels = np.asarray(image, np.float32) / np.float32(255.0)
        pixels = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
        return (pixels - self.mean) / self.std

    def batch(self, inputs: list[np.ndarray]) -> np.ndarray:
        return np.stack(inputs)

    def predict(self, x: np.ndarray) -> np.ndarray:
        logits = self.session.run(None, {self.input: x})[0]
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)

    def unbatch(self, output: np.ndarray) -> list[np.ndarray]:
        return list(output)

    def encode_response(self, output: np.ndarray) -> dict:  # type: ignore[type-arg]
        probabilities = dict(zip(self.classes, output.tolist(), strict=True))
        return {
            "predictions": [
                {"label": self.classes[int(output.argmax())], "probabilities": probabilities}
            ]
        }


if __name__ == "__main__":
    export, port = Path(sys.argv[1]), int(sys.argv[2])
    server = ls.LitServer(DigitsAPI(export), accelerator="cpu", workers_per_device=1)
    # No access log, as torchlab serve by default: a line per request costs throughput.
    server.run(
        host="127.0.0.1", port=port, num_api_servers=1, generate_client_file=False,
        log_level="warning",
    )  # fmt: skip
