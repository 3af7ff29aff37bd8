"""A newcomer's first hour: their own files, the real command line, from their own folder.

Each test writes files the way users' files really are (a BOM, blanks, a typo, non-ASCII
text, a gap and a duplicate date), meets the one-line error a mistake gets, fixes the file,
trains, then evaluates and predicts from another folder, exports, and serves the export
with the answers of ``torchlab predict``. (A user's own ``nn.Module`` and gymnasium
environment have theirs in test_user_model.py and test_rl_own_env.py; a folder of photos
with broken files in test_vision_data.py.)
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import run_cli
from serving import LiveServer

pytestmark = pytest.mark.e2e  # each a user's whole flow through the CLI: a minute or more


def one_line_error(result, *fragments: str) -> None:  # type: ignore[no-untyped-def]
    """The command failed as a user error: exit 2, one line, no traceback, naming things."""
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr


def succeeded(result) -> str:  # type: ignore[no-untyped-def]
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "UserWarning" not in result.stderr
    return result.stdout


def folders(tmp_path: Path) -> tuple[Path, Path]:
    """The user's project folder, and another folder they later work from."""
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    return project, elsewhere


def only_run(folder: Path) -> Path:
    (run,) = [p for p in folder.iterdir() if p.is_dir()]
    return run


def houses(rows: int = 160, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "area": rng.uniform(30, 200, rows).round(1),
            "rooms": rng.integers(1, 7, rows),
            "district": rng.choice(["Nord", "Süd", "Zentrum"], rows),
            "heating": rng.choice(["gas", "heat pump", "oil"], rows).astype(object),
        }
    )
    premium = frame["district"].map({"Nord": 0.0, "Süd": 40.0, "Zentrum": 120.0})
    frame["price"] = (2.5 * frame["area"] + 15 * frame["rooms"] + premium).round(1)
    frame.loc[rng.random(rows) < 0.1, "heating"] = None  # blanks, imputed
    frame.loc[rng.random(rows) < 0.05, "rooms"] = None
    return frame


def test_a_users_csv_from_typo_to_served_predictions(tmp_path: Path) -> None:
    project, elsewhere = folders(tmp_path)
    table = houses()
    typo = table.astype({"area": object})
    typo.loc[17, "area"] = "12O.5"  # a letter O for a zero
    typo.to_csv(project / "houses.csv", index=False, encoding="utf-8-sig")  # Excel's BOM
    (project / "houses.yaml").write_text(
        "extends: diabetes\n"
        "data:\n  source: {name: csv, path: houses.csv, target: price}\n"
        "trainer: {max_epochs: 3, progress: none}\n"
    )
    one_line_error(run_cli("train", "houses.yaml", cwd=project), "area", "12O.5", "row 17")

    table.to_csv(project / "houses.csv", index=False, encoding="utf-8-sig")
    trained = run_cli("train", "houses.yaml", cwd=project)
    assert "test/mae" in succeeded(trained)
    assert trained.stderr.count("warning: Filled blanks in houses.csv") == 1
    run = only_run(project / "runs" / "houses")  # named after the user's file
    summary = json.loads((run / "summary.json").read_text())
    (filled,) = [n for n in summary["notices"] if n.startswith("Filled blanks in houses.csv")]
    assert filled in html.unescape((run / "report.html").read_text())  # kept in the report

    assert "test/mae" in succeeded(run_cli("evaluate", str(run), cwd=elsewhere))
    new = houses(rows=6, seed=1).drop(columns="price")
    new.loc[0, "district"] = "Hafen"  # a district never seen in training
    new.loc[1, "area"] = None
    new.insert(0, "listing", [f"L-{i}" for i in range(6)])  # the user's own ids
    new.to_csv(elsewhere / "new.csv", index=False)
    predicted = run_cli(
        "predict", str(run), "new.csv", "--id-column", "listing", "-o", "predicted.csv",
        cwd=elsewhere,
    )  # fmt: skip
    succeeded(predicted)
    assert "warning: Column 'district' of new.csv holds values not seen in training" in (
        predicted.stderr
    )
    frame = pd.read_csv(elsewhere / "predicted.csv")
    assert list(frame["id"]) == list(new["listing"])
    new = new.drop(columns="listing")

    succeeded(run_cli("export", str(run), "-f", "onnx", "-o", "export", cwd=elsewhere))
    served = serve_rows(elsewhere / "export", new)
    new.to_csv(elsewhere / "new.csv", index=False)
    from_export = run_cli("predict", "export", "new.csv", "-o", "exported.csv", cwd=elsewhere)
    succeeded(from_export)
    exported = pd.read_csv(elsewhere / "exported.csv")
    value = frame["prediction_price"]
    np.testing.assert_allclose(exported["prediction_price"], value, rtol=1e-4, atol=1e-3)
    served_values = [p["prediction"]["price"] for p in served]
    np.testing.assert_allclose(served_values, value, rtol=1e-4, atol=1e-3)
    assert "district" in served[0]["warnings"][0]  # the unseen category, told to the client


