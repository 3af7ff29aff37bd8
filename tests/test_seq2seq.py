"""Seq2seq: the GRU and Transformer encoder-decoders, decoding, the dates and text-pairs
sources, the seq2seq task and the dates recipes end to end."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

import torchlab
from torchlab.config import Component
from torchlab.data.base import DataSpec, SourceContext
from torchlab.errors import ConfigError, DataError
from torchlab.models import build_model
from torchlab.models.text.decoding import beam_search, greedy
from torchlab.models.text.seq2seq import Attention
from torchlab.registry import BASELINES, DATASETS
from torchlab.training.checkpoint import load_weights, save_weights

SPECIALS = ("[PAD]", "[UNK]", "[BOS]", "[EOS]", "[CLS]", "[SEP]", "[MASK]")
VOCAB = (*SPECIALS, *"abcdefghijklm")
SPEC = DataSpec((9,), "categorical", class_names=VOCAB, vocab_size=len(VOCAB), pad_id=0)
MODELS = [
    ("gru-seq2seq", {"attention": "bahdanau"}),
    ("gru-seq2seq", {"attention": "dot"}),
    ("gru-seq2seq", {"attention": "general", "teacher_forcing_decay": "linear"}),
    ("transformer-seq2seq", {}),
]
SMALL = {
    "gru-seq2seq": {"embedding_dim": 8, "hidden_size": 12, "max_length": 6},
    "transformer-seq2seq": {
        "d_model": 16,
        "heads": 2,
        "layers": 1,
        "feedforward": 24,
        "max_length": 6,
    },
}
CONTEXT = SourceContext(0.1, 0.2, False, 0, "categorical")


@pytest.fixture(autouse=True)
def one_thread():  # type: ignore[no-untyped-def]
    """Small models run fastest on one thread of a shared machine; restore afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def build(name: str, seed: int = 0, **settings: Any) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(Component(name=name, **SMALL[name], **settings), SPEC, SPEC.num_outputs)


def batch(seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(7, len(VOCAB), (4, 9), generator=g)
    ids[1, 5:] = 0  # a shorter source
    decoder = torch.randint(7, len(VOCAB), (4, 5), generator=g)
    decoder[:, 0] = 2  # [BOS]
    return {"ids": ids, "lengths": (ids != 0).sum(1), "decoder_ids": decoder}


@pytest.mark.parametrize(("name", "settings"), MODELS)
def test_contract_shapes_finite_backward_and_round_trip(
    name: str, settings: dict, tmp_path: Path
) -> None:
    model = build(name, **settings)
    logits = model(batch())  # (B, T, V)
    assert logits.shape == (4, 5, len(VOCAB))
    assert torch.isfinite(logits).all()
    F.cross_entropy(logits.flatten(0, 1), torch.randint(0, len(VOCAB), (20,))).backward()
    for param_name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), param_name

    save_weights(tmp_path / "w.safetensors", model.state_dict())
    other = build(name, seed=1, **settings)
    model.eval(), other.eval()
    source = {k: v for k, v in batch().items() if k != "decoder_ids"}
    assert not torch.equal(model(batch()), other(batch()))
    other.load_state_dict(load_weights(tmp_path / "w.safetensors"))
    assert torch.equal(model(batch()), other(batch()))
    assert torch.equal(model.decode(source), other.decode(source))


@pytest.mark.parametrize(("name", "settings"), MODELS)
def test_beam_search_of_width_one_is_greedy_decoding(name: str, settings: dict) -> None:
    model = build(name, **settings).eval()
    source = {k: v for k, v in batch(seed=3).items() if k != "decoder_ids"}
    with torch.no_grad():
        expected = greedy(model, source, 6)
        found = beam_search(model, source, 1, 6)
    assert torch.equal(found[:, : expected.shape[1]], expected)
    assert (found[:, expected.shape[1] :] == 0).all()  # only padding after every [EOS]


