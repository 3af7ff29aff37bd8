"""Classical baselines of text generation: a rule-based date parser and n-gram language models."""

from __future__ import annotations

from typing import Any

import numpy as np

from torchlab.data.base import TargetKind
from torchlab.registry import BASELINES


class DateParser:
    """``dateutil.parser`` with fuzzy matching: no training, rules written by people.

    Slashed dates are read month first, as the ``dates`` source writes them.
    """

    def fit(self, x: np.ndarray, y: np.ndarray) -> DateParser:
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        from dateutil import parser

        out = []
        for text in x.tolist():
            try:
                out.append(parser.parse(str(text), fuzzy=True, dayfirst=False).date().isoformat())
            except (ValueError, OverflowError):  # what dateutil raises on unparseable text
                out.append("")
        return np.asarray(out)


@BASELINES.register("date-parser")
def date_parser(kind: TargetKind, /) -> Any:
    return DateParser()


class NGramLM:
    """Unigram or bigram language model with interpolated (Jelinek-Mercer) smoothing.

    ``p(w | v) = lam * c(v, w) / c(v) + (1 - lam) * (c(w) + 1) / (N + V)``: the bigram
    estimate mixed with an add-one unigram, so unseen pairs keep some probability
    (Chen & Goodman 1998, https://dl.acm.org/doi/10.5555/1075834.1075867).
    Inputs are ``(N, 2)`` pairs (previous token, next token); ``predict`` gives the
    log-probability of each pair's next token, so perplexity is ``exp(-mean)``.
    """

    def __init__(self, order: int, lam: float) -> None:
        self.order, self.lam = order, lam

    def fit(self, x: np.ndarray, y: np.ndarray) -> NGramLM:
        x = np.asarray(x, dtype=np.int64)
        self.vocab = int(x.max()) + 1
        self.unigram = np.bincount(x[:, 1], minlength=self.vocab).astype(np.float64)
        self.total = float(self.unigram.sum())
        codes, counts = np.unique(x[:, 0] * self.vocab + x[:, 1], return_counts=True)
        self.pairs = dict(zip(codes.tolist(), counts.tolist(), strict=True))
        self.context = np.bincount(x[:, 0], minlength=self.vocab).astype(np.float64)
        return self

    def unigram_prob(self, token: np.ndarray) -> np.ndarray:
        seen = np.where(token < self.vocab, self.unigram[np.minimum(token, self.vocab - 1)], 0.0)
        return (seen + 1.0) / (self.total + self.vocab)

    def predict(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.int64)
        uni = self.unigram_prob(x[:, 1])
        if self.order == 1:
            return np.log(uni)
        pair = np.array([self.pairs.get(c, 0) for c in (x[:, 0] * self.vocab + x[:, 1]).tolist()])
        context = np.where(
            x[:, 0] < self.vocab, self.context[np.minimum(x[:, 0], self.vocab - 1)], 0
        )
        bigram = np.divide(pair, context, out=np.zeros(len(x)), where=context > 0)
        return np.log(self.lam * bigram + (1.0 - self.lam) * uni)


@BASELINES.register("ngram-lm")
def ngram_lm(kind: TargetKind, /, *, order: int = 2, lam: float = 0.8) -> Any:
    """n-gram language model (``order`` 1 or 2); ``lam`` weighs the bigram estimate."""
    from torchlab.errors import ConfigError

    if order not in (1, 2):
        raise ConfigError(f"baseline.order must be 1 or 2; received order={order}.")
    if not 0.0 <= lam < 1.0:
        raise ConfigError(f"baseline.lam must be in [0, 1); received lam={lam}.")
    return NGramLM(order, lam)


class CooccurrencePMI:
    """Count-based word association: pointwise mutual information of (word, other) pairs.

    ``PMI(w, o) = log(c(w, o) * N / (c(w) * c(o)))`` from the true (word, context) pairs of
    the training rows (Church & Hanks 1990, https://aclanthology.org/J90-1003); a pair is
    called true when its PMI is above 0 and never-seen pairs score -inf. Inputs are the
    skip-gram rows (N, 2 + K); ``predict`` gives the scores (N, 1 + K) of the context and
    noise words, like the ``word2vec`` model's logits.
    """

    def fit(self, x: np.ndarray, y: np.ndarray) -> CooccurrencePMI:
        pairs = np.asarray(x, dtype=np.int64)[:, :2]
        self.vocab = int(np.asarray(x).max()) + 1
        self.codes, self.counts = np.unique(
            pairs[:, 0] * self.vocab + pairs[:, 1], return_counts=True
        )
        self.words = np.bincount(pairs[:, 0], minlength=self.vocab).astype(np.float64)
        self.others = np.bincount(pairs[:, 1], minlength=self.vocab).astype(np.float64)
        self.total = float(len(pairs))
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        x = np.minimum(np.asarray(x, dtype=np.int64), self.vocab - 1)
        words, others = x[:, :1], x[:, 1:]  # (N, 1), (N, 1 + K)
        codes = words * self.vocab + others
        at = np.minimum(np.searchsorted(self.codes, codes), len(self.codes) - 1)
        count = np.where(self.codes[at] == codes, self.counts[at], 0).astype(np.float64)
        expected = self.words[words] * self.others[others] / self.total
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(count > 0, np.log(count / expected), -np.inf)


@BASELINES.register("cooccurrence-pmi")
def cooccurrence_pmi(kind: TargetKind, /) -> Any:
    return CooccurrencePMI()
