"""Losses, optimizers and learning-rate schedules, checked on tiny real data."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from torchlab.config import OptimConfig, ScheduleConfig
from torchlab.registry import LOSSES, OPTIMIZERS
from torchlab.training.optim import build_optimizer, param_groups
from torchlab.training.schedules import Schedule, build_schedule


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
    decay, no_decay = param_groups(net, weight_decay=0.1, decay_norm_and_bias=False)
    names = {id(p): n for n, p in net.named_parameters()}
    assert {names[id(p)] for p in decay["params"]} == {"0.weight", "3.weight"}
    assert {names[id(p)] for p in no_decay["params"]} == {
        "0.bias",
        "1.weight",
        "1.bias",
        "3.bias",
        "4.weight",
        "4.bias",
    }
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (0.1, 0.0)


def test_frozen_parameters_stay_put_until_unfrozen_then_train() -> None:
    net = normed_net()
    net[0].requires_grad_(False)
    optimizer = torch.optim.AdamW(param_groups(net, 0.1, False, lr=0.1), lr=0.1)
    frozen = net[0].weight.detach().clone()
    for unfrozen in (False, True):
        net[0].requires_grad_(unfrozen)
        optimizer.zero_grad()
        net(torch.randn(16, 4)).square().mean().backward()
        optimizer.step()
        assert torch.equal(net[0].weight, frozen) != unfrozen


def test_a_model_scales_the_learning_rate_of_its_parts() -> None:
    net = normed_net()
    net.lr_scale = lambda name: 0.1 if name.startswith("0.") else 1.0
    groups = param_groups(net, 0.0, False, lr=0.01)
    by_scale = {g["lr_scale"]: g for g in groups}
    assert set(by_scale) == {0.1, 1.0}
    assert by_scale[0.1]["lr"] == pytest.approx(0.001)
    assert len(by_scale[0.1]["params"]) == 2  # the first layer's weight and bias


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
