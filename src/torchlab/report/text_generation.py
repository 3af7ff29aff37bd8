"""Report sections of the text-generation tasks: sample translations marked right or wrong
(with an attention map for recurrent models), generated text at a few temperatures, and the
nearest neighbours of word vectors."""

from __future__ import annotations

from typing import Any

import torch

from torchlab.report.analysis import Analysis, _plt, png

SAMPLES = 20  # rows of each sample table
TEMPERATURES = (0.0, 0.7, 1.0)


@torch.inference_mode()
def seq2seq_analysis(parts: Any, loader: Any) -> Analysis:
    """Test sources, targets and decoded outputs: a sample, then the first errors."""
    model, task, featurizer = parts.model.eval(), parts.task, parts.bundle.featurizer
    rows: list[dict[str, Any]] = []
    figure = None
    for batch in loader.epoch(0):
        batch = batch.to(parts.device)
        outputs = task.evaluation_step(model, batch).outputs
        preds, targets = task.texts(outputs, batch)
        sources = featurizer.decode(batch.inputs)
        rows += [
            {"source": s, "target": t, "output": p, "correct": p == t}
            for s, t, p in zip(sources, targets, preds, strict=True)
        ]
        if figure is None and hasattr(model, "attention_map"):
            figure = attention_figure(model, batch, featurizer)
    wrong = [r for r in rows if not r["correct"]]
    analysis = Analysis(
        tables={
            "sample outputs": rows[:SAMPLES],
            "errors (first of the test split)": wrong[:SAMPLES],
        }
    )
    if figure is not None:
        analysis.figures["Attention of the first test sample (rows: output, columns: source)"] = (
            figure
        )
    analysis.note = f"{len(rows) - len(wrong)} of {len(rows)} test outputs are exactly right."
    return analysis


def attention_figure(model: Any, batch: Any, featurizer: Any) -> bytes:
    """A heat map of where each output character looked in the source."""
    one = batch.inputs[:1]
    ids, weights = model.attention_map({"ids": one, "lengths": (one != model.pad_id).sum(1)})
    length = int((one != model.pad_id).sum())
    out = ids[0].tolist()
    steps = out.index(model.eos_id) + 1 if model.eos_id in out else len(out)
    tokenizer = featurizer.tokenizer
    source = [tokenizer.id_to_token(i) or "?" for i in one[0, :length].tolist()]
    output = [tokenizer.id_to_token(i) or "?" for i in out[:steps]]
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(4, length * 0.3), max(3, steps * 0.3)))
    ax.imshow(weights[0, :steps, :length].cpu().numpy(), cmap="viridis", aspect="auto")
    ax.set_xticks(range(length), source, fontsize=8)
    ax.set_yticks(range(steps), output, fontsize=8)
    return png(fig)


@torch.inference_mode()
def language_model_analysis(parts: Any, loader: Any) -> Analysis:
    """Continuations of the starts of a few test blocks, at several temperatures (top-k 40)."""
    model, featurizer = parts.model.eval(), parts.bundle.featurizer
    batch = next(iter(loader.epoch(0)), None)
    if batch is None:
        return Analysis(note="The test split is empty.")
    prompts = batch.inputs[:3, :16].to(parts.device)
    rows = []
    for temperature in TEMPERATURES:
        torch.manual_seed(0)
        out = model.generate(prompts, 30, temperature, 40)[:, prompts.shape[1] :]
        for prompt, text in zip(featurizer.decode(prompts), featurizer.decode(out), strict=True):
            rows.append({"temperature": temperature, "prompt": prompt, "continuation": text})
    return Analysis(
        tables={"generated samples": rows},
        note="Temperature 0 picks the most likely token; higher temperatures sample more freely.",
    )


def skipgram_analysis(parts: Any, loader: Any) -> Analysis:
    """The nearest words (cosine similarity of word vectors) of the source's probe words."""
    from torchlab.data.text.skipgram import NearestNeighbours

    artifacts = parts.bundle.artifacts
    probe = next((a for a in artifacts if isinstance(a, NearestNeighbours)), None)
    if probe is None:
        return Analysis(note="The data source names no probe words.")
    table = [
        {"word": word, "nearest": ", ".join(f"{w} ({s:.2f})" for w, s in found)}
        for word, found in probe.neighbours(parts.model).items()
    ]
    return Analysis(
        tables={"nearest neighbours": table},
        note="Word vectors are saved in word2vec text format as vectors.txt in the run folder.",
    )
