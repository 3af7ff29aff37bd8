"""The pieces the training loop is made of, each checked on its own with tiny real data."""

from __future__ import annotations

import itertools
import math
import random
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from torch.utils.data import TensorDataset

from torchlab.config import OptimConfig, ScheduleConfig, TrainerConfig
from torchlab.data.base import DataSpec, TensorSplit
from torchlab.data.loaders import DatasetLoader, Loader, TensorLoader, build_loader, epoch_order
from torchlab.data.splits import split_indices
from torchlab.errors import CheckpointError, ConfigError, DataError
from torchlab.registry import LOSSES, OPTIMIZERS
from torchlab.tasks.classification import MulticlassClassification
from torchlab.training import checkpoint as ckpt
from torchlab.training.loop import Trainer
from torchlab.training.optim import build_optimizer, param_groups
from torchlab.training.precision import Precision
from torchlab.training.schedules import Schedule, build_schedule
from torchlab.training.state import rng_state, set_rng_state

CPU = torch.device("cpu")


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def loss(name: str, **params: object) -> nn.Module:
    return LOSSES.get(name).build(params, "task.loss")


# --- losses -------------------------------------------------------------------------------


def test_focal_with_gamma_zero_is_cross_entropy() -> None:
    logits = torch.randn(16, 5, generator=generator(0))
    target = torch.randint(0, 5, (16,), generator=generator(1))
    torch.testing.assert_close(
        loss("focal", gamma=0.0)(logits, target), F.cross_entropy(logits, target)
    )


def test_focal_down_weights_easy_examples() -> None:
    logits = torch.tensor([[4.0, 0.0, 0.0], [0.2, 0.0, 0.0]])  # easy, then hard, both class 0
    target = torch.tensor([0, 0])
    ce = F.cross_entropy(logits, target, reduction="none")
    p_t = logits.softmax(-1)[:, 0]
    focal = loss("focal", gamma=2.0)
    per_example = torch.stack([focal(logits[i : i + 1], target[i : i + 1]) for i in range(2)])
    torch.testing.assert_close(per_example, (1 - p_t) ** 2 * ce)  # Lin et al., eq. 4
    ratio = per_example / ce
    assert ratio[0] < 0.01 < ratio[1]  # the easy example keeps almost none of its loss
    assert focal(logits, target) < F.cross_entropy(logits, target)


def test_focal_alpha_weights_each_class() -> None:
    logits = torch.randn(8, 3, generator=generator(2))
    target = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    alpha = [0.25, 1.0, 2.0]
    weighted = loss("focal", gamma=0.0, alpha=alpha)(logits, target)
    expected = (
        F.cross_entropy(logits, target, reduction="none") * torch.tensor(alpha)[target]
    ).mean()
    torch.testing.assert_close(weighted, expected)


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
def test_cross_entropy_label_smoothing_matches_torch(smoothing: float) -> None:
    logits = torch.randn(12, 4, generator=generator(3))
    target = torch.randint(0, 4, (12,), generator=generator(4))
    ours = loss("cross_entropy", label_smoothing=smoothing)(logits, target)
    torch.testing.assert_close(ours, F.cross_entropy(logits, target, label_smoothing=smoothing))
    if smoothing:
        assert not torch.allclose(ours, F.cross_entropy(logits, target))


def test_cross_entropy_class_weights_match_torch() -> None:
    logits = torch.randn(12, 3, generator=generator(5))
    target = torch.randint(0, 3, (12,), generator=generator(6))
    weights = [1.0, 3.0, 0.5]
    ours = loss("cross_entropy", class_weights=weights)(logits, target)
    torch.testing.assert_close(ours, F.cross_entropy(logits, target, weight=torch.tensor(weights)))


# --- optimizers ---------------------------------------------------------------------------


def normed_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3), nn.LayerNorm(3)
    )