def serve_rows(export: Path, rows: pd.DataFrame) -> list[dict]:
    from torchlab.engine.predict import load_predictor
    from torchlab.serve import ServeSettings, create_app

    records = json.loads(rows.to_json(orient="records"))  # blanks as null, as clients send
    with LiveServer(create_app(load_predictor(export), ServeSettings())) as client:
        answer = client.post("/predict", json={"rows": records})
    assert answer.status_code == 200, answer.text
    return answer.json()["predictions"]


REVIEWS = [
    ("Great phone, the battery lasts two days", "good"),
    ("Très bon produit, livraison rapide", "good"),
    ("Love it 😍 would buy again", "good"),
    ("Excellent screen and fast", "good"),
    ("Broke after one week, useless", "bad"),
    ("Terrible support, never again", "bad"),
    ("Schlecht verarbeitet, zurückgeschickt", "bad"),
    ("The charger stopped working 😡", "bad"),
]


@pytest.mark.slow  # about 50 s; text CSVs with blanks are read in tests/test_text_data.py
def test_a_users_text_csv_with_empty_and_non_ascii_texts(tmp_path: Path) -> None:
    project, elsewhere = folders(tmp_path)
    rows = REVIEWS * 6
    broken = pd.DataFrame(rows, columns=["text", "label"])
    broken.loc[[3, 20], "text"] = ["", "   "]
    broken.to_csv(project / "reviews.csv", index=False)
    (project / "reviews.yaml").write_text(
        "extends: bbc-lstm\n"
        "data:\n"
        "  source: {name: text-csv, path: reviews.csv, max_length: 32,\n"
        "           tokenizer: {kind: word, vocab_size: 300, min_frequency: 1}}\n"
        "  batch_size: 8\n"
        "  split: {val: 0.2, test: 0.2}\n"
        "model: {embedding_dim: 16, hidden: 16}\n"
        "trainer: {max_epochs: 2, progress: none}\n"
    )
    one_line_error(
        run_cli("train", "reviews.yaml", cwd=project),
        "reviews.csv' has 2 empty texts at rows 3 (line 5), 20 (line 22)",
    )

    pd.DataFrame(rows, columns=["text", "label"]).to_csv(project / "reviews.csv", index=False)
    assert "test/accuracy" in succeeded(run_cli("train", "reviews.yaml", cwd=project))
    run = only_run(project / "runs" / "reviews")

    assert "test/accuracy" in succeeded(run_cli("evaluate", str(run), cwd=elsewhere))
    texts = ["Love it, très bien 👍", "", "Useless, broke"]
    pd.DataFrame({"text": texts}).to_csv(elsewhere / "new.csv", index=False)
    one_line_error(
        run_cli("predict", str(run), "new.csv", cwd=elsewhere),
        "1 of 3 texts are empty (new.csv:1)",
        "--on-error skip",
    )
    skipping = run_cli(
        "predict", str(run), "new.csv", "--on-error", "skip", "-o", "predicted.csv", cwd=elsewhere
    )
    assert "warning: Skipped 1 of 3 inputs (new.csv:1: empty text)" in succeeded(skipping) + (
        skipping.stderr
    )
    frame = pd.read_csv(elsewhere / "predicted.csv", keep_default_na=False)
    assert list(frame["id"]) == ["new.csv:0", "new.csv:2", "new.csv:1"]
    assert list(frame["text"]) == [texts[0], texts[2], ""]  # the rows say what they are about
    assert list(frame["error"]) == ["", "", "empty text"]
    assert set(frame["label"][:2]) <= {"good", "bad"}


