"""The training loop: gradient accumulation equals one large batch; trainer.threads."""

import json
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_diabetes
from torch import nn

import torchlab
from torchlab.config import TrainerConfig
from torchlab.data.base import DataSpec, TensorSplit
from torchlab.data.loaders import TensorLoader, epoch_order
from torchlab.tasks.classification import MulticlassClassification
from torchlab.training.callbacks import Callback
from torchlab.training.loop import Trainer
from torchlab.training.schedules import Schedule

CPU = torch.device("cpu")


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- gradient accumulation ----------------------------------------------------------------


def accumulation_data(n: int) -> TensorSplit:
    x = torch.randn(n, 6, generator=generator(12))
    return TensorSplit(x, (x[:, 0] + x[:, 1] > 0).long() + (x[:, 2] > 1).long())


def mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))


def train(
    batch_size: int, accumulate: int, n: int, epochs: int = 2, **switches: object
) -> tuple[nn.Module, Trainer]:
    model = mlp()
    spec = DataSpec((6,), "categorical", class_names=("a", "b", "c"))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.0)
    trainer = Trainer(
        TrainerConfig(max_epochs=epochs, accumulate_grad_batches=accumulate, **switches),
        model=model,
        task=MulticlassClassification(spec, nn.CrossEntropyLoss(), ["accuracy"]),
        optimizer=optimizer,
        schedule=Schedule(None),
        train_loader=TensorLoader(
            accumulation_data(n), batch_size, shuffle=True, seed=5, device=CPU
        ),
        val_loader=None,
        device=CPU,
        callbacks=[],
    )
    trainer.fit()
    return model, trainer


def reference(n: int, epochs: int = 2) -> nn.Module:
    """Plain SGD, one step per 32 samples (fewer in an epoch's last step) of each epoch's order."""
    model, data = mlp(), accumulation_data(n)
    for epoch in range(epochs):
        permutation = epoch_order(n, seed=5, epoch=epoch, shuffle=True)
        for chunk in permutation.split(32):
            model.zero_grad()
            F.cross_entropy(model(data.inputs[chunk]), data.target[chunk]).backward()
            with torch.no_grad():
                for p in model.parameters():
                    p -= 0.5 * p.grad
    return model


@pytest.mark.parametrize(("n", "steps"), [(64, 4), (80, 6)])  # 80: each epoch ends on a short group
def test_accumulated_small_batches_equal_one_large_batch(n: int, steps: int) -> None:
    accumulated, acc_trainer = train(batch_size=8, accumulate=4, n=n)
    large, large_trainer = train(batch_size=32, accumulate=1, n=n)
    expected = reference(n)
    assert acc_trainer.state.global_step == large_trainer.state.global_step == steps
    moved = False
    for (name, a), b, c, init in zip(
        accumulated.state_dict().items(),
        large.state_dict().values(),
        expected.state_dict().values(),
        mlp().state_dict().values(),
        strict=True,
    ):
        torch.testing.assert_close(a, c, atol=1e-6, rtol=0, msg=f"accumulated {name}")
        torch.testing.assert_close(b, c, atol=1e-6, rtol=0, msg=f"large batch {name}")
        moved |= not torch.allclose(a, init, atol=1e-3)
    assert moved  # training did change the weights
    small, _ = train(batch_size=8, accumulate=1, n=n)  # without accumulation the result differs
    assert not torch.allclose(small[0].weight, expected[0].weight, atol=1e-3)


def fit_digits_cnn(**trainer: object) -> nn.Module:
    """One epoch of a small CNN on 8x8 digits with the given trainer switches."""
    from torchlab.config import Component
    from torchlab.data.base import SourceContext
    from torchlab.data.vision.images import digits
    from torchlab.models import build_model

    bundle = digits(SourceContext(0.1, 0.2, True, 0, "categorical"))
    torch.manual_seed(0)
    model = build_model(Component(name="cnn", channels=[8, 16], dropout=0.0), bundle.spec, 10)
    if trainer.get("channels_last"):
        model = model.to(memory_format=torch.channels_last)
    Trainer(
        TrainerConfig(max_epochs=1, **trainer),
        model=model,
        task=MulticlassClassification(bundle.spec, nn.CrossEntropyLoss(), ["accuracy"]),
        optimizer=torch.optim.SGD(model.parameters(), lr=0.05),
        schedule=Schedule(None),
        train_loader=TensorLoader(bundle.train, 64, shuffle=True, seed=0, device=CPU),
        val_loader=None,
        device=CPU,
        callbacks=[],
    ).fit()
    return model


