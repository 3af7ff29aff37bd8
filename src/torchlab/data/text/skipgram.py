"""The ``skipgram`` source: (word, context, noise words) rows for word2vec, from a corpus.

As in Mikolov et al. 2013 (https://arxiv.org/abs/1310.4546) and the reference C code:
frequent words are dropped at random with probability ``1 - (sqrt(f / t) + 1) * t / f``
(f: the word's share of the corpus, t: ``subsample``); each kept word is paired with the
words within a window whose size is drawn from 1..``window`` per word (nearer words count
more); each pair gets ``negatives`` noise words drawn from the unigram distribution raised
to the power 3/4. Noise words are drawn once, with the source's seed, when the data is
built. Documents are split into train/val/test, so validation pairs come from unseen text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from torchlab.data.base import DataBundle, SourceContext, TensorSplit
from torchlab.data.splits import split_indices
from torchlab.data.text.corpus import read_documents
from torchlab.data.text.pairs import TextGenerationFeaturizer, vocab_spec, vocabulary
from torchlab.data.text.tokenization import TextTokenizer
from torchlab.errors import DataError
from torchlab.notices import notice
from torchlab.registry import DATASETS

PROBES = ("government", "football", "music", "film", "economy", "technology", "election", "phone")
VECTORS = "vectors.txt"


def word_ids(tokenizer: TextTokenizer, docs: list[str]) -> list[np.ndarray]:
    """Ids of each document's words, without unknown words and punctuation."""
    vocab = vocabulary(tokenizer)
    keep = np.array([t.isalnum() and not t.startswith("[") for t in vocab])
    return [np.asarray(ids, dtype=np.int64)[keep[ids]] if ids else np.zeros(0, np.int64)
            for ids in tokenizer.encode(docs)]  # fmt: skip


def subsample(
    docs: list[np.ndarray], freq: np.ndarray, t: float, rng: np.random.Generator
) -> list[np.ndarray]:
    """Drop frequent words at random (word2vec's subsampling); ``t=0`` keeps every word."""
    if t <= 0:
        return docs
    f = np.maximum(freq, 1e-12)
    keep_p = np.minimum(1.0, (np.sqrt(f / t) + 1.0) * t / f)
    return [d[rng.random(len(d)) < keep_p[d]] for d in docs]


def context_pairs(docs: list[np.ndarray], window: int, rng: np.random.Generator) -> np.ndarray:
    """(word, context) id pairs (P, 2) within a per-word random window, inside each document."""
    ids = np.concatenate(docs) if docs else np.zeros(0, np.int64)
    doc = np.repeat(np.arange(len(docs)), [len(d) for d in docs])
    reach = rng.integers(1, window + 1, size=len(ids))  # (N,) each word's window
    pairs = []
    for offset in [o for o in range(-window, window + 1) if o]:
        pos = np.arange(max(0, -offset), len(ids) - max(0, offset))
        pos = pos[(doc[pos] == doc[pos + offset]) & (reach[pos] >= abs(offset))]
        pairs.append(np.stack([ids[pos], ids[pos + offset]], 1))
    return np.concatenate(pairs) if pairs else np.zeros((0, 2), np.int64)


def with_noise(
    pairs: np.ndarray, noise: np.ndarray, k: int, rng: np.random.Generator
) -> TensorSplit:
    """Rows [word, context, k noise words] (P, 2 + k) as int32; the target is unused."""
    drawn = rng.choice(len(noise), size=(len(pairs), k), p=noise)
    rows = torch.from_numpy(np.concatenate([pairs, drawn], 1).astype(np.int32))
    return TensorSplit(rows, torch.zeros(len(rows), dtype=torch.uint8))


@runtime_checkable
class WordVectors(Protocol):
    """What the skipgram source needs of the trained model: its word vectors and neighbours."""

    def vectors(self) -> torch.Tensor: ...

    def neighbours(
        self, ids: list[int], k: int, exclude: set[int]
    ) -> list[list[tuple[int, float]]]: ...


