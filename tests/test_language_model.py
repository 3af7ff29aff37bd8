"""Language models: the GPT decoder, the Hugging Face causal-LM path, the text-corpus source,
the n-gram baseline, the language-model task and the bbc-gpt recipe end to end."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

import torchlab
from torchlab.api import generate_text
from torchlab.config import Component
from torchlab.data.base import DataSpec, SourceContext
from torchlab.errors import ConfigError, DataError
from torchlab.models import build_model
from torchlab.registry import BASELINES, DATASETS
from torchlab.training.checkpoint import load_weights, save_weights

VOCAB = ("[PAD]", "[UNK]", "[BOS]", "[EOS]", "[CLS]", "[SEP]", "[MASK]", *"abcdefghijklm")
SPEC = DataSpec((12,), "categorical", class_names=VOCAB, vocab_size=len(VOCAB), pad_id=0)
CONTEXT = SourceContext(0.2, 0.2, False, 0, "categorical")
WORDS = [
    "the",
    "cat",
    "sat",
    "on",
    "the",
    "mat",
    "while",
    "the",
    "dog",
    "ran",
    "in",
    "the",
    "park",
    "and",
    "the",
    "bird",
    "sang",
]


@pytest.fixture(autouse=True)
def one_thread():  # type: ignore[no-untyped-def]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def gpt(seed: int = 0, **settings: object) -> torch.nn.Module:
    torch.manual_seed(seed)
    params = {"layers": 2, "heads": 2, "dim": 16, "dropout": 0.0, **settings}
    return build_model(Component(name="gpt", **params), SPEC, SPEC.num_outputs)


def ids(seed: int = 1, length: int = 12) -> torch.Tensor:
    return torch.randint(7, len(VOCAB), (3, length), generator=torch.Generator().manual_seed(seed))


def test_gpt_contract_shapes_backward_tying_and_round_trip(tmp_path: Path) -> None:
    model = gpt()
    logits = model(ids())  # (B, T, V)
    assert logits.shape == (3, 12, len(VOCAB)) and torch.isfinite(logits).all()
    assert model.lm_head.weight is model.wte.weight  # tied
    F.cross_entropy(logits.flatten(0, 1), ids(2).flatten()).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
    save_weights(tmp_path / "w.safetensors", model.state_dict())
    other = gpt(seed=1)
    assert not torch.equal(model(ids()), other(ids()))
    other.load_state_dict(load_weights(tmp_path / "w.safetensors"))
    model.eval(), other.eval()
    assert torch.equal(model(ids()), other(ids()))


def test_causal_mask_a_future_token_never_changes_earlier_logits() -> None:
    model = gpt().eval()
    x = ids()
    changed = x.clone()
    changed[:, 7] = (changed[:, 7] - 7 + 1) % (len(VOCAB) - 7) + 7  # another real token
    with torch.no_grad():
        a, b = model(x), model(changed)
    torch.testing.assert_close(a[:, :7], b[:, :7], rtol=0, atol=1e-6)
    assert not torch.allclose(a[:, 7:], b[:, 7:])


def test_generate_appends_tokens_and_greedy_equals_top_one_sampling() -> None:
    model = gpt().eval()
    prompt = ids(length=4)
    greedy = model.generate(prompt, 10, temperature=0.0)
    assert greedy.shape == (3, 14) and torch.equal(greedy[:, :4], prompt)
    torch.manual_seed(5)
    top1 = model.generate(prompt, 10, temperature=1.3, top_k=1)
    assert torch.equal(greedy, top1)
    long = model.generate(ids(length=12), 5, temperature=0.0)  # context cropped to block_size
    assert long.shape == (3, 17)
    # prompts padded with -1 (torchlab predict) are continued each on their own
    padded = torch.cat([prompt, torch.full((3, 2), -1)], 1)
    padded[0, 2:] = -1
    out = model.infer(padded)
    assert out.shape == (3, model.sampling["max_new_tokens"])


def test_gpt_needs_token_blocks_and_dividing_heads() -> None:
    with pytest.raises(ConfigError, match="needs token blocks from a text corpus source"):
        build_model(Component(name="gpt"), DataSpec((8,), "categorical", class_names=("a", "b")), 2)
    with pytest.raises(ConfigError, match=r"model.heads=3 must divide model.dim=16"):
        gpt(heads=3)


def write_corpus(folder: Path, documents: int = 12) -> Path:
    rng = np.random.default_rng(0)
    folder.mkdir()
    for i in range(documents):
        text = " ".join(rng.choice(WORDS, size=60).tolist())
        (folder / f"doc{i:02d}.txt").write_text(text)
    return folder


def test_text_corpus_splits_by_document_and_shifts_targets(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "corpus")
    source = Component(name="text-corpus", path=str(corpus), tokenization="word", block_size=8)
    bundle = DATASETS.build(source, "data.source", CONTEXT)
    assert bundle.summary["documents"] == {"train": 6, "val": 3, "test": 3}
    assert bundle.train.inputs.shape[1] == 8
    flat_x, flat_y = bundle.train.inputs.flatten(), bundle.train.target.flatten()
    assert torch.equal(flat_x[1:], flat_y[:-1])  # targets are the next tokens
    tokens = bundle.summary["tokens"]
    assert len(bundle.test) == (tokens["test"] - 1) // 8
    with pytest.raises(DataError, match="does not exist"):
        DATASETS.build(
            Component(name="text-corpus", path=str(tmp_path / "nope")), "data.source", CONTEXT
        )
    (tmp_path / "two.txt").write_text("one document\n\nand another")
    with pytest.raises(DataError, match=r"two.txt' holds 2 non-empty documents"):
        DATASETS.build(
            Component(name="text-corpus", path=str(tmp_path / "two.txt")), "data.source", CONTEXT
        )


def test_bigram_baseline_is_a_distribution_and_beats_unigram() -> None:
    stream = np.array([7, 8, 9] * 200)  # a strict cycle: the previous token decides the next
    pairs = np.stack([stream[:-1], stream[1:]], 1)
    bigram = BASELINES.build(Component(name="ngram-lm"), "baseline", "categorical").fit(pairs, None)
    unigram = BASELINES.build(Component(name="ngram-lm", order=1), "baseline", "categorical").fit(
        pairs, None
    )
    every = np.stack([np.full(10, 7), np.arange(10)], 1)  # all next tokens after 7
    assert math.isclose(np.exp(bigram.predict(every)).sum(), 1.0, rel_tol=1e-9)
    assert np.exp(-bigram.predict(pairs).mean()) < 1.5 < np.exp(-unigram.predict(pairs).mean())


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised two-layer GPT-2 with a small BPE tokenizer, saved as a local
    Hugging Face directory."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())  # fmt: skip
    tok.train_from_iterator([" ".join(WORDS)] * 20, trainer=trainer)
    directory = tmp_path_factory.mktemp("tiny-gpt2")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")
    fast.save_pretrained(directory)
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=tok.get_vocab_size(), n_positions=32, n_embd=32, n_layer=2, n_head=2
    )
    GPT2LMHeadModel(config).save_pretrained(directory)
    return directory


def test_hf_causal_lm_fine_tunes_a_local_gpt2_and_generates(
    tiny_gpt2: Path, tmp_path: Path
) -> None:
    corpus = write_corpus(tmp_path / "corpus", documents=10)
    overrides = {
        "data.source.path": str(corpus),
        "data.source.tokenizer": str(tiny_gpt2),
        "data.source.block_size": 16,
        "data.batch_size": 8,
        "model": {"name": "hf-causal-lm", "path": str(tiny_gpt2), "max_new_tokens": 5},
        "baseline": None,
        "optim.lr": 0.003,
        "trainer.max_epochs": 3,
        "trainer.progress": "none",
    }
    run = torchlab.train("bbc-gpt", overrides, output_dir=tmp_path / "runs")
    losses = [r["train/loss"] for r in run.history if "train/loss" in r]
    assert losses[-1] < losses[0]  # a few real steps lowered the loss
    assert math.isfinite(run.summary["test"]["test/perplexity"])
    texts = generate_text(run, ["the cat"], max_new_tokens=4, temperature=0.0)
    assert len(texts) == 1 and texts[0].strip()
    with pytest.raises(ConfigError, match="is not a Hugging Face model directory"):
        build_model(Component(name="hf-causal-lm", path=str(tmp_path)), SPEC, 20)


def test_bbc_gpt_recipe_trains_reports_and_predicts(tmp_path: Path) -> None:
    overrides = {
        "data.source.max_documents": 40,
        "data.source.vocab_size": 500,
        "data.source.block_size": 32,
        "model.layers": 1,
        "model.dim": 32,
        "model.heads": 2,
        "model.max_new_tokens": 6,
        "trainer.max_epochs": 1,
        "trainer.progress": "none",
    }
    run = torchlab.train("bbc-gpt", overrides, output_dir=tmp_path)
    test, baseline = run.summary["test"], run.summary["baseline"]
    assert math.isclose(test["test/perplexity"], math.exp(test["test/loss"]), rel_tol=1e-3)
    assert baseline["name"] == "ngram-lm" and 1 < baseline["test/perplexity"] < 500
    assert "generated samples" in (run.dir / "report.html").read_text()

    pd.DataFrame({"prompt": ["The government said", "Football"]}).to_csv(
        tmp_path / "p.csv", index=False
    )
    table = torchlab.predict(run.dir, [tmp_path / "p.csv"])
    assert list(table.columns) == ["id", "prompt", "output"]
    assert table["prompt"].tolist() == ["The government said", "Football"]  # BPE keeps case
    assert all(isinstance(t, str) and t for t in table["output"])
    greedy = generate_text(run, ["The government said"], max_new_tokens=6, temperature=0.0)
    assert greedy == generate_text(run, ["The government said"], max_new_tokens=6, temperature=0.0)
