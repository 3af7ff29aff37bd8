"""Language modelling: next-token prediction (``language-model``) and the skip-gram
objective of word2vec (``skipgram``).

Both learn to predict tokens from their context, so they live together: a causal LM
predicts each next token from all previous ones (cross-entropy over the vocabulary,
perplexity ``exp(mean CE)``); skip-gram with negative sampling tells true (word, context)
pairs from (word, noise) pairs with one logistic loss per pair, never a softmax over the
vocabulary (Mikolov et al. 2013, https://arxiv.org/abs/1310.4546, equation 4).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import Metric, MetricCollection

from torchlab.data.base import Batch, DataSpec
from torchlab.errors import ConfigError
from torchlab.registry import TASKS
from torchlab.tasks.base import Deployment, StepOutput, Task, generated_text_table


class MeanMetric(Metric):
    """Mean of per-item values (a token's loss, a pair's correctness), summed on device."""

    full_state_update = False

    def __init__(self, transform: str = "identity") -> None:
        super().__init__()
        self.transform = transform
        self.add_state("total", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, values: torch.Tensor) -> None:
        self.total += values.double().sum()
        self.count += values.numel()

    def compute(self) -> torch.Tensor:
        mean = self.total / self.count.clamp(min=1)
        return mean.exp() if self.transform == "exp" else mean


def build_metrics(names: list[str], builders: dict[str, Any], task: str) -> MetricCollection:
    unknown = [n for n in names if n not in builders]
    if unknown:
        raise ConfigError(
            f"Unknown {task} metric '{unknown[0]}' (at 'task.metrics'); "
            f"choose from: {', '.join(builders)}."
        )
    return MetricCollection({n: builders[n]() for n in names})


@TASKS.register("language-model")
class LanguageModel(Task):
    """Next-token prediction over blocks of token ids: inputs (B, T), targets (B, T)."""

    target_kind = "categorical"
    metric_kind = "language-model"
    default_loss = "cross_entropy"
    default_metrics = ("perplexity", "accuracy")
    higher_is_better = frozenset({"accuracy"})
    deployment = Deployment(
        decodes="a language model generates",
        answer="torchlab.serve.answers:Generated",
        analysis="torchlab.report.text_generation:language_model_analysis",
    )
    _metrics: ClassVar[dict[str, Any]] = {
        "perplexity": lambda: MeanMetric("exp"),  # exp of the mean token cross-entropy
        "accuracy": MeanMetric,  # share of next tokens ranked first
    }

    def __init__(self, spec: DataSpec, loss: nn.Module, metrics: list[str]) -> None:
        super().__init__(spec, loss, metrics)
        build_metrics(metrics, self._metrics, "language-model")  # fail before training

    def training_step(self, model: nn.Module, batch: Batch) -> StepOutput:
        logits = model(batch.inputs)  # (B, T, V)
        loss = self.loss_fn(logits.flatten(0, 1).float(), batch.target.flatten())
        return StepOutput(loss, logits)

    def metrics(self, extra: tuple[str, ...] = ()) -> MetricCollection:
        return build_metrics([*self.metric_names, *extra], self._metrics, "language-model")

    def update_metrics(self, metrics: MetricCollection, outputs: Any, batch: Batch) -> None:
        logits = outputs.flatten(0, 1).float()  # (B * T, V)
        target = batch.target.flatten()
        for name, metric in metrics.items():
            if name == "perplexity":
                metric.update(F.cross_entropy(logits, target, reduction="none"))
            else:
                metric.update((logits.argmax(-1) == target).float())

    def predict(self, outputs: torch.Tensor) -> dict[str, Any]:
        """``output``: generated continuation ids (the featurizer turns them into text)."""
        return {"output": outputs}

    def write_predictions(
        self, inputs: Any, outputs: Any, ids: list[str], folder: Path | None, featurizer: Any
    ) -> Any:
        """The ``torchlab predict`` table: id, prompt and generated text; written as CSV to
        ``folder`` (the output file) when given."""
        return generated_text_table(ids, "prompt", inputs, outputs, featurizer, folder)


def continue_prompts(
    model: nn.Module,
    featurizer: Any,
    prompts: list[str],
    *,
    max_new_tokens: int = 50,
    temperature: float = 1.0,
    top_k: int | None = None,
) -> list[str]:
    """Continuations of ``prompts`` by a trained language model, decoded by its featurizer
    (see :func:`torchlab.generate_text`)."""
    texts = []
    for row in featurizer.encode(prompts):
        ids = row[row >= 0][None]  # (1, T)
        out = model.generate(ids, max_new_tokens, temperature, top_k)[:, ids.shape[1] :]
        texts.append(featurizer.decode(out)[0])
    return texts


@TASKS.register("skipgram")
class SkipGram(Task):
    """Skip-gram with negative sampling: inputs (B, 2 + K) = [word, context, K noise words].

    The model scores each (word, other) pair with a logit (B, 1 + K); the loss is
    ``-log s(pos) - sum log s(-neg)`` averaged over the batch, with s the logistic function.
    ``pair_accuracy`` is the share of pairs on the right side of 0.
    """

    target_kind = "categorical"
    metric_kind = "skipgram"
    default_loss = "cross_entropy"  # unused: the objective is fixed (see the class docstring)
    default_metrics = ("pair_accuracy",)
    higher_is_better = frozenset({"pair_accuracy"})
    deployment = Deployment(analysis="torchlab.report.text_generation:skipgram_analysis")
    _metrics: ClassVar[dict[str, Any]] = {"pair_accuracy": MeanMetric}

    def __init__(self, spec: DataSpec, loss: nn.Module, metrics: list[str]) -> None:
        super().__init__(spec, loss, metrics)
        build_metrics(metrics, self._metrics, "skipgram")

    def training_step(self, model: nn.Module, batch: Batch) -> StepOutput:
        logits = model(batch.inputs).float()  # (B, 1 + K)
        labels = torch.zeros_like(logits)
        labels[:, 0] = 1.0  # the true context; the rest is noise
        # Sum over the pairs of one word (eq. 4 of the paper), mean over words.
        loss = F.binary_cross_entropy_with_logits(logits, labels, reduction="none").sum(1).mean()
        return StepOutput(loss, logits)

    def metrics(self, extra: tuple[str, ...] = ()) -> MetricCollection:
        return build_metrics([*self.metric_names, *extra], self._metrics, "skipgram")

    def update_metrics(self, metrics: MetricCollection, outputs: Any, batch: Batch) -> None:
        right = torch.cat([outputs[:, :1] > 0, outputs[:, 1:] < 0], 1).float()
        for metric in metrics.values():
            metric.update(right)

    def predict(self, outputs: torch.Tensor) -> dict[str, Any]:
        return {"scores": outputs}