class TableDecoder:
    """A decoder whose next-token log-probabilities depend only on the last token: the
    greedy first choice 'a' (0.6) leads to a poor second step, 'b' (0.4) to a sure [EOS]."""

    pad_id, bos_id, eos_id = 0, 2, 3
    training = False

    def __init__(self) -> None:
        self.table = torch.full((6, 6), 1e-4)
        self.table[2, 4], self.table[2, 5] = 0.6, 0.4  # after [BOS]: a=4, b=5
        self.table[4, 3], self.table[4, 4], self.table[4, 5] = 0.3, 0.35, 0.35  # after a
        self.table[5, 3] = 0.99  # after b: [EOS]
        self.table[3, 0] = 1.0  # after [EOS]: padding
        self.table = (self.table / self.table.sum(1, keepdim=True)).log()

    def start(self, inputs: Any) -> tuple[torch.Tensor]:
        return (torch.zeros(len(inputs), 1),)

    def next_log_probs(self, token: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        return self.table[token], state

    @staticmethod
    def reorder(state: Any, rows: torch.Tensor) -> Any:
        return tuple(part[rows] for part in state)


def test_beam_search_finds_the_likelier_sequence_greedy_misses() -> None:
    decoder = TableDecoder()
    source = torch.zeros(1, 3)
    assert greedy(decoder, source, 2)[0, 0].item() == 4  # greedy takes 'a' first
    best = beam_search(decoder, source, 2, 3, alpha=0.0)[0].tolist()
    assert best[:2] == [5, 3]  # 'b' [EOS]: 0.4 * 0.99 beats 'a' then anything (<= 0.6 * 0.35)


@pytest.mark.parametrize("kind", ["bahdanau", "dot", "general"])
def test_attention_weights_sum_to_one_and_skip_padding(kind: str) -> None:
    torch.manual_seed(0)
    attention = Attention(kind, 6, 10)
    memory = torch.randn(3, 7, 10)
    mask = torch.ones(3, 7, dtype=torch.bool)
    mask[0, 4:] = False
    context, weights = attention(torch.randn(3, 6), attention.keys(memory), memory, mask)
    assert context.shape == (3, 10) and weights.shape == (3, 7)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3))
    assert (weights[0, 4:] == 0).all() and (weights > 0)[mask].all()


def test_teacher_forcing_decays_with_steps_and_the_count_is_saved() -> None:
    model = build("gru-seq2seq", teacher_forcing_decay="linear", decay_steps=4)
    assert model.teacher_forcing_ratio == 1.0
    model.train()
    for _ in range(2):
        model(batch())
    assert model.teacher_forcing_ratio == pytest.approx(0.5)
    model.eval()
    model(batch())  # evaluation does not advance the schedule
    assert int(model.state_dict()["steps_seen"]) == 2
    resumed = build("gru-seq2seq", teacher_forcing_decay="linear", decay_steps=4)
    resumed.load_state_dict(model.state_dict())
    assert resumed.teacher_forcing_ratio == pytest.approx(0.5)


def test_models_need_a_token_vocabulary() -> None:
    plain = DataSpec((9,), "categorical", class_names=("x", "y"))
    with pytest.raises(ConfigError, match=r"model.name=gru-seq2seq needs a token vocabulary"):
        build_model(Component(name="gru-seq2seq"), plain, 2)
    with pytest.raises(ConfigError, match=r"model.heads=3 must divide model.d_model=16"):
        build_model(Component(name="transformer-seq2seq", d_model=16, heads=3), SPEC, 20)


def test_dates_source_is_seeded_disjoint_and_correct() -> None:
    source = Component(name="dates", n=400)
    first = DATASETS.build(source, "data.source", CONTEXT)
    again = DATASETS.build(source, "data.source", CONTEXT)
    assert torch.equal(first.train.inputs, again.train.inputs)
    train, test = first.baseline_inputs["train"], first.baseline_inputs["test"]
    assert len(train) == 280 and len(test) == 80 and not set(train) & set(test)
    for target in first.baseline_targets["test"]:
        assert dt.date.fromisoformat(target).year in range(1950, 2050)
    decoded = first.featurizer.decode(first.test.target[:, 1:])  # targets without [BOS]
    assert decoded == first.baseline_targets["test"]
    assert len(first.summary["train_formats"]) >= 15