class NearestNeighbours:
    """After training: the nearest words of a few probe words, and the vectors file.

    A :class:`~torchlab.data.base.RunArtifact`: adds ``neighbours`` to the run's
    ``summary.json`` and writes ``vectors.txt`` in word2vec text format into the run folder.
    """

    def __init__(self, words: list[str], probes: list[str], usable: np.ndarray, k: int = 8) -> None:
        self.words, self.probes, self.usable, self.k = words, probes, usable, k

    def neighbours(self, model: WordVectors) -> dict[str, list[list[Any]]]:
        index = {w: i for i, w in enumerate(self.words)}
        probes = [p for p in self.probes if p in index]
        if not probes:
            return {}
        exclude = set(np.flatnonzero(~self.usable).tolist())
        found = model.neighbours([index[p] for p in probes], self.k, exclude)
        return {
            p: [[self.words[i], round(s, 3)] for i, s in row]
            for p, row in zip(probes, found, strict=True)
        }

    def write(self, model: nn.Module, run_dir: Path) -> dict[str, Any]:
        if not isinstance(model, WordVectors):
            notice(
                f"Model {type(model).__name__} has no vectors() and neighbours(): the run "
                f"holds no {VECTORS} and no nearest neighbours (model.name: word2vec has them)."
            )
            return {}
        rows = np.flatnonzero(self.usable)
        vectors = model.vectors()[torch.from_numpy(rows)].cpu()
        save_word2vec(run_dir / VECTORS, [self.words[i] for i in rows], vectors)
        return {"neighbours": self.neighbours(model), "vectors": VECTORS}


def pair_accuracy(y_true: Any, scores: Any) -> dict[str, float]:
    """Baseline score of (word, other) pair scores (N, 1 + K), like the skipgram task's."""
    scores = np.asarray(scores)
    right = np.concatenate([scores[:, :1] > 0, scores[:, 1:] < 0], 1)
    return {"pair_accuracy": float(right.mean())}


def save_word2vec(path: Path, words: list[str], vectors: torch.Tensor) -> None:
    """Vectors in word2vec text format: a ``count dim`` header, then ``word v1 ... vD``."""
    lines = [f"{len(words)} {vectors.shape[1]}"]
    lines += [
        w + " " + " ".join(f"{x:.5f}" for x in row)
        for w, row in zip(words, vectors.tolist(), strict=True)
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@DATASETS.register("skipgram")
def skipgram(
    context: SourceContext,
    /,
    *,
    path: str | None = None,
    vocab_size: int = 20000,
    min_count: int = 5,
    window: int = 5,
    negatives: int = 5,
    subsample_t: float = 1e-3,
    max_documents: int | None = None,
    probes: tuple[str, ...] = PROBES,
    encoding: str = "utf-8",
) -> DataBundle:
    """Skip-gram training rows from a corpus (the BBC News articles by default).

    Args:
        path: A ``.txt`` file (documents separated by blank lines) or folder of ``.txt`` files.
        vocab_size: Largest vocabulary; rarer words are dropped.
        min_count: Words seen fewer times in the training documents are dropped.
        window: Largest distance between a word and its context words.
        negatives: Noise words per (word, context) pair.
        subsample_t: Subsampling threshold t (0 keeps every word).
        max_documents: Use only the first this many documents (quick trials).
        probes: Words whose nearest neighbours the run reports.
        encoding: Text encoding of the files.
    """
    if window < 1 or negatives < 1:
        raise DataError(
            f"data.source.window and negatives must be at least 1; received {window}, {negatives}."
        )
    docs, origin = read_documents(path, encoding)
    docs = docs[:max_documents] if max_documents is not None else docs
    parts = split_indices(
        len(docs), val=context.val, test=context.test, seed=context.seed, fold=context.fold
    )
    tok = TextTokenizer.train([docs[i] for i in parts[0]], kind="word", vocab_size=vocab_size,
                              min_frequency=min_count, lowercase=True)  # fmt: skip
    rng = np.random.default_rng(context.seed)
    split_ids = [word_ids(tok, [docs[i] for i in idx]) for idx in parts]
    counts = np.bincount(np.concatenate(split_ids[0]), minlength=tok.vocab_size).astype(np.float64)
    if counts.sum() == 0:
        raise DataError(
            f"The training documents of {origin} hold no word seen {min_count} times; lower data.source.min_count."
        )
    noise = counts**0.75 / (counts**0.75).sum()
    splits = [with_noise(context_pairs(subsample(d, counts / counts.sum(), subsample_t, rng), window, rng), noise, negatives, rng)
              for d in split_ids]  # fmt: skip
    words = list(vocabulary(tok))
    usable = counts > 0
    return DataBundle(
        *splits,
        spec=vocab_spec(tok, 2 + negatives),
        featurizer=TextGenerationFeaturizer(tok, "word"),
        summary={
            "corpus": origin,
            "documents": {n: len(i) for n, i in zip(("train", "val", "test"), parts, strict=True)},
            "vocab_size": tok.vocab_size,
            "words_with_vectors": int(usable.sum()),
            "pairs": {n: len(s) for n, s in zip(("train", "val", "test"), splits, strict=True)},
        },
        artifacts=[NearestNeighbours(words, list(probes), usable)],
        baseline_inputs={
            n: s.inputs.numpy() for n, s in zip(("train", "val", "test"), splits, strict=True)
        },
        baseline_targets={
            n: s.target.numpy() for n, s in zip(("train", "val", "test"), splits, strict=True)
        },
        baseline_metrics=pair_accuracy,
    )
