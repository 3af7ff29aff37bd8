"""Contract tests over every registered text classifier, plus embeddings and fine-tuning controls."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from torchlab.config import Component
from torchlab.data.base import DataSpec
from torchlab.data.text.collate import pad, text_inputs
from torchlab.errors import ConfigError
from torchlab.models import build_model
from torchlab.models.text.embeddings import TokenEmbedding
from torchlab.registry import MODELS

VOCAB = 60
TINY_BERT_VOCAB = 120  # conftest.py's tiny_bert
CLASSIFIER_MODULES = ("rnn", "transformer", "pretrained")
SMALL: dict[str, dict[str, Any]] = {
    "lstm": {"embedding_dim": 12, "hidden": 10},
    "gru": {"embedding_dim": 12, "hidden": 10, "layers": 2},
    "transformer": {"dim": 16, "heads": 2, "layers": 2, "feedforward": 32},
    "hf-encoder": {},  # path: the tiny BERT directory of conftest.py
}
VARIANTS = [
    ("lstm", {}),
    ("lstm", {"pooling": "last"}),
    ("lstm", {"pooling": "mean", "bidirectional": False}),
    ("gru", {"pooling": "last"}),
    ("gru", {"pooling": "max"}),
    ("transformer", {}),
    ("transformer", {"pooling": "cls"}),
    ("hf-encoder", {}),
    ("hf-encoder", {"pooling": "cls"}),
    ("hf-encoder", {"window": 4}),
    ("hf-encoder", {"pooling": "cls", "window": 4}),
]


def text_spec(classes: int = 3, vocabulary: tuple[str, ...] = ()) -> DataSpec:
    names = tuple(f"c{i}" for i in range(classes))
    return DataSpec((32,), "categorical", class_names=names, vocab_size=VOCAB, pad_id=0,
                    vocabulary=vocabulary)  # fmt: skip


def build(name: str, tiny_bert: str, seed: int = 0, **settings: Any) -> nn.Module:
    torch.manual_seed(seed)
    params = {**SMALL[name], **({"path": tiny_bert} if name == "hf-encoder" else {}), **settings}
    return build_model(Component(name=name, **params), text_spec(), 3)


def batch(lengths: list[int], seed: int = 1) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    rows = [torch.randint(1, VOCAB, (n,), generator=generator) for n in lengths]
    return text_inputs(*pad(rows, pad_id=0))


def test_every_text_classifier_is_covered() -> None:
    registered = {
        name
        for name in MODELS.names()
        if MODELS.get(name).builder.__module__.rpartition(".")[2] in CLASSIFIER_MODULES
        and MODELS.get(name).builder.__module__.startswith("torchlab.models.text.")
    }
    assert registered == set(SMALL)


@pytest.mark.parametrize(("name", "settings"), VARIANTS)
def test_forward_backward_shapes_and_finite(name: str, settings: dict, tiny_bert: str) -> None:
    model = build(name, tiny_bert, **settings)
    inputs = batch([7, 3, 5, 1])
    out = model(inputs)  # (B, num_outputs)
    assert out.shape == (4, 3) and torch.isfinite(out).all()
    F.cross_entropy(out, torch.tensor([0, 1, 2, 1])).backward()
    for param_name, param in model.named_parameters():
        assert param.grad is not None, f"{param_name} received no gradient"
        assert torch.isfinite(param.grad).all(), f"{param_name} has a non-finite gradient"


@pytest.mark.parametrize(("name", "settings"), VARIANTS)
def test_padded_batch_equals_each_text_alone(name: str, settings: dict, tiny_bert: str) -> None:
    """Packing (RNNs) and padding masks (attention) keep padding out of every result."""
    model = build(name, tiny_bert, **settings).eval()
    inputs = batch([6, 2, 9])
    with torch.no_grad():
        together = model(inputs)
        for i, n in enumerate(inputs["lengths"].tolist()):
            alone = model(text_inputs(inputs["ids"][i : i + 1, :n], torch.tensor([n])))
            torch.testing.assert_close(together[i : i + 1], alone, atol=1e-5, rtol=1e-4)
        # Bare ids (an exported model's input): mask and lengths follow from the padding id.
        torch.testing.assert_close(model(inputs["ids"]), together)


@pytest.mark.parametrize("name", list(SMALL))
def test_safetensors_round_trip(name: str, tiny_bert: str, tmp_path: Path) -> None:
    model = build(name, tiny_bert, seed=0).eval()
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    other = build(name, tiny_bert, seed=1).eval()
    inputs = batch([5, 8])
    with torch.no_grad():
        assert not torch.equal(model(inputs), other(inputs))
        other.load_state_dict(load_file(str(path)))
        assert torch.equal(model(inputs), other(inputs))


def test_transformer_token_inputs_start_at_unit_scale() -> None:
    """Embeddings x sqrt(d) start near unit scale, like the positions, not sqrt(d) times larger."""
    torch.manual_seed(0)
    spec = DataSpec((32,), "categorical", class_names=("a", "b"), vocab_size=5000, pad_id=0)
    model = build_model(Component(name="transformer", dim=64, heads=4), spec, 2)
    weight = model.embed.embedding.weight.detach()
    scaled = weight[1:] * 64**0.5
    assert scaled.std().item() == pytest.approx(1.0, abs=0.05)
    assert torch.count_nonzero(weight[0]) == 0  # padding stays a zero vector


@pytest.mark.parametrize("name", ["lstm", "transformer"])
def test_text_model_on_tabular_spec_is_a_config_error(name: str) -> None:
    with pytest.raises(ConfigError, match="use a text source"):
        build_model(Component(name=name), DataSpec((8,), "categorical", class_names=("a", "b")), 2)


def test_hf_encoder_freezing_and_layer_wise_decay(tiny_bert: str) -> None:
    model = build("hf-encoder", tiny_bert, freeze_embeddings=True, freeze_layers=1, layer_decay=0.5)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen and all("embeddings" in n or ".layer.0." in n for n in frozen)
    assert all(p.requires_grad for n, p in model.named_parameters() if ".layer.1." in n)
    scale = model.lr_scale
    assert scale("head.weight") == 1.0
    assert scale("encoder.encoder.layer.1.output.dense.weight") == 1.0  # the top layer
    assert scale("encoder.encoder.layer.0.output.dense.weight") == 0.5
    assert scale("encoder.embeddings.word_embeddings.weight") == 0.25

    from torchlab.config import OptimConfig
    from torchlab.training.optim import build_optimizer

    optimizer = build_optimizer(OptimConfig(name="adamw", lr=1e-3), model)
    assert sorted({round(g["lr"], 8) for g in optimizer.param_groups}) == [2.5e-4, 5e-4, 1e-3]


def test_hf_encoder_rejects_a_vocabulary_larger_than_the_model(tiny_bert: str) -> None:
    spec = DataSpec((8,), "categorical", class_names=("a", "b"), vocab_size=TINY_BERT_VOCAB + 1)
    with pytest.raises(ConfigError, match=r"tokenizer\.pretrained"):
        build_model(Component(name="hf-encoder", path=tiny_bert), spec, 2)


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_hf_encoder_windows_equal_encoding_each_window_alone(pooling: str, tiny_bert: str) -> None:
    """A text longer than the encoder's 64 positions is read as windows, each on its own."""
    spec = DataSpec((150,), "categorical", class_names=("a", "b"), vocab_size=VOCAB)
    torch.manual_seed(0)
    model = build_model(
        Component(name="hf-encoder", path=tiny_bert, pooling=pooling, window=64), spec, 2
    ).eval()
    inputs = batch([150, 20])
    with torch.no_grad():
        features = model.features(inputs)
        ids = inputs["ids"][0]
        states = [
            model.encoder(input_ids=ids[start : start + 64][None]).last_hidden_state[0]
            for start in range(0, 150, 64)  # windows of 64, 64 and 22 tokens
        ]
    if pooling == "mean":
        expected = torch.cat(states).mean(0)
    else:
        expected = torch.stack([s[0] for s in states]).mean(0)
    torch.testing.assert_close(features[0], expected, atol=1e-5, rtol=1e-4)


