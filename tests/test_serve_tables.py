"""Serving a tabular run trained on a CSV with blanks and categories: any mix of blanks in a
request gets the answers ``torchlab predict`` gives for the same rows written as a CSV, an
unseen category is reported in the answer and counted, numbers are strict, and a fuzz of the
request schema finds no server error."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

import torchlab
from serving import LiveServer, fuzz, metric
from torchlab.engine.predict import load_predictor
from torchlab.serve import ServeSettings, create_app

CITIES = ["Paris", "Berlin", "Rome"]
FULL = {"age": 41.0, "income": 52.5, "city": "Rome", "tier": 2, "member": True}


def table(rows: int = 240, seed: int = 0) -> pd.DataFrame:
    """Numbers and categories with blanks (but in ``member``: a CSV column of True, False
    and blanks reads as numbers); the label depends on them."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "age": rng.integers(18, 80, rows).astype(float),
            "income": rng.normal(50, 15, rows).round(1),
            "city": rng.choice(CITIES, rows),
            "tier": rng.integers(1, 4, rows),  # numbers, one-hot as categories
            "member": rng.choice([True, False], rows),
        }
    )
    score = (frame["age"] > 45) ^ (frame["city"] == "Rome") ^ (frame["tier"] == 3)
    frame["label"] = np.where(score, "yes", "no")
    for column in ("age", "income", "city", "tier"):
        frame[column] = frame[column].astype(object).where(rng.random(rows) >= 0.1, None)
    return frame


@pytest.fixture(scope="module")
def people(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("people")
    table().to_csv(root / "people.csv", index=False)
    source = {"name": "csv", "path": str(root / "people.csv"), "target": "label"}
    overrides = {
        "data.source": {**source, "categorical": ["tier"]},
        "trainer.max_epochs": 2,
        "trainer.progress": "none",
        "baseline": None,
    }
    return {"run": torchlab.train("iris", overrides, output_dir=root / "runs"), "root": root}


@pytest.fixture(scope="module")
def people_server(people) -> Iterator[httpx.Client]:  # type: ignore[no-untyped-def]
    with LiveServer(create_app(load_predictor(people["run"].dir), ServeSettings())) as client:
        yield client


def predicted_from_csv(people: dict[str, Any], rows: list[dict[str, Any]], name: str) -> Any:
    """``torchlab predict`` on ``rows`` written as a CSV (a blank, None or missing key is an
    empty cell)."""
    path = people["root"] / f"{name}.csv"
    columns = ["age", "income", "city", "tier", "member"]
    frame = pd.DataFrame.from_records(rows, columns=columns).replace({"": None})
    frame.to_csv(path, index=False)
    return torchlab.predict(people["run"].dir, [path])


MIXES = {
    "no blanks": [FULL, {**FULL, "age": 23, "city": "Paris"}],
    "null in some rows only": [
        {**FULL, "age": None},
        FULL,
        {**FULL, "income": None, "tier": None},
        {**FULL, "age": 70.0},
    ],
    "missing keys and empty strings": [
        {k: v for k, v in FULL.items() if k != "city"},
        {**FULL, "income": "", "city": ""},
        {"age": 30},
        {},
    ],
    "a column blank in every row": [{**FULL, "age": None}, {**FULL, "age": ""}],
    "one row, one blank": [{**FULL, "member": None}],
    "categories as numbers, text and booleans": [
        {**FULL, "tier": "3", "member": False},
        {**FULL, "tier": 3.0, "member": None},
        {**FULL, "tier": 1, "member": True},
    ],
}


@pytest.mark.parametrize("mix", list(MIXES))
def test_blanks_are_imputed_as_torchlab_predict_imputes_a_csv(people, people_server, mix) -> None:  # type: ignore[no-untyped-def]
    rows = MIXES[mix]
    answer = people_server.post("/predict", json={"rows": rows})
    assert answer.status_code == 200, answer.text
    expected = predicted_from_csv(people, rows, mix.replace(" ", "-"))
    for prediction, (_, want) in zip(
        answer.json()["predictions"], expected.iterrows(), strict=True
    ):
        assert prediction["label"] == want["label"]
        for name, p in prediction["probabilities"].items():
            assert p == pytest.approx(want[f"p_{name}"], abs=1e-6)
        assert "warnings" not in prediction


def test_an_unseen_category_is_named_in_its_row_and_counted(people, people_server) -> None:  # type: ignore[no-untyped-def]
    before = metric(people_server, "torchlab_unseen_categories_total", column="city")
    rows = [FULL, {**FULL, "city": "Lyon", "tier": 7}, FULL]
    answer = people_server.post("/predict", json={"rows": rows})
    assert answer.status_code == 200, answer.text
    predictions = answer.json()["predictions"]
    assert "warnings" not in predictions[0] and "warnings" not in predictions[2]
    assert predictions[1]["warnings"] == [
        "column 'city': 'Lyon' was not seen in training; treated as all-zero one-hot",
        "column 'tier': '7' was not seen in training; treated as all-zero one-hot",
    ]
    # The model gets what torchlab predict feeds it for the same rows: all-zero one-hots.
    with pytest.warns(UserWarning, match="not seen in training"):
        expected = predicted_from_csv(people, rows, "unseen")
    for prediction, (_, want) in zip(predictions, expected.iterrows(), strict=True):
        for name, p in prediction["probabilities"].items():
            assert p == pytest.approx(want[f"p_{name}"], abs=1e-6)
    after = metric(people_server, "torchlab_unseen_categories_total", column="city")
    assert after == before + 1
    assert metric(people_server, "torchlab_unseen_categories_total", column="tier") >= 1


@pytest.mark.parametrize(
    ("row", "field"),
    [
        ({**FULL, "age": True}, "rows.1.age"),
        ({**FULL, "income": "5.1"}, "rows.1.income"),
        ({**FULL, "city": ["Paris"]}, "rows.1.city"),
        ({**FULL, "zip": 75001}, "rows.1.zip"),
    ],
)
def test_a_wrong_value_gets_a_422_naming_its_field(people_server, row, field) -> None:  # type: ignore[no-untyped-def]
    answer = people_server.post("/predict", json={"rows": [FULL, row]})
    assert answer.status_code == 422, answer.text
    assert f"Field '{field}'" in answer.json()["error"]


def test_fuzzing_the_table_schema_finds_no_server_error(people_server) -> None:  # type: ignore[no-untyped-def]
    statuses = fuzz(people_server)
    assert 200 in statuses and 422 in statuses, statuses


def test_rows_to_inputs_refuses_what_the_schema_would(people) -> None:  # type: ignore[no-untyped-def]
    """The TorchServe handler and Python callers reach the same checks without the schema."""
    from torchlab.errors import DataError

    predictor = load_predictor(Path(people["run"].dir))
    assert predictor.rows_to_inputs([FULL, {"age": None}]).shape[0] == 2
    for bad, message in [
        ({"age": "old"}, "not a number"),
        ({"income": float("inf")}, "non-finite"),
    ]:
        with pytest.raises(DataError, match=message):
            predictor.rows_to_inputs([FULL, bad])
