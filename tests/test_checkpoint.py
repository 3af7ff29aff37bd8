"""Checkpoints, random-number state and precision: what exact resume is built on."""

import random
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from torchlab.errors import CheckpointError, ConfigError
from torchlab.training import checkpoint as ckpt
from torchlab.training.precision import Precision
from torchlab.training.state import rng_state, set_rng_state

CPU = torch.device("cpu")

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