def test_hf_encoder_texts_longer_than_its_positions_need_a_window(tiny_bert: str) -> None:
    spec = DataSpec((100,), "categorical", class_names=("a", "b"), vocab_size=VOCAB)
    with pytest.raises(ConfigError, match=r"longer than the 64 positions.*model\.window"):
        build_model(Component(name="hf-encoder", path=tiny_bert), spec, 2)
    with pytest.raises(ConfigError, match=r"model\.window must be between 1 and the 64"):
        build_model(Component(name="hf-encoder", path=tiny_bert, window=65), spec, 2)


def write_vectors(path: Path, header: bool) -> None:
    lines = ["3 4"] if header else []
    lines += ["cat 1 0 0 0", "dog 0.9 0.1 0 0", "market 0 0 1 0.5"]
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("header", [False, True])  # GloVe, then word2vec text format
def test_pretrained_vectors_coverage_and_freezing(header: bool, tmp_path: Path) -> None:
    vocabulary = ("[PAD]", "[UNK]", "cat", "Dog", "zebra", "yak", "emu")
    spec = DataSpec((8,), "categorical", class_names=("a", "b"), vocab_size=7, pad_id=0,
                    vocabulary=vocabulary)  # fmt: skip
    write_vectors(tmp_path / "vectors.txt", header)
    with pytest.warns(UserWarning, match="Only 2 of 5"):
        embedding = TokenEmbedding(spec, 99, vectors=str(tmp_path / "vectors.txt"), freeze=True)
    assert embedding.dim == 4  # taken from the file
    assert embedding.coverage == {
        "file": str(tmp_path / "vectors.txt"), "found": 2, "vocabulary": 5, "fraction": 0.4,
    }  # fmt: skip
    weight = embedding.embedding.weight
    assert weight[2].tolist() == [1.0, 0.0, 0.0, 0.0]
    torch.testing.assert_close(weight[3], torch.tensor([0.9, 0.1, 0.0, 0.0]))  # case-folded match
    assert weight[0].abs().sum() == 0  # padding
    assert not weight.requires_grad
    embedding.unfreeze()
    assert weight.requires_grad


