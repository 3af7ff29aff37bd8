"""Token-level text augmentation for training batches: deletion, swap, insertion, synonyms.

The four operations of EDA (Wei and Zou, 2019, https://arxiv.org/abs/1901.11196), applied
to token ids: each token is deleted, swapped with another position, followed by an
inserted token, or replaced by one of its nearest neighbours in a word-vector space, each
with its own probability. Special tokens ([CLS], [SEP], ...) are never touched. Random
draws come from torch's generator, which loader workers seed per epoch, so runs repeat.
"""

from __future__ import annotations

from pathlib import Path

import pydantic
import torch

from torchlab.errors import ConfigError


class TextAugment(pydantic.BaseModel):
    """Per-token probabilities of each operation (0 turns it off).

    Attributes:
        delete: Probability that a token is dropped.
        swap: Probability that a token trades places with a random other token.
        insert: Probability that a token is followed by an inserted one (a neighbour of a
            random token of the text when ``vectors`` is given, else a random vocabulary token).
        synonym: Probability that a token is replaced by one of its ``neighbours`` nearest
            words in ``vectors`` (needs ``vectors``).
        vectors: A GloVe / word2vec text file whose nearest neighbours serve as synonyms.
        neighbours: How many nearest neighbours of a word count as its synonyms.
    """

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    delete: float = pydantic.Field(0.0, ge=0, le=1)
    swap: float = pydantic.Field(0.0, ge=0, le=1)
    insert: float = pydantic.Field(0.0, ge=0, le=1)
    synonym: float = pydantic.Field(0.0, ge=0, le=1)
    vectors: str | None = None
    neighbours: int = pydantic.Field(5, gt=0)

    @property
    def active(self) -> bool:
        return any(p > 0 for p in (self.delete, self.swap, self.insert, self.synonym))


class Augmenter:
    """Applies a :class:`TextAugment` to one sample's token ids."""

    def __init__(
        self,
        settings: TextAugment,
        *,
        vocab_size: int,
        protected: set[int],
        synonyms: dict[int, list[int]] | None = None,
    ) -> None:
        if settings.synonym > 0 and not synonyms:
            raise ConfigError(
                "data.source.augment.synonym needs data.source.augment.vectors (a GloVe or "
                "word2vec text file) sharing words with the vocabulary."
            )
        self.settings, self.vocab_size = settings, vocab_size
        self.protected, self.synonyms = protected, synonyms or {}
        self.first_free = max(protected, default=-1) + 1  # insertions skip special ids

    def __call__(self, ids: list[int]) -> list[int]:
        s = self.settings
        ids = list(ids)
        if s.synonym:
            ids = [self._synonym(i) if _draw(s.synonym) else i for i in ids]
        if s.insert:
            ids = self._insert(ids)
        if s.swap:
            ids = self._swap(ids)
        if s.delete:
            ids = self._delete(ids)
        return ids

    def _synonym(self, token: int) -> int:
        options = self.synonyms.get(token)
        return options[_pick(len(options))] if options and token not in self.protected else token

    def _insert(self, ids: list[int]) -> list[int]:
        out: list[int] = []
        for token in ids:
            out.append(token)
            if token not in self.protected and _draw(self.settings.insert):
                out.append(self._new_token(ids))
        return out

    def _new_token(self, ids: list[int]) -> int:
        if self.synonyms:
            options = self.synonyms.get(ids[_pick(len(ids))])
            if options:
                return options[_pick(len(options))]
        return self.first_free + _pick(max(1, self.vocab_size - self.first_free))

    def _swap(self, ids: list[int]) -> list[int]:
        free = [k for k, t in enumerate(ids) if t not in self.protected]
        for k in free:
            if len(free) > 1 and _draw(self.settings.swap):
                other = free[_pick(len(free))]
                ids[k], ids[other] = ids[other], ids[k]
        return ids

    def _delete(self, ids: list[int]) -> list[int]:
        kept = [t for t in ids if t in self.protected or not _draw(self.settings.delete)]
        if not any(t not in self.protected for t in kept):  # never leave a text empty
            return ids
        return kept


def _draw(p: float) -> bool:
    return bool(torch.rand(()) < p)


def _pick(n: int) -> int:
    return int(torch.randint(n, ()))


def synonym_table(tokenizer: object, vectors: str | Path, neighbours: int) -> dict[int, list[int]]:
    """Each vocabulary id's ``neighbours`` nearest vocabulary ids by cosine similarity."""
    from torchlab.data.text.vectors import read_vectors

    vocab = {tokenizer.id_to_token(i): i for i in range(tokenizer.vocab_size)}  # type: ignore[attr-defined]
    words, matrix = read_vectors(vectors, keep=set(vocab))
    if len(words) < 2:
        return {}
    unit = torch.nn.functional.normalize(matrix, dim=1)
    similarity = unit @ unit.T  # (V', V')
    similarity.fill_diagonal_(-2.0)
    k = min(neighbours, len(words) - 1)
    nearest = similarity.topk(k, dim=1).indices
    ids = [vocab[w] for w in words]
    return {ids[r]: [ids[c] for c in row] for r, row in enumerate(nearest.tolist())}