def test_param_groups_exempt_biases_and_norm_weights_from_decay() -> None:
    net = normed_net()
    net[3].bias.requires_grad_(False)  # frozen parameters are left out entirely
    decay, no_decay = param_groups(net, weight_decay=0.1, decay_norm_and_bias=False)
    names = {id(p): n for n, p in net.named_parameters()}
    assert {names[id(p)] for p in decay["params"]} == {"0.weight", "3.weight"}
    assert {names[id(p)] for p in no_decay["params"]} == {
        "0.bias",
        "1.weight",
        "1.bias",
        "4.weight",
        "4.bias",
    }
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (0.1, 0.0)


@pytest.mark.parametrize(("weight_decay", "decay_all"), [(0.0, False), (0.1, True)])
def test_param_groups_single_group_when_nothing_is_exempt(
    weight_decay: float, decay_all: bool
) -> None:
    net = normed_net()
    (group,) = param_groups(net, weight_decay=weight_decay, decay_norm_and_bias=decay_all)
    assert len(group["params"]) == len(list(net.parameters()))
    assert group["weight_decay"] == weight_decay


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_each_optimizer_builds_and_takes_a_step(name: str) -> None:
    net = normed_net()
    x = torch.randn(16, 4, generator=generator(7))
    y = torch.randint(0, 3, (16,), generator=generator(8))
    optimizer = build_optimizer(OptimConfig(name=name, lr=0.01, weight_decay=0.05), net)
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.05, 0.0]
    assert all(g["lr"] == 0.01 for g in optimizer.param_groups)
    before = [p.detach().clone() for p in net.parameters()]
    first = F.cross_entropy(net(x), y)
    first.backward()
    # the bias before BatchNorm gets no real gradient (the norm removes it) nor decay
    moving = [p.grad.abs().max() > 1e-4 for p in net.parameters()]
    optimizer.step()
    optimizer.zero_grad()
    changed = [not torch.equal(a, p) for a, p in zip(before, net.parameters(), strict=True)]
    assert sum(moving) == 7 and all(c for c, m in zip(changed, moving, strict=True) if m)
    assert F.cross_entropy(net(x), y) < first


# --- schedules ----------------------------------------------------------------------------

BASE_LR = 0.1


def lr_trace(
    schedule_name: str,
    steps_per_epoch: int,
    epochs: int,
    monitored: list[float] | None = None,
    **params: object,
) -> tuple[list[float], float]:
    """The rate used at each optimizer step, and the rate after training, as the loop steps it."""
    param = nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.SGD([param], lr=BASE_LR, momentum=0.9)
    schedule = build_schedule(
        ScheduleConfig(name=schedule_name, **params), optimizer, steps_per_epoch, epochs
    )
    used = []
    for epoch in range(epochs):
        for _ in range(steps_per_epoch):
            used.append(optimizer.param_groups[0]["lr"])
            param.grad = torch.ones(2)
            optimizer.step()
            schedule.after_step()
        schedule.after_epoch({"val/loss": monitored[epoch] if monitored else 0.0})
    return used, optimizer.param_groups[0]["lr"]


def per_epoch(values: list[float], steps_per_epoch: int) -> list[float]:
    return [v for v in values for _ in range(steps_per_epoch)]


def test_none_keeps_the_rate() -> None:
    used, final = lr_trace("none", 3, 4)
    assert used == [BASE_LR] * 12 and final == BASE_LR