def test_lstm_with_frozen_vectors_trains_only_the_rest(tmp_path: Path) -> None:
    vocabulary = ("[PAD]", "[UNK]", "cat", "dog", "market", *(f"w{i}" for i in range(VOCAB - 5)))
    write_vectors(tmp_path / "v.txt", header=False)
    spec = text_spec(vocabulary=vocabulary)
    with pytest.warns(UserWarning):
        model = build_model(
            Component(name="lstm", hidden=8, vectors=str(tmp_path / "v.txt"), freeze_embeddings=True),
            spec, 3,
        )  # fmt: skip
    F.cross_entropy(model(batch([4, 2])), torch.tensor([0, 1])).backward()
    assert model.embed.embedding.weight.grad is None
    assert model.head.weight.grad is not None


def test_vectors_file_errors_name_the_file_and_line(tmp_path: Path) -> None:
    from torchlab.data.text.vectors import read_vectors
    from torchlab.errors import DataError

    bad = tmp_path / "bad.txt"
    bad.write_text("cat 1 0\ndog 1\n")
    with pytest.raises(DataError, match=r"Line 2 of .*bad\.txt.* has 1 numbers"):
        read_vectors(bad)
    with pytest.raises(DataError, match="does not exist"):
        read_vectors(tmp_path / "missing.txt")