def test_channels_last_trains_the_same_weights() -> None:
    reference = fit_digits_cnn()
    channels_last = fit_digits_cnn(channels_last=True)
    conv = channels_last[0][0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    # The two layouts' convolution kernels sum in different orders (which also depends on
    # the thread count): over an epoch of SGD the rounding grows to about 2e-3, while a
    # layout mistake changes the weights entirely.
    for a, b in zip(
        reference.state_dict().values(), channels_last.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, atol=1e-2, rtol=1e-2)


@pytest.mark.slow
def test_compiled_training_matches_eager() -> None:
    eager, _ = train(batch_size=16, accumulate=1, n=64, epochs=1)
    compiled, trainer = train(batch_size=16, accumulate=1, n=64, epochs=1, compile=True)
    assert trainer.net is not trainer.eager_net  # it really ran compiled
    for a, b in zip(eager.state_dict().values(), compiled.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


# --- trainer.threads ------------------------------------------------------------------------


class ThreadCount(Callback):
    """Records torch's thread count while the loop trains."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    def on_epoch_start(self, trainer: object) -> None:
        self.seen.append(torch.get_num_threads())


def test_trainer_threads_sets_torch_threads_for_training_and_predict(tmp_path: Path) -> None:
    default = torch.get_num_threads()
    wanted = 3 if default != 3 else 2
    counter = ThreadCount()
    try:
        run = torchlab.train(
            "diabetes",
            {"trainer.max_epochs": 1, "trainer.progress": "none", "trainer.threads": wanted},
            output_dir=tmp_path,
            callbacks=[counter],
        )
        assert counter.seen == [wanted]
        assert run.config.trainer.threads == wanted  # recorded in the run's config.yaml

        torch.set_num_threads(default)
        rows = load_diabetes(as_frame=True).frame.drop(columns="target").head(8)
        rows.to_csv(tmp_path / "rows.csv", index=False)
        assert len(torchlab.predict(run, [tmp_path / "rows.csv"])) == 8
        assert torch.get_num_threads() == wanted  # predict applies the run's setting too
    finally:
        torch.set_num_threads(default)


class StepRows(Callback):
    """Records the samples each optimizer step reports."""

    def __init__(self) -> None:
        self.rows: list[int] = []

    def on_train_step_end(self, trainer: object, step: object) -> None:
        self.rows.append(step.rows)  # type: ignore[attr-defined]


def test_epochs_report_their_samples_per_second(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    steps = StepRows()
    overrides = {
        "trainer.max_epochs": 2, "trainer.progress": "plain", "data.batch_size": 32,
        "trainer.accumulate_grad_batches": 2, "baseline": None,
    }  # fmt: skip
    run = torchlab.train("diabetes", overrides, output_dir=tmp_path, callbacks=[steps])
    train_rows = json.loads((run.dir / "data.json").read_text())["sizes"]["train"]
    assert sum(steps.rows) == 2 * train_rows  # every sample once an epoch, two batches a step
    assert max(steps.rows) == 64
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch ")]
    assert len(lines) == 2
    assert all(re.search(r"\(\d+\.\d s, trained at [\d,]+ samples/s\)$", line) for line in lines)


def test_trainer_threads_must_be_positive() -> None:
    with pytest.raises(ValueError, match="threads"):
        TrainerConfig(threads=0)


def test_tied_best_epochs_go_to_the_lower_validation_loss() -> None:
    from torchlab.training.callbacks import Monitor

    tracker = Monitor("val/accuracy", "max", tie_break="val/loss")
    epochs = [
        {"val/accuracy": 0.9, "val/loss": 0.5},
        {"val/accuracy": 0.9, "val/loss": 0.3},  # same accuracy, lower loss: the new best
        {"val/accuracy": 0.9, "val/loss": 0.4},
        {"val/accuracy": 0.8, "val/loss": 0.1},
    ]
    assert [tracker.improved(logs) for logs in epochs] == [True, True, False, False]
    restored = Monitor("val/accuracy", "max", tie_break="val/loss")
    restored.load_state_dict(tracker.state_dict())
    assert not restored.improved({"val/accuracy": 0.9, "val/loss": 0.35})