def test_step_schedule() -> None:
    used, final = lr_trace("step", 2, 5, step_size=2, gamma=0.5)
    expected = per_epoch([BASE_LR * 0.5 ** (e // 2) for e in range(5)], 2)
    assert used == pytest.approx(expected)
    assert final == pytest.approx(BASE_LR * 0.5**2)


def test_multistep_schedule() -> None:
    used, _ = lr_trace("multistep", 2, 5, milestones=[1, 3], gamma=0.1)
    assert used == pytest.approx(per_epoch([0.1, 0.01, 0.01, 0.001, 0.001], 2))


def test_exponential_schedule() -> None:
    used, final = lr_trace("exponential", 3, 4, gamma=0.9)
    assert used == pytest.approx(per_epoch([BASE_LR * 0.9**e for e in range(4)], 3))
    assert final == pytest.approx(BASE_LR * 0.9**4)


def test_cosine_warms_up_linearly_then_decays_to_min_ratio() -> None:
    steps, epochs, ratio = 4, 3, 0.1
    used, final = lr_trace("cosine", steps, epochs, warmup_epochs=1, min_lr_ratio=ratio)
    warmup, total = steps, steps * epochs
    # warm-up: equal increments up to the base rate
    assert used[:warmup] == pytest.approx([BASE_LR * (s + 1) / warmup for s in range(warmup)])
    # then half a cosine from the base rate to min_lr_ratio times it, per optimizer step
    for s in range(warmup, total):
        progress = (s - warmup) / (total - warmup)
        expected = BASE_LR * (ratio + (1 - ratio) * 0.5 * (1 + math.cos(math.pi * progress)))
        assert used[s] == pytest.approx(expected), s
    assert all(a > b for a, b in itertools.pairwise(used[warmup:]))
    assert final == pytest.approx(BASE_LR * ratio)


def test_cosine_without_warmup_starts_at_the_base_rate() -> None:
    used, final = lr_trace("cosine", 5, 2)
    assert used[0] == pytest.approx(BASE_LR)
    assert final == pytest.approx(0.0)


@pytest.mark.parametrize("max_lr_factor", [1.0, 2.0])
def test_onecycle_peaks_at_the_optimizer_rate(max_lr_factor: float) -> None:
    steps, epochs = 5, 4
    used, _ = lr_trace(
        "onecycle",
        steps,
        epochs,
        pct_start=0.25,
        div_factor=10.0,
        final_div_factor=100.0,
        max_lr_factor=max_lr_factor,
    )
    peak = BASE_LR * max_lr_factor
    assert len(used) == steps * epochs
    assert used[0] == pytest.approx(peak / 10)
    top = used.index(max(used))
    assert max(used) == pytest.approx(peak)
    assert top == 4  # pct_start * total - 1
    assert all(a < b for a, b in itertools.pairwise(used[: top + 1]))
    assert all(a > b for a, b in itertools.pairwise(used[top:]))
    assert used[-1] == pytest.approx(peak / 10 / 100)


def test_plateau_cuts_the_rate_when_the_metric_stalls() -> None:
    losses = [1.0, 0.9, 0.95, 0.95, 0.95, 0.95, 0.5]
    used, final = lr_trace("plateau", 2, len(losses), losses, patience=1, factor=0.5)
    # two epochs without improvement (> patience) cut the rate after epochs 3 and 5
    expected = [BASE_LR] * 4 + [BASE_LR / 2] * 2 + [BASE_LR / 4]
    assert used == pytest.approx(per_epoch(expected, 2))
    assert final == pytest.approx(BASE_LR / 4)


def test_schedule_state_round_trip() -> None:
    param = nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=BASE_LR)
    schedule = build_schedule(ScheduleConfig(name="cosine"), optimizer, 10, 1)
    for _ in range(4):
        optimizer.step()
        schedule.after_step()
    state = schedule.state_dict()
    other_opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=BASE_LR)
    other = build_schedule(ScheduleConfig(name="cosine"), other_opt, 10, 1)
    other.load_state_dict(state)
    optimizer.step()
    schedule.after_step()
    other_opt.step()
    other.after_step()
    assert other_opt.param_groups[0]["lr"] == optimizer.param_groups[0]["lr"] < BASE_LR
    assert Schedule(None).state_dict() == {}


# --- checkpoints --------------------------------------------------------------------------


def small_net(seed: int = 0, width: int = 4) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, width), nn.ReLU(), nn.Linear(width, 2))


