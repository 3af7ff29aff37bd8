"""Contract over the callback registry: every callback's state survives a checkpoint.

Each registered callback, built from the registry, trains three epochs with the real
checkpointer. A second run resumed from the checkpoint after epoch two with a fresh callback
must hold, right after loading, exactly the state that was saved, and end with the same
state and weights as the run that was never interrupted.

A newly registered callback fails ``test_every_registered_callback_has_a_case`` until it has
a case here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from torchlab.config import Component, TrainerConfig
from torchlab.data.base import DataSpec, TensorSplit
from torchlab.data.loaders import TensorLoader
from torchlab.registry import CALLBACKS, MODELS
from torchlab.tasks.classification import MulticlassClassification
from torchlab.training.callbacks import Callback, Checkpointer
from torchlab.training.checkpoint import checkpoints, load_checkpoint
from torchlab.training.loop import Trainer
from torchlab.training.schedules import Schedule

CPU = torch.device("cpu")
EPOCHS = 3


def mlp(shape: tuple[int, ...]) -> nn.Module:
    """BatchNorm in it, so SWA recomputes its statistics for the average."""
    return nn.Sequential(nn.Linear(shape[0], 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Linear(8, 2))


def backbone(shape: tuple[int, ...]) -> nn.Module:
    """A torchvision backbone with stages, randomly initialised (no download)."""
    spec = DataSpec(shape, "categorical", class_names=("a", "b"))
    return MODELS.build(Component(name="mobilenet_v3_small", weights="none"), "model", spec, 2)


@dataclass(frozen=True)
class CallbackCase:
    settings: dict[str, Any]
    model: Callable[[tuple[int, ...]], nn.Module] = mlp
    shape: tuple[int, ...] = (5,)
    # What the uninterrupted run must show, so each case exercises the state it keeps.
    check: Callable[[Callback], bool] = field(default=lambda callback: True)


CALLBACK_CASES = {
    # A min_delta no epoch reaches: epochs after the first wait, and the third one stops.
    "early_stopping": CallbackCase(
        {"patience": 2, "min_delta": 10.0}, check=lambda cb: cb.wait == 2
    ),
    "ema": CallbackCase({"decay": 0.9}, check=lambda cb: cb.updates == 3 * EPOCHS),
    "swa": CallbackCase({"start_epoch": 1}, check=lambda cb: cb.updates == EPOCHS - 1),
    "gradual_unfreeze": CallbackCase(
        {"epochs": [1, 2], "stages_per_step": 2},
        model=backbone,
        shape=(3, 32, 32),
        check=lambda cb: cb.opened == 4,
    ),
}


def test_every_registered_callback_has_a_case() -> None:
    assert set(CALLBACKS.describe()["names"]) == set(CALLBACK_CASES)


def fit(name: str, folder: Path, resume: Path | None = None) -> tuple[Trainer, Callback]:
    """Train 24 samples in batches of 8 for three epochs, checkpointing every epoch."""
    case = CALLBACK_CASES[name]
    torch.manual_seed(0)
    x = torch.randn(24, *case.shape, generator=torch.Generator().manual_seed(1))
    data = TensorSplit(x, (x.flatten(1)[:, 0] > 0).long())
    model = case.model(case.shape)
    callback = CALLBACKS.build(Component(name=name, **case.settings), "trainer.callbacks")
    spec = DataSpec(case.shape, "categorical", class_names=("a", "b"))
    trainer = Trainer(
        TrainerConfig(max_epochs=EPOCHS),
        model=model,
        task=MulticlassClassification(spec, nn.CrossEntropyLoss(), ["accuracy"]),
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
        schedule=Schedule(None),
        train_loader=TensorLoader(data, 8, shuffle=True, seed=0, device=CPU),
        val_loader=TensorLoader(data, 24, shuffle=False, seed=0, device=CPU),
        device=CPU,
        callbacks=[callback, Checkpointer(folder, None, keep=EPOCHS)],
    )
    if resume is not None:
        checkpoint = load_checkpoint(resume)
        model.load_state_dict(checkpoint.weights)
        trainer.load_state_dict(checkpoint.state)
        saved = checkpoint.state["callbacks"][type(callback).__name__]
        assert_equal(callback.state_dict(), saved)  # what was saved is what is held now
    trainer.fit()
    return trainer, callback


def assert_equal(a: Any, b: Any) -> None:
    """Nested dicts, lists and tensors equal, tensor for tensor."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), (a, b)
        for key in a:
            assert_equal(a[key], b[key])
    elif isinstance(a, torch.Tensor):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_equal(x, y)
    else:
        assert a == b


@pytest.mark.parametrize("name", sorted(CALLBACK_CASES))
def test_callback_state_survives_a_checkpoint(name: str, tmp_path: Path) -> None:
    whole, callback = fit(name, tmp_path / "whole")
    assert CALLBACK_CASES[name].check(callback), callback.state_dict()
    saved = checkpoints(tmp_path / "whole")
    assert len(saved) == EPOCHS
    resumed, again = fit(name, tmp_path / "resumed", resume=saved[1])
    assert resumed.state.epoch == whole.state.epoch == EPOCHS
    assert_equal(again.state_dict(), callback.state_dict())
    assert_equal(resumed.model.state_dict(), whole.model.state_dict())