def sales(days: int = 120) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    dates = pd.date_range("2025-01-01", periods=days, freq="D")
    parts = []
    for store, level in (("Lyon", 40.0), ("Nice", 25.0)):
        promo = (rng.random(days) < 0.2).astype(int)
        weekly = 5 * np.sin(2 * np.pi * np.arange(days) / 7)
        units = level + weekly + 8 * promo + rng.normal(0, 1, days)
        parts.append(
            pd.DataFrame(
                {"date": dates.date, "store": store, "units": units.round(1), "promo": promo}
            )
        )
    return pd.concat(parts, ignore_index=True)


def test_a_users_sales_csv_with_a_gap_and_a_duplicate_date(tmp_path: Path) -> None:
    project, elsewhere = folders(tmp_path)
    table = sales().drop(index=[50])  # Lyon misses one day
    duplicate = pd.concat([table, table.iloc[[130]]]).sort_values(["store", "date"])
    duplicate.to_csv(project / "sales.csv", index=False)
    (project / "sales.yaml").write_text(
        "extends: demand\n"
        "data:\n"
        "  source:\n"
        "    name: series\n"
        "    path: sales.csv\n"
        "    time_column: date\n"
        "    targets: [units]\n"
        "    id_column: store\n"
        "    future_covariates: [promo]\n"
        "    window: {lookback: 14, horizon: 7}\n"
        "    split: {val_size: 14, test_size: 14}\n"
        "model: {hidden: 16}\n"
        "trainer: {max_epochs: 2, progress: none}\n"
    )
    one_line_error(
        run_cli("train", "sales.yaml", cwd=project),
        "series 'Lyon' of sales.csv has 1 gap at 2025-02-20",
        "series 'Nice' of sales.csv has duplicate timestamps",
    )

    table.to_csv(project / "sales.csv", index=False)
    trained = run_cli("train", "sales.yaml", "data.source.fill=interpolate", cwd=project)
    assert "test/mase" in succeeded(trained)
    assert "warning: Filled missing values with data.source.fill=interpolate" in trained.stderr
    run = only_run(project / "runs" / "sales")
    data = json.loads((run / "data.json").read_text())
    assert data["filled"] == {"series 'Lyon' of sales.csv": {"units": 1, "promo": 1}}

    succeeded(run_cli("evaluate", str(run), cwd=elsewhere))
    pd.DataFrame(
        {
            "date": np.tile(pd.date_range("2025-05-01", periods=7).date, 2),
            "store": np.repeat(["Lyon", "Nice"], 7),
            "promo": 0,
        }
    ).to_csv(elsewhere / "promos.csv", index=False)
    forecast = run_cli(
        "predict", str(run), "promos.csv", "--horizon", "7", "-o", "forecast.csv", cwd=elsewhere
    )
    succeeded(forecast)
    assert len(pd.read_csv(elsewhere / "forecast.csv")) == 14
    succeeded(run_cli("export", str(run), "-f", "onnx", "-o", "export", cwd=elsewhere))
    assert (elsewhere / "export" / "export.json").is_file()