def save(folder: Path, step: int, net: nn.Module | None = None) -> Path:
    net = net or small_net(step)
    state = {
        "loop": {"epoch": step, "global_step": step},
        "rng": rng_state(),
        "sum": torch.tensor(1.5),
    }
    return ckpt.save_checkpoint(folder, f"step-{step:09d}", net.state_dict(), state)


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    net = small_net(1)
    path = save(tmp_path / "checkpoints", 7, net)
    assert path == tmp_path / "checkpoints" / "step-000000007"
    assert sorted(p.name for p in path.iterdir()) == [ckpt.MANIFEST, ckpt.WEIGHTS, ckpt.STATE]
    loaded = ckpt.load_checkpoint(path)
    assert loaded.path == path
    assert loaded.state["loop"] == {"epoch": 7, "global_step": 7}
    assert torch.equal(loaded.state["sum"], torch.tensor(1.5))
    assert torch.equal(loaded.state["rng"]["torch"], rng_state()["torch"])
    fresh = small_net(2)
    ckpt.load_into(fresh, loaded.weights, path)
    for (name, a), b in zip(net.state_dict().items(), fresh.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_saving_the_same_step_again_replaces_it(tmp_path: Path) -> None:
    save(tmp_path, 3, small_net(1))
    path = save(tmp_path, 3, small_net(2))
    weights = ckpt.load_checkpoint(path).weights
    assert torch.equal(weights["0.weight"], small_net(2).state_dict()["0.weight"])
    assert [p.name for p in tmp_path.iterdir()] == ["step-000000003"]  # no temp folder left


def test_truncated_weights_are_detected(tmp_path: Path) -> None:
    path = save(tmp_path, 1)
    weights = path / ckpt.WEIGHTS
    weights.write_bytes(weights.read_bytes()[:-10])
    with pytest.raises(CheckpointError) as info:
        ckpt.load_checkpoint(path)
    assert f"'{weights}'" in str(info.value) and "truncated or modified" in str(info.value)
    assert info.value.exit_code == 2


def test_modified_state_of_the_same_size_is_detected(tmp_path: Path) -> None:
    path = save(tmp_path, 1)
    state = path / ckpt.STATE
    data = bytearray(state.read_bytes())
    data[len(data) // 2] ^= 0xFF
    state.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=re.escape("state.pt' does not match its manifest")):
        ckpt.load_checkpoint(path)


def test_missing_manifest_is_detected(tmp_path: Path) -> None:
    path = save(tmp_path, 1)
    (path / ckpt.MANIFEST).unlink()
    with pytest.raises(CheckpointError) as info:
        ckpt.load_checkpoint(path)
    assert f"Checkpoint '{path}' has no readable manifest" in str(info.value)


def test_corrupt_weights_file_is_a_checkpoint_error(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    ckpt.save_weights(path, small_net().state_dict())
    assert set(ckpt.load_weights(path)) == set(small_net().state_dict())
    path.write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="is corrupt"):
        ckpt.load_weights(path)
    with pytest.raises(CheckpointError, match="does not exist"):
        ckpt.load_weights(tmp_path / "missing.safetensors")


def test_prune_keeps_the_newest(tmp_path: Path) -> None:
    for step in (5, 40, 12, 300, 7):
        save(tmp_path, step)
    (tmp_path / ".step-000000999.abc").mkdir()  # left by a run killed while writing
    ckpt.prune(tmp_path, keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-000000040", "step-000000300"]
    ckpt.prune(tmp_path, keep=5)
    assert len(ckpt.checkpoints(tmp_path)) == 2


def test_latest_checkpoint_ignores_temporary_folders(tmp_path: Path) -> None:
    assert ckpt.latest_checkpoint(tmp_path / "none-yet") is None
    save(tmp_path, 8)
    save(tmp_path, 20)
    (tmp_path / ".step-000000099.tmp1234").mkdir()
    (tmp_path / "step-000000500").write_text("a file, not a checkpoint")
    assert ckpt.latest_checkpoint(tmp_path) == tmp_path / "step-000000020"
    assert [p.name for p in ckpt.checkpoints(tmp_path)] == ["step-000000008", "step-000000020"]


def test_load_into_another_model_raises(tmp_path: Path) -> None:
    weights = small_net(width=4).state_dict()
    with pytest.raises(CheckpointError) as info:
        ckpt.load_into(small_net(width=5), weights, tmp_path / "w.safetensors")
    message = str(info.value)
    assert "belong to another model" in message and "shape differs" in message
    assert "w.safetensors" in message
    other = nn.Sequential(nn.Linear(3, 2))
    with pytest.raises(CheckpointError, match=r"missing .*unexpected"):
        ckpt.load_into(other, {"1.weight": torch.zeros(2, 3)}, tmp_path)


# --- loaders ------------------------------------------------------------------------------

N = 23


def tensor_split(n: int = N) -> TensorSplit:
    inputs = torch.randn(n, 3, generator=generator(9))
    return TensorSplit(inputs, torch.arange(n))


def map_dataset(n: int = N) -> TensorDataset:
    split = tensor_split(n)
    return TensorDataset(split.inputs, split.target)


def make_loader(
    kind: str, *, seed: int = 0, batch_size: int = 5, drop_last: bool = False
) -> Loader:
    split = tensor_split() if kind == "tensor" else map_dataset()
    loader = build_loader(
        split,
        batch_size=batch_size,
        shuffle=True,
        seed=seed,
        device=CPU,
        drop_last=drop_last,
        num_workers=0,
        pin_memory=False,
    )
    assert isinstance(loader, TensorLoader if kind == "tensor" else DatasetLoader)
    return loader


def order(loader: Loader, epoch: int, start: int = 0) -> list[int]:
    """The sample ids of one epoch, checking that inputs stay paired with targets."""
    inputs = tensor_split().inputs
    ids = []
    for batch in loader.epoch(epoch, start=start):
        assert torch.equal(batch.inputs, inputs[batch.target])
        ids += batch.target.tolist()
    return ids


@pytest.fixture(params=["tensor", "dataset"])
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


def test_each_sample_once_per_epoch(kind: str) -> None:
    loader = make_loader(kind)
    assert len(loader) == 5
    for epoch in range(3):
        ids = order(loader, epoch)
        assert sorted(ids) == list(range(N))
    assert len(list(loader.epoch(0))) == 5


def test_drop_last_drops_only_the_partial_batch(kind: str) -> None:
    loader = make_loader(kind, drop_last=True)
    assert len(loader) == 4
    ids = order(loader, 0)
    assert len(ids) == 20 and len(set(ids)) == 20
    assert ids == order(make_loader(kind), 0)[:20]


def test_order_depends_only_on_seed_and_epoch(kind: str) -> None:
    loader = make_loader(kind, seed=3)
    torch.manual_seed(1)
    later_first = order(loader, 2)
    first = order(loader, 0)
    torch.manual_seed(2)  # the global generator plays no part
    assert order(make_loader(kind, seed=3), 2) == later_first
    assert order(loader, 0) == first
    assert first != later_first  # a new permutation each epoch
    assert order(make_loader(kind, seed=4), 0) != first
    assert first == epoch_order(N, seed=3, epoch=0, shuffle=True).tolist()


def test_tensor_and_dataset_loaders_agree() -> None:
    for epoch in range(2):
        assert order(make_loader("tensor"), epoch) == order(make_loader("dataset"), epoch)


@pytest.mark.parametrize("start", [0, 1, 3, 4, 5])
def test_epoch_from_a_batch_is_the_tail_of_the_full_epoch(kind: str, start: int) -> None:
    loader = make_loader(kind)
    full = [batch.target.tolist() for batch in loader.epoch(1)]
    tail = [batch.target.tolist() for batch in loader.epoch(1, start=start)]
    assert tail == full[start:]
    assert len(loader) == 5  # the length is the full epoch's, after a partial one too


def test_length_asked_mid_epoch_changes_nothing(kind: str) -> None:
    loader = make_loader(kind)
    full = [batch.target.tolist() for batch in loader.epoch(0)]
    batches = loader.epoch(0, start=1)
    seen = [next(batches).target.tolist()]
    assert len(loader) == 5  # the loop asks for it; the DatasetLoader resets its sampler here
    seen += [batch.target.tolist() for batch in batches]
    assert seen == full[1:]


def test_unshuffled_order_is_sequential() -> None:
    loader = build_loader(tensor_split(), batch_size=4, shuffle=False, seed=0, device=CPU)
    assert order(loader, 5) == list(range(N))


# --- splits -------------------------------------------------------------------------------


def test_stratified_split_matches_sklearn_and_partitions() -> None:
    y = load_digits().target
    n = len(y)
    train, val, test = split_indices(n, val=0.1, test=0.2, seed=0, stratify=y)
    _, expected_test = train_test_split(np.arange(n), test_size=0.2, stratify=y, random_state=0)
    assert np.array_equal(test, np.sort(expected_test))
    parts = [set(train.tolist()), set(val.tolist()), set(test.tolist())]
    assert sum(map(len, parts)) == n  # disjoint ...
    assert set.union(*parts) == set(range(n))  # ... and covering
    assert abs(len(val) - 0.1 * n) <= 1
    # stratified: every class keeps its share in each part
    for part in (train, val, test):
        shares = np.bincount(y[part], minlength=10) / len(part)
        assert np.abs(shares - np.bincount(y) / n).max() < 0.02


def test_val_fraction_never_changes_the_test_part() -> None:
    y = load_digits().target
    _, _, test_a = split_indices(len(y), val=0.1, test=0.2, seed=0, stratify=y)
    _, val_b, test_b = split_indices(len(y), val=0.0, test=0.2, seed=0, stratify=y)
    assert np.array_equal(test_a, test_b) and len(val_b) == 0


def test_unstratified_split_matches_sklearn() -> None:
    train, val, test = split_indices(50, val=0.2, test=0.3, seed=4)
    _, expected = train_test_split(np.arange(50), test_size=0.3, random_state=4)
    assert np.array_equal(test, np.sort(expected))
    assert len(train) + len(val) + len(test) == 50


def test_split_leaving_nothing_to_train_is_an_error() -> None:
    with pytest.raises(DataError, match=re.escape("received val=0.5, test=0.5")):
        split_indices(10, val=0.5, test=0.5, seed=0)


# --- random state and precision -----------------------------------------------------------


def draws() -> tuple[list[float], list[float], float, float, float]:
    return (
        torch.rand(4).tolist(),
        np.random.rand(3).tolist(),
        float(np.random.randn()),
        random.random(),
        random.gauss(0, 1),
    )


def test_rng_state_round_trip_through_torch_save(tmp_path: Path) -> None:
    torch.manual_seed(11)
    np.random.seed(11)
    random.seed(11)
    np.random.randn()  # leave a cached Gaussian in numpy ...
    random.gauss(0, 1)  # ... and in python, so those parts of the state matter too
    path = tmp_path / "rng.pt"
    torch.save(rng_state(), path)
    expected = draws()
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    assert draws() != expected
    set_rng_state(torch.load(path, weights_only=True))
    assert draws() == expected


def test_fp16_mixed_precision_needs_cuda() -> None:
    with pytest.raises(ConfigError) as info:
        Precision("16-mixed", CPU)
    assert "trainer.precision=bf16" in str(info.value) and info.value.exit_code == 2


def test_bf16_autocasts_and_fp32_does_not() -> None:
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    with Precision("bf16", CPU).autocast():
        assert (a @ b).dtype == torch.bfloat16
    fp32 = Precision("32", CPU)
    with fp32.autocast():
        assert (a @ b).dtype == torch.float32
    assert not fp32.scaler.is_enabled()


# --- gradient accumulation ----------------------------------------------------------------


def accumulation_data(n: int) -> TensorSplit:
    x = torch.randn(n, 6, generator=generator(12))
    return TensorSplit(x, (x[:, 0] + x[:, 1] > 0).long() + (x[:, 2] > 1).long())


def mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))


def train(batch_size: int, accumulate: int, n: int, epochs: int = 2) -> tuple[nn.Module, Trainer]:
    model = mlp()
    spec = DataSpec((6,), "categorical", class_names=("a", "b", "c"))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.0)
    trainer = Trainer(
        TrainerConfig(max_epochs=epochs, accumulate_grad_batches=accumulate),
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