def test_dates_unseen_formats_are_held_out_of_training() -> None:
    bundle = DATASETS.build(
        Component(name="dates", n=400, test_formats="unseen"), "data.source", CONTEXT
    )
    from torchlab.data.text.dates import SEEN, UNSEEN

    assert set(bundle.summary["test_format_names"]) <= set(UNSEEN)
    assert not set(UNSEEN) & set(SEEN)
    assert len(bundle.test) == 80


def test_date_parser_baseline_reads_human_dates() -> None:
    import numpy as np

    parser = BASELINES.build(Component(name="date-parser"), "baseline", "categorical")
    out = parser.fit(np.array([]), np.array([])).predict(
        np.array(["the 3rd of March 1998", "Tuesday, March 3, 1998", "not a date"])
    )
    assert out.tolist() == ["1998-03-03", "1998-03-03", ""]


def test_text_pairs_reads_a_csv_and_names_bad_rows(tmp_path: Path) -> None:
    good = tmp_path / "pairs.csv"
    rows = [(f"say {w}", f"{w} said") for w in ("one", "two", "three", "four", "five", "six")]
    pd.DataFrame(rows, columns=["source", "target"]).to_csv(good, index=False)
    bundle = DATASETS.build(Component(name="text-pairs", path=str(good)), "data.source", CONTEXT)
    assert sum(bundle.summary["pairs"].values()) == 6
    assert bundle.featurizer.decode(bundle.train.target[:1, 1:])[0] in {t for _, t in rows}

    (tmp_path / "no_target.csv").write_text("source,answer\nhello,hi\n")
    with pytest.raises(DataError, match=r"no_target.csv' has no column 'target'"):
        DATASETS.build(
            Component(name="text-pairs", path=str(tmp_path / "no_target.csv")),
            "data.source",
            CONTEXT,
        )
    (tmp_path / "empty.csv").write_text("source,target\nhello,hi\n,bye\nx,y\n")
    with pytest.raises(
        DataError, match=r"empty.csv' has an empty text at row 1 \(line 3\); fill it in"
    ):
        DATASETS.build(
            Component(name="text-pairs", path=str(tmp_path / "empty.csv")), "data.source", CONTEXT
        )


SMOKE = {
    "data.source.n": 300,
    "trainer.max_epochs": 1,
    "trainer.progress": "none",
}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("recipe", "small"),
    [
        ("dates", {"model.hidden_size": 16, "model.embedding_dim": 8, "model.beam_width": 2}),
        ("dates-transformer", {"model.d_model": 16, "model.heads": 2, "model.feedforward": 32}),
    ],
)
def test_dates_recipes_train_report_and_predict(recipe: str, small: dict, tmp_path: Path) -> None:
    run = torchlab.train(recipe, {**SMOKE, **small}, output_dir=tmp_path)
    summary = run.summary
    assert set(summary["test"]) >= {"test/exact_match", "test/chrf", "test/bleu", "test/loss"}
    assert 0.0 <= summary["test"]["test/exact_match"] <= 1.0
    assert summary["baseline"]["name"] == "date-parser"
    assert summary["baseline"]["test/exact_match"] > 0.5  # dateutil reads most formats
    html = (run.dir / "report.html").read_text()
    assert "sample outputs" in html
    assert (run.dir / "tokenizer.json").is_file()

    (tmp_path / "dates.csv").write_text("source\nthe 3rd of March 1998\n12/25/04\n")
    table = torchlab.predict(run.dir, [tmp_path / "dates.csv"], output=tmp_path / "out.csv")
    assert list(table.columns) == ["id", "source", "output"]
    assert table["source"].tolist() == ["the 3rd of march 1998", "12/25/04"]
    assert all(isinstance(text, str) for text in table["output"])
    assert pd.read_csv(tmp_path / "out.csv", keep_default_na=False)["id"].tolist() == [
        "dates.csv:0",
        "dates.csv:1",
    ]
