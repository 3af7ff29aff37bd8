"""bf16 autocast against fp32 on the CPU: epoch time and test accuracy of the same training.

Cases: torchlab's ``cnn`` on digits upsampled to 32x32, and a small Transformer encoder that
reads each 8x8 digit as a sequence of 8 rows (8 tokens of 8 pixels). Each case trains once
in fp32 and once with ``trainer.precision: bf16`` from the same initial weights with the same
data order; the median epoch time (first epoch dropped) and the test accuracy of the final
weights are compared. Targets: bf16 at least 1.5x faster on the CNN, accuracy within 0.5 points.

One seed's accuracy difference is mostly the noise of two trainings that part ways after
the first rounding difference, so ``--seeds`` repeats each pair with other initial weights
and data orders (the split stays fixed) and reports the mean and standard deviation of the
difference over the seeds; the verdict is on the mean: bf16 may lose at most 0.5 points
(a gain is no miss). Accuracies do not depend on machine load; epoch times do.

    .venv/bin/python benchmarks/precision.py [--epochs 4] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from typing import Any

import torch
from torch import nn

from torchlab.config import Component, TrainerConfig
from torchlab.data.base import DataSpec, SourceContext
from torchlab.data.loaders import TensorLoader
from torchlab.data.vision.images import digits
from torchlab.memory import keep_freed_memory
from torchlab.models import build_model
from torchlab.registry import MODELS
from torchlab.tasks.classification import MulticlassClassification
from torchlab.training.callbacks import Callback
from torchlab.training.loop import Trainer
from torchlab.training.precision import Precision
from torchlab.training.schedules import Schedule

CPU = torch.device("cpu")


@MODELS.register("bench-row-transformer")
def row_transformer(
    spec: DataSpec, num_outputs: int, /, *, width: int = 64, layers: int = 2
) -> nn.Module:
    """Each image row is a token: (B, 1, H, W) -> (B, H, W) -> encoder -> mean over rows."""
    return RowTransformer(spec.input_shape[-1], spec.input_shape[-2], width, layers, num_outputs)


class RowTransformer(nn.Module):
    def __init__(self, row: int, rows: int, width: int, layers: int, classes: int) -> None:
        super().__init__()
        self.embed = nn.Linear(row, width)
        self.position = nn.Parameter(torch.zeros(1, rows, width))
        layer = nn.TransformerEncoderLayer(
            width, nhead=4, dim_feedforward=4 * width, batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers)
        self.head = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.embed(x.squeeze(1)) + self.position  # (B, H, width)
        return self.head(self.encoder(tokens).mean(dim=1))  # (B, classes)


class EpochTimer(Callback):
    def __init__(self) -> None:
        self.seconds: list[float] = []

    def on_epoch_start(self, trainer: Any) -> None:
        self.started = time.perf_counter()

    def on_epoch_end(self, trainer: Any, logs: dict[str, Any]) -> None:
        self.seconds.append(time.perf_counter() - self.started)


def run(
    model: Component, size: int, precision: str, epochs: int, seed: int = 0
) -> tuple[float, float]:
    """Median epoch seconds (first epoch dropped) and test accuracy of one training."""
    bundle = digits(SourceContext(0.1, 0.2, True, 0, "categorical"), size=size)
    torch.manual_seed(seed)
    net = build_model(model, bundle.spec, 10)
    timer = EpochTimer()
    task = MulticlassClassification(bundle.spec, nn.CrossEntropyLoss(), ["accuracy"])
    trainer = Trainer(
        TrainerConfig(max_epochs=epochs, precision=precision),
        model=net,
        task=task,
        optimizer=torch.optim.AdamW(net.parameters(), lr=2e-3),
        schedule=Schedule(None),
        train_loader=TensorLoader(bundle.train, 64, True, seed, CPU),
        val_loader=None,
        device=CPU,
        callbacks=[timer],
    )
    trainer.fit()
    test = TensorLoader(bundle.test, 256, False, 0, CPU)
    metrics = task.metrics()
    from torchlab.training.loop import evaluate

    scores = evaluate(
        net,
        task,
        test,
        metrics=metrics,
        precision=Precision(precision, CPU),
        device=CPU,
        prefix="test",
    )
    return statistics.median(timer.seconds[1:]), scores["test/accuracy"]


CASES = {
    "cnn-digits32": (Component(name="cnn", channels=[32, 64]), 32),
    "transformer-digits": (Component(name="bench-row-transformer"), 8),
}


def mean_std(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else math.nan
    return f"{statistics.mean(values):+.2f} ± {std:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[0], help="initial-weight and data-order seeds"
    )
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    args = parser.parse_args()
    keep_freed_memory()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.epochs} epochs, "
        f"seeds {' '.join(map(str, args.seeds))}"
    )
    print(
        "| case | seed | fp32 s/epoch | bf16 s/epoch | speed-up | fp32 accuracy | bf16 accuracy "
        "| bf16 - fp32 (points) |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    summary = []
    for name in args.cases:
        model, size = CASES[name]
        speedups, differences = [], []
        for seed in args.seeds:
            fp32_s, fp32_acc = run(model, size, "32", args.epochs, seed)
            bf16_s, bf16_acc = run(model, size, "bf16", args.epochs, seed)
            speedups.append(fp32_s / bf16_s)
            differences.append(100 * (bf16_acc - fp32_acc))
            print(
                f"| {name} | {seed} | {fp32_s:.3f} | {bf16_s:.3f} | {fp32_s / bf16_s:.2f}x | "
                f"{fp32_acc:.4f} | {bf16_acc:.4f} | {differences[-1]:+.2f} |",
                flush=True,
            )
        speed = statistics.median(speedups)
        verdict = statistics.mean(differences) >= -0.5
        if name == "cnn-digits32":
            verdict = verdict and speed >= 1.5
        summary.append(
            f"{name}: median speed-up {speed:.2f}x"
            + (" (target >= 1.5x)" if name == "cnn-digits32" else "")
            + f", accuracy difference {mean_std(differences)} points over {len(differences)} "
            f"seed(s) (target: mean >= -0.5): {'pass' if verdict else 'FAIL'}"
        )
    print("\n".join(summary))


if __name__ == "__main__":
    main()
