"""word2vec: the skipgram source (windows, subsampling, noise), the skip-gram model and task,
and the word2vec-bbc recipe writing vectors the word-vector reader loads."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

import torchlab
from torchlab.config import Component
from torchlab.data.base import DataSpec, SourceContext
from torchlab.data.text.skipgram import context_pairs, subsample
from torchlab.data.text.vectors import read_vectors
from torchlab.errors import ConfigError
from torchlab.models import build_model
from torchlab.registry import DATASETS

CONTEXT = SourceContext(0.1, 0.1, False, 0, "categorical")


@pytest.fixture(autouse=True)
def one_thread():  # type: ignore[no-untyped-def]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_context_pairs_stay_inside_the_window_and_the_document() -> None:
    docs = [np.arange(10, 20), np.arange(30, 35)]
    pairs = context_pairs(docs, 3, np.random.default_rng(0))
    words, contexts = pairs[:, 0], pairs[:, 1]
    same_doc = (words < 30) == (contexts < 30)
    assert same_doc.all()  # never across documents
    distance = np.abs(words - contexts)
    assert distance.min() >= 1 and distance.max() <= 3
    # the window size is drawn per word, so nearer words are paired more often
    assert (distance == 1).sum() > (distance == 2).sum() > (distance == 3).sum() > 0
    every = context_pairs(docs, 1, np.random.default_rng(0))
    assert len(every) == 2 * (9 + 4)  # window 1: each neighbour pair both ways


def test_subsampling_drops_frequent_words_and_keeps_rare_ones() -> None:
    freq = np.array([0.5, 0.0001])  # word 0 is half the corpus
    doc = [np.array([0] * 5000 + [1] * 100)]
    kept = subsample(doc, freq, 1e-3, np.random.default_rng(0))[0]
    assert (kept == 1).sum() == 100  # f below t: always kept
    expected = (np.sqrt(0.5 / 1e-3) + 1) * 1e-3 / 0.5  # word2vec's keep probability
    assert (kept == 0).sum() == pytest.approx(5000 * expected, rel=0.2)


def test_pmi_baseline_scores_seen_pairs_above_unseen_ones() -> None:
    from torchlab.registry import BASELINES

    rows = np.array(
        [[1, 2, 3], [1, 2, 4], [3, 4, 1], [3, 4, 2], [1, 3, 2]]
    )  # [word, context, noise]
    pmi = BASELINES.build(Component(name="cooccurrence-pmi"), "baseline", "categorical").fit(
        rows, None
    )
    scores = pmi.predict(np.array([[1, 2, 4], [3, 4, 2]]))  # (N, 1 + K)
    assert scores.shape == (2, 2)
    assert scores[0, 0] > 0 and scores[1, 0] > 0  # pairs seen together more than by chance
    assert np.isneginf(scores[:, 1]).all()  # never seen together


def write_corpus(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    folder.mkdir()
    animals, fruits = ["cat", "dog", "cow"], ["apple", "pear", "plum"]
    for i in range(30):
        group = animals if i % 2 else fruits
        words = rng.choice([*group, "the", "a"], size=80).tolist()
        (folder / f"{i:02d}.txt").write_text(" ".join(words))
    return folder


def test_skipgram_source_draws_noise_from_the_three_quarter_power_unigram(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "corpus")
    source = Component(
        name="skipgram", path=str(corpus), min_count=1, window=2, negatives=20, subsample_t=0.0
    )
    bundle = DATASETS.build(source, "data.source", CONTEXT)
    rows = bundle.train.inputs.long()
    assert rows.shape[1] == 22 and bundle.spec.input_shape == (22,)
    counts = torch.bincount(rows[:, 0], minlength=bundle.spec.vocab_size).double()
    noise = torch.bincount(rows[:, 2:].flatten(), minlength=bundle.spec.vocab_size).double()
    expected = counts**0.75 / (counts**0.75).sum()
    torch.testing.assert_close(noise / noise.sum(), expected, atol=0.01, rtol=0.05)
    assert bundle.summary["documents"] == {"train": 24, "val": 3, "test": 3}


def test_word2vec_scores_pairs_and_finds_neighbours() -> None:
    spec = DataSpec((7,), "categorical", vocab_size=50)
    torch.manual_seed(0)
    model = build_model(Component(name="word2vec", dim=8), spec, 0)
    scores = model(torch.randint(0, 50, (4, 7)))
    assert scores.shape == (4, 6)
    found = model.neighbours([3, 4], k=5, exclude={7})
    assert all(len(row) == 5 for row in found)
    assert all(i not in (3, 7) for i, _ in found[0]) and all(i != 4 for i, _ in found[1])
    sims = [s for _, s in found[0]]
    assert sims == sorted(sims, reverse=True)
    with pytest.raises(ConfigError, match=re.escape("needs (word, context, noise...) id rows")):
        build_model(Component(name="word2vec"), DataSpec((8,), "categorical"), 0)


@pytest.mark.e2e  # trains the recipe
def test_word2vec_recipe_learns_topics_and_writes_readable_vectors(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "corpus")
    overrides = {
        "data.source.path": str(corpus),
        "data.source.min_count": 1,
        "data.source.window": 2,
        "data.source.subsample_t": 0.0,
        "data.source.probes": ["cat", "apple"],
        "data.batch_size": 64,
        "model.dim": 16,
        "optim.lr": 0.01,
        "trainer.max_epochs": 3,
        "trainer.progress": "none",
    }
    run = torchlab.train("word2vec-bbc", overrides, output_dir=tmp_path / "runs")
    assert run.summary["test"]["test/pair_accuracy"] > 0.6
    baseline = run.summary["baseline"]  # counting co-occurrences (PMI) on the same rows
    assert baseline["name"] == "cooccurrence-pmi" and 0.5 < baseline["test/pair_accuracy"] <= 1
    neighbours = run.summary["neighbours"]
    assert {w for w, _ in neighbours["cat"][:2]} == {"dog", "cow"}  # words of the same topic
    assert {w for w, _ in neighbours["apple"][:2]} == {"pear", "plum"}
    words, vectors = read_vectors(run.dir / "vectors.txt")
    assert {"cat", "dog", "apple", "the"} <= set(words) and vectors.shape[1] == 16
    model = run.load_model()
    row = words.index("cat")
    cat = model.vectors()[bundle_id(run, "cat")]
    torch.testing.assert_close(vectors[row], cat, atol=1e-4, rtol=0)
    assert "nearest neighbours" in (run.dir / "report.html").read_text()


def bundle_id(run: torchlab.Run, word: str) -> int:
    return run.spec.vocabulary.index(word)
