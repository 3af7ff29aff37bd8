"""Sequence to sequence: teacher forcing in training, decoding in evaluation.

Batches from the text-pair sources hold source ids ``(B, S)`` as inputs and
``[BOS] target [EOS]`` ids ``(B, T)`` as targets. Training feeds ``target[:, :-1]`` to the
decoder and scores its logits against ``target[:, 1:]`` (padding ignored). Evaluation also
decodes (greedy or beam search, the model's setting), and the metrics compare the decoded
texts with the targets: exact match, chrF (Popović 2015) and BLEU (Papineni et al. 2002)
from ``torchmetrics.text``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from torchmetrics import Metric, MetricCollection

from torchlab.data.base import Batch, DataSpec
from torchlab.errors import ConfigError
from torchlab.registry import TASKS, closest
from torchlab.tasks.base import Deployment, StepOutput, Task, generated_text_table

IGNORE = -100  # nn.CrossEntropyLoss's default ignore_index: padded target positions
SPECIAL = frozenset({"[PAD]", "[UNK]", "[BOS]", "[EOS]", "[CLS]", "[SEP]", "[MASK]"})


class Detokenizer:
    """Token ids -> text with only the vocabulary (``spec.class_names``) at hand.

    Character vocabularies are joined as they are; WordPiece continuations (``##ing``) and
    byte-level BPE spaces (``Ġ``) are undone; other tokens are joined with spaces.
    """

    def __init__(self, vocab: Sequence[str], eos_id: int | None) -> None:
        self.vocab, self.eos_id = list(vocab), eos_id
        self.chars = all(len(t) == 1 for t in vocab if t not in SPECIAL)

    def __call__(self, ids: Sequence[int]) -> str:
        tokens = []
        for i in ids:
            if i == self.eos_id:
                break
            if 0 <= i < len(self.vocab) and self.vocab[i] not in SPECIAL:
                tokens.append(self.vocab[i])
        if self.chars:
            return "".join(tokens)
        text = " ".join(tokens).replace(" ##", "")
        return text.replace(" ", "").replace("Ġ", " ").strip() if "Ġ" in text else text

    def batch(self, ids: torch.Tensor) -> list[str]:
        return [self(row) for row in ids.tolist()]


class ExactMatch(Metric):
    """Share of outputs identical to their (first) reference."""

    higher_is_better = True
    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("correct", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: Sequence[str], target: Sequence[Sequence[str]]) -> None:
        self.correct += sum(p == t[0] for p, t in zip(preds, target, strict=True))
        self.total += len(preds)

    def compute(self) -> torch.Tensor:
        return self.correct.float() / self.total.clamp(min=1)


def text_metric(name: str, bleu_tokenize: str) -> Metric:
    """One of the seq2seq metrics by name."""
    from torchmetrics.text import CHRFScore, SacreBLEUScore

    builders = {
        "exact_match": ExactMatch,
        "chrf": lambda: CHRFScore(n_word_order=0),  # chrF; n_word_order=2 would be chrF++
        # SacreBLEU's tokenizers make BLEU comparable across papers; "char" suits short
        # strings like dates, where word 4-grams do not exist.
        "bleu": lambda: SacreBLEUScore(tokenize=bleu_tokenize),
    }
    if name not in builders:
        hint = closest(name, builders)
        raise ConfigError(
            f"Unknown seq2seq metric '{name}' (at 'task.metrics')."
            + (f" Did you mean '{hint}'?" if hint else "")
            + f" Choose from: {', '.join(builders)}."
        )
    return builders[name]()


@TASKS.register("seq2seq")
class Seq2Seq(Task):
    """Text to text with an encoder-decoder model (``gru-seq2seq``, ``transformer-seq2seq``)."""

    target_kind = "categorical"
    metric_kind = "seq2seq"
    default_loss = "cross_entropy"
    default_metrics = ("exact_match", "chrf", "bleu")
    higher_is_better = frozenset({"exact_match", "chrf", "bleu"})
    deployment = Deployment(
        decodes="a sequence-to-sequence model decodes (greedy or beam search)",
        answer="torchlab.serve.answers:Generated",
        analysis="torchlab.report.text_generation:seq2seq_analysis",
    )

    def __init__(
        self,
        spec: DataSpec,
        loss: nn.Module,
        metrics: list[str],
        *,
        bleu_tokenize: Literal["13a", "char", "intl", "none"] = "13a",
    ) -> None:
        """
        Args:
            bleu_tokenize: SacreBLEU tokenizer for BLEU (``char`` for short strings).
        """
        super().__init__(spec, loss, metrics)
        self.bleu_tokenize = bleu_tokenize
        self.pad_id = spec.pad_id
        eos = spec.class_names.index("[EOS]") if "[EOS]" in spec.class_names else None
        self.detokenize = Detokenizer(spec.class_names, eos)
        for name in metrics:
            text_metric(name, bleu_tokenize)  # unknown names fail before training

    def model_inputs(self, batch: Batch, teacher: bool = True) -> dict[str, torch.Tensor]:
        ids = batch.inputs  # (B, S)
        inputs = {"ids": ids, "lengths": (ids != self.pad_id).sum(1).clamp(min=1)}
        if teacher:
            inputs["decoder_ids"] = batch.target[:, :-1]  # (B, T - 1), starts with [BOS]
        return inputs

    def loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        gold = batch.target[:, 1:].masked_fill(batch.target[:, 1:] == self.pad_id, IGNORE)
        return self.loss_fn(logits.flatten(0, 1).float(), gold.flatten())

    def training_step(self, model: nn.Module, batch: Batch) -> StepOutput:
        logits = model(self.model_inputs(batch))  # (B, T - 1, V)
        return StepOutput(self.loss(logits, batch), logits)

    def evaluation_step(self, model: nn.Module, batch: Batch) -> StepOutput:
        loss = self.loss(model(self.model_inputs(batch)), batch)
        return StepOutput(loss, model.decode(self.model_inputs(batch, teacher=False)))

    def metrics(self, extra: tuple[str, ...] = ()) -> MetricCollection:
        names = [n for n in (*self.metric_names, *extra)]
        return MetricCollection({n: text_metric(n, self.bleu_tokenize) for n in names})

    def texts(self, outputs: torch.Tensor, batch: Batch) -> tuple[list[str], list[str]]:
        """Decoded outputs and target texts of a batch."""
        return self.detokenize.batch(outputs), self.detokenize.batch(batch.target[:, 1:])

    def update_metrics(self, metrics: MetricCollection, outputs: Any, batch: Batch) -> None:
        preds, targets = self.texts(outputs, batch)
        metrics.update(preds, [[t] for t in targets])

    def predict(self, outputs: torch.Tensor) -> dict[str, Any]:
        """``output``: generated ids (the run's featurizer turns them into text)."""
        return {"output": outputs}

    def write_predictions(
        self, inputs: Any, outputs: Any, ids: list[str], folder: Path | None, featurizer: Any
    ) -> Any:
        """The ``torchlab predict`` table: id, source and generated text; written as CSV to
        ``folder`` (the output file) when given."""
        return generated_text_table(ids, "source", inputs, outputs, featurizer, folder)
