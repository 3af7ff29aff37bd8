"""Loaders and splits: every sample once, an order set by (seed, epoch) alone."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch.utils.data import TensorDataset

from torchlab.data.base import TensorSplit
from torchlab.data.loaders import DatasetLoader, Loader, TensorLoader, build_loader, epoch_order
from torchlab.data.splits import split_indices
from torchlab.errors import DataError
from torchlab.memory import keep_freed_memory

CPU = torch.device("cpu")


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


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


class NoisyItems(torch.utils.data.Dataset):
    """Each item drawn with fresh noise from the global generator, as random augmentation is."""

    def __len__(self) -> int:
        return 24

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return torch.rand(3), index


def noisy_epoch(workers: int, start: int) -> list[torch.Tensor]:
    loader = DatasetLoader(
        NoisyItems(), batch_size=4, shuffle=True, seed=1, drop_last=False,
        num_workers=workers, pin_memory=False,
    )  # fmt: skip
    return [batch.inputs for batch in loader.epoch(2, start=start)]


def test_augmentation_in_workers_repeats_after_a_mid_epoch_resume() -> None:
    whole = noisy_epoch(workers=2, start=0)
    assert len(whole) == 6 and not torch.equal(whole[0], whole[1])
    for tail in (noisy_epoch(workers=2, start=3), noisy_epoch(workers=1, start=3)):
        assert len(tail) == 3
        for expected, got in zip(whole[3:], tail, strict=True):
            assert torch.equal(expected, got)


def resident_mb() -> float:
    """This process's resident memory (Linux), shared pages included."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS line")


class WorkerMemory(torch.utils.data.Dataset):
    """Each item is the resident memory of the process that loads it (a worker)."""

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return torch.tensor(resident_mb()), index


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads Linux's /proc")
def test_workers_are_not_forked_onto_kept_free_memory() -> None:
    """Freed memory that torchlab keeps in the heap is given back before workers fork, so a
    worker does not map (and the parent then duplicate) the training process's old buffers."""
    if not keep_freed_memory():
        pytest.skip("keeping freed memory needs glibc")
    block = torch.ones(192 << 20)  # 768 MiB in the heap, touched
    del block  # kept, not unmapped
    before = resident_mb()
    loader = DatasetLoader(
        WorkerMemory(), batch_size=2, shuffle=False, seed=0, drop_last=False,
        num_workers=1, pin_memory=False,
    )  # fmt: skip
    worker = next(iter(loader.epoch(0))).inputs[0].item()
    # A worker maps what its parent had resident, less what was given back; the parent's
    # own modules stay shared (a few hundred MiB), the freed block must not be.
    assert before - worker > 640, f"a worker maps {worker:.0f} MiB of a {before:.0f} MiB parent"


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
