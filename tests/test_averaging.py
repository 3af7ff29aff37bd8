"""EMA and SWA callbacks: the averages are exact, evaluated in place of the weights, and undone."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from torchlab.config import TrainerConfig
from torchlab.data.base import DataSpec, TensorSplit
from torchlab.data.loaders import TensorLoader
from torchlab.tasks.classification import MulticlassClassification
from torchlab.training.averaging import EMA, SWA
from torchlab.training.callbacks import Callback
from torchlab.training.loop import Trainer
from torchlab.training.schedules import Schedule

CPU = torch.device("cpu")


class Recorder(Callback):
    """Copies of the weights after every step and at every epoch end."""

    def __init__(self) -> None:
        self.steps: list[dict[str, torch.Tensor]] = []
        self.epoch_ends: list[dict[str, torch.Tensor]] = []
        self.val_losses: list[float] = []

    def on_train_step_end(self, trainer: Any, step: Any) -> None:
        self.steps.append({k: v.clone() for k, v in trainer.model.state_dict().items()})

    def on_epoch_end(self, trainer: Any, logs: dict[str, Any]) -> None:
        self.epoch_ends.append({k: v.clone() for k, v in trainer.model.state_dict().items()})
        self.val_losses.append(logs["val/loss"])


def fit(*callbacks: Callback, epochs: int = 3) -> Trainer:
    torch.manual_seed(0)
    x = torch.randn(96, 5, generator=torch.Generator().manual_seed(1))
    data = TensorSplit(x, (x[:, 0] > 0).long())
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 2))
    spec = DataSpec((5,), "categorical", class_names=("a", "b"))
    trainer = Trainer(
        TrainerConfig(max_epochs=epochs),
        model=model,
        task=MulticlassClassification(spec, nn.CrossEntropyLoss(), ["accuracy"]),
        optimizer=torch.optim.SGD(model.parameters(), lr=0.3),
        schedule=Schedule(None),
        train_loader=TensorLoader(data, 16, shuffle=True, seed=0, device=CPU),
        val_loader=TensorLoader(data, 32, shuffle=False, seed=0, device=CPU),
        device=CPU,
        callbacks=list(callbacks),
    )
    trainer.fit()
    return trainer


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-6, rtol=0, msg=name)


def test_ema_is_evaluated_and_matches_a_hand_computed_average() -> None:
    recorder = Recorder()
    trainer = fit(EMA(decay=0.9), recorder)
    torch.manual_seed(0)
    initial = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 2)).state_dict()
    average = {k: v.clone() for k, v in initial.items()}
    steps_per_epoch = 6
    for n, weights in enumerate(recorder.steps):
        decay = min(0.9, (1 + n) / (10 + n))
        for k in average:
            average[k] = decay * average[k] + (1 - decay) * weights[k]
        if (n + 1) % steps_per_epoch == 0:  # what validation saw at this epoch's end
            assert_same(recorder.epoch_ends[n // steps_per_epoch], average)
    assert_same(trainer.model.state_dict(), recorder.steps[-1])  # training weights are back


def test_swa_averages_epoch_end_weights_from_its_start_epoch() -> None:
    plain = Recorder()
    fit(plain, epochs=4)
    averaged = Recorder()
    trainer = fit(SWA(start_epoch=1), averaged, epochs=4)
    assert_same(averaged.epoch_ends[0], plain.epoch_ends[0])  # before start: the weights
    for epoch in (1, 2, 3):
        ends = plain.epoch_ends[1 : epoch + 1]
        expected = {k: sum(w[k] for w in ends) / len(ends) for k in ends[0]}
        assert_same(averaged.epoch_ends[epoch], expected)
    assert_same(trainer.model.state_dict(), plain.epoch_ends[-1])
    assert averaged.val_losses[-1] != plain.val_losses[-1]
