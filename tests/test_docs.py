"""Every example in README.md and docs/*.md works as written.

YAML blocks validate (fragments laid over a recipe), JSON blocks parse, ``torchlab train
RECIPE ...`` lines resolve to a valid config, and the rest, together with the complete
configs and the Python blocks, run end to end in one process started from an empty folder,
with settings that keep them tiny (``trainer.max_epochs=1``, a few hundred RL steps, a few
texts). An example that cannot run here is in ``NOT_RUN`` with the reason, and
``test_every_example_is_covered`` fails on a new one that is neither run nor listed.

Run ``python tests/test_docs.py`` in an empty folder to run the examples by hand.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
PROGRAMS = ("torchlab", "make", "torchrun", "curl", "torchserve", "source", "mkdir", "cat")


@dataclass(frozen=True)
class Block:
    doc: str
    line: int
    lang: str
    text: str

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line}"

    @property
    def file_name(self) -> str | None:
        """The file a block's first comment names (``# churn.yaml``), where it is written."""
        named = re.match(r"#\s*([\w.-]+\.(?:yaml|py))\b", self.text)
        return named[1] if named else None


def blocks() -> list[Block]:
    found = []
    for doc in DOCS:
        text = doc.read_text()
        for match in FENCE.finditer(text):
            line = text[: match.start()].count("\n") + 1
            found.append(Block(doc.name, line, match[1], match[2]))
    return found


def commands() -> list[str]:
    """Each command line of the shell blocks: continuations joined, comments and ``$`` cut."""
    lines = []
    for block in blocks():
        if block.lang not in ("", "bash", "sh"):
            continue
        for line in re.sub(r"\s*\\\n\s*", " ", block.text).splitlines():
            line = line.strip().removeprefix("$ ")
            if line.split(" ", 1)[0] in PROGRAMS:
                lines.append(re.sub(r"\s+#\s.*$", "", line).strip())
    return lines


def shown() -> list[tuple[str, str]]:
    """``$ command`` lines with the output the docs show below them."""
    pairs = []
    for block in of_lang(""):
        lines = block.text.splitlines()
        pairs += [
            (line.removeprefix("$ "), lines[i + 1])
            for i, line in enumerate(lines)
            if line.startswith("$ ")
        ]
    return pairs


def of_lang(*langs: str) -> list[Block]:
    return [block for block in blocks() if block.lang in langs]


# --- examples that do not run here ---------------------------------------------------------

NOT_RUN = {
    "make demo": "creates the environment and trains the full digits recipe (the CI itself)",
    "make test": "the test suite itself",
    "source .venv/bin/activate": "shell set-up",
    "torchrun": "several processes; tests/test_distributed.py trains under torchrun with gloo",
    "torchserve": "needs Java; tests/test_torchserve.py runs exactly these TorchServe steps",
    "mkdir store": "part of the TorchServe steps (tests/test_torchserve.py)",
    "cat > config.properties": "part of the TorchServe steps (tests/test_torchserve.py)",
    "curl -s -X POST localhost:8080": "TorchServe requests (tests/test_torchserve.py)",
    "torchlab serve runs/shapes-det": "a trained detector takes minutes; tests/test_serve_pixels.py "
    "sends these requests to a detection server",
    "curl -s localhost:8000/predict -H 'Content-Type": "the detection server above",
    "curl -s localhost:8000/predict/upload": "the detection server above",
    "curl -s localhost:8000/predict/image": "the detection server above",
    "torchlab export RUN_DIR --format torchscript|onnx": "a synopsis of the options",
    "torchlab predict EXPORT_DIR inputs...": "a synopsis of the arguments",
    "torchlab serve RUN_DIR|EXPORT_DIR": "a synopsis of the options",
    "--storage postgresql://": "needs a PostgreSQL server; the journal storage runs below",
    "--storage journal:/shared/": "a shared filesystem; the same storage in a local file runs below",
    "torchlab train --resume runs/digits/": "resumes an interrupted run; tests/test_resume.py kills "
    "runs mid-epoch and resumes them bit for bit (the iris resume below trains a run longer)",
    "torchlab train --resume runs/cartpole-dqn": "as the pendulum-td3 resume below; "
    "tests/test_rl_resume.py resumes DQN bit for bit",
    "torchlab evaluate runs/cartpole-ppo": "as the pendulum-td3 evaluation below",
    "torchlab predict runs/shapes-seg": "segmentation prediction: tests/test_segmentation.py",
    "torchlab predict runs/shapes-det": "detection prediction: tests/test_detection.py",
    "torchlab predict RUN_DIR dates.csv": "seq2seq prediction: tests/test_seq2seq.py",
    "torchlab shard photos/": "needs a user's image folder; tests/test_streaming.py shards one "
    "with this command and trains on it",
    # Run elsewhere in the suite, left out here to keep this test short:
    "torchlab train my-images.yaml": "fine-tunes MobileNetV2 as digits-transfer does "
    "(tests/test_transfer.py); the config is validated above and its data checked below",
    "torchlab predict runs/my-images/": "image prediction: as the digits run's my_digits/ below",
    "torchlab export runs/my-images/": "MobileNetV2 to ONNX: tests/test_export_vision.py",
    "torchlab predict RUN_DIR big/": "Parquet output of a large folder: tests/test_batch_predict.py "
    "predicts folders, globs and CSVs a chunk at a time, and resumes",
    "torchlab predict RUN_DIR 'big/*.parquet'": "as the line above",
    "torchlab predict RUN_DIR texts.csv": "tests/test_text_recipes.py predicts a texts.csv",
    "torchlab backtest sunspots": "as the co2 backtest; tests/test_forecasting.py backtests",
    "torchlab cv ": "a run per fold; tests/test_cv.py runs `torchlab cv iris --folds 3`, seeds, "
    "and the --resume of a cross-validation killed mid-fold",
    "torchlab track RUN_DIR --uri http": "needs a tracking server; tests/test_tracking.py "
    "starts one and uploads a run with torchlab track",
    "mlflow models serve": "serves a registered model; tests/test_tracking.py loads the same "
    "model and compares its predictions with torchlab predict",
    "curl -s localhost:5001/invocations": "the MLflow model server above",
    "torchlab tune ": "a study of one tiny trial takes over a minute here; tests/test_tune.py "
    "runs studies on SQLite and journal storage, and each documented space is checked above",
}


def not_run(command: str) -> str | None:
    return next((why for start, why in NOT_RUN.items() if start in command), None)


# --- what runs, in order ---------------------------------------------------------------

TINY = ["trainer.max_epochs=1", "trainer.progress=none", "data.num_workers=0"]
TINY_RL = [
    "trainer.eval_every=128", "trainer.eval_episodes=1", "trainer.checkpoint_every=128",
    "trainer.log_every=128", "trainer.record_gif=false", "trainer.progress=none",
]  # fmt: skip
# Settings that keep each recipe small beyond one epoch.
SMALL = {
    "digits": ["data.source.per_class=10"],
    "co2": ["baseline.methods=[naive]"],
    "sales.yaml": ["baseline.methods=[naive]"],
    "my-images.yaml": ["data.source.size=32"],
    "pendulum-td3": ["trainer.total_steps=128", "agent.learning_starts=32", *TINY_RL],
    "cartpole-dqn": ["trainer.total_steps=256", "agent.learning_starts=64", *TINY_RL],
    "my-cartpole.yaml": ["trainer.total_steps=256", "agent.n_steps=16", *TINY_RL],
}


@dataclass(frozen=True)
class Step:
    """A documented command (``doc``, as written) and how it runs here."""

    doc: str
    run: str | None = None  # the command as run, when placeholders are filled in
    tiny: bool = False  # append the tiny settings of the config it trains


# In order: later steps use the runs and files of earlier ones. RUN_DIR-like placeholders
# (runs/NAME/2026-..., runs/NAME/<stamp>) are filled with the runs made here.
STEPS = [
    Step("torchlab recipes"),
    Step("torchlab show digits > my.yaml"),
    Step("torchlab train digits", tiny=True),
    Step("torchlab train digits optim.lr=1e-3 trainer.max_epochs=5 model.channels=[16,32]",
         tiny=True),
    Step("", "torchlab train iris", tiny=True),  # the run the README's iris examples use
    Step("torchlab train --resume runs/iris/2026-11-25T10-00-00 trainer.max_epochs=200",
         "torchlab train --resume runs/iris/2026-11-25T10-00-00 trainer.max_epochs=2"),
    Step("torchlab evaluate runs/iris/2026-11-25T10-00-00 --split test"),
    Step("torchlab predict runs/iris/2026-11-25T10-00-00 flowers.csv -o predictions.csv"),
    Step("torchlab explain runs/iris/2026-11-25T10-00-00 flowers.csv"),
    Step("torchlab predict runs/digits/2026-11-25T10-00-00 my_digits/"),
    Step("torchlab profile digits --steps 20", "torchlab profile digits --steps 3"),
    Step("torchlab train churn.yaml", tiny=True),
    Step("torchlab show churn.yaml"),
    Step("torchlab train iris model.name=tiny_nets:TinyNet model.hidden=32", tiny=True),
    Step("torchlab export RUN_DIR --format onnx", "torchlab export runs/iris/<run> --format onnx"),
    Step("torchlab export RUN_DIR --format onnx --quantize dynamic-int8",
         "torchlab export runs/iris/<run> --format onnx --quantize dynamic-int8"),
    Step("torchlab predict RUN_DIR/exports/onnx flowers.csv",
         "torchlab predict runs/iris/<run>/exports/onnx flowers.csv"),
    Step("torchlab serve RUN_DIR/exports/onnx --port 8000"),  # with the curl below it
    Step(
        "curl -s localhost:8000/predict -H 'content-type: application/json' -d '{\"rows\": "
        '[{"sepal length (cm)": 5.1, "sepal width (cm)": 3.5, "petal length (cm)": 1.4, '
        '"petal width (cm)": 0.2}]}\''
    ),
    Step("torchlab validate-data my-images.yaml"),
    Step("torchlab show-batch my-images.yaml"),
    Step("torchlab show-batch my-images.yaml -o batch.png"),
    Step("torchlab train co2", tiny=True),
    Step("torchlab predict RUN_DIR --horizon 24", "torchlab predict runs/co2/<run> --horizon 24"),
    Step("torchlab predict runs/co2/<stamp> --horizon 12 -o forecast.csv"),
    Step("torchlab predict runs/co2/<stamp> --horizon 12 --output forecast.csv",
         "torchlab predict runs/co2/<stamp> --horizon 12 --output forecast.csv --overwrite"),
    Step("torchlab backtest co2 --folds 3", tiny=True),
    Step("torchlab train sales.yaml", tiny=True),
    Step("torchlab show sales.yaml"),
    Step("torchlab predict runs/demand/<stamp> --horizon 14 future_promos.csv -o forecast.csv",
         "torchlab predict runs/sales/<stamp> --horizon 14 future_promos.csv -o promo-forecast.csv"),
    Step("torchlab train pendulum-td3 seed=1", tiny=True),
    Step("torchlab train --resume runs/pendulum-td3/2026-11-25T10-00-00",
         "torchlab train --resume runs/pendulum-td3/2026-11-25T10-00-00 trainer.total_steps=256"),
    Step("torchlab evaluate runs/pendulum-td3/2026-11-25T10-00-00 --episodes 20",
         "torchlab evaluate runs/pendulum-td3/2026-11-25T10-00-00 --episodes 2"),
    Step("torchlab train my-cartpole.yaml", tiny=True),  # the yaml of rl.md
    Step("torchlab lr-find digits", "torchlab lr-find digits --steps 10", tiny=True),
    Step("torchlab lr-find my.yaml --start-lr 1e-6 --end-lr 1 --steps 200",
         "torchlab lr-find churn.yaml --start-lr 1e-6 --end-lr 1 --steps 20"),
    Step("torchlab compare runs/digits/2026-11-25T10-00-00 runs/digits/2026-11-25T11-00-00 "
         "-o comparison.html"),
    Step("torchlab compare RUN_DIR RUN_DIR", "torchlab compare runs/iris/<a> runs/iris/<b>"),
    Step("torchlab report RUN_DIR", "torchlab report runs/co2/<run>"),
    # Last: a local MLflow store whose registered model the tracking page's Python loads.
    Step("torchlab train iris 'trainer.tracking.mlflow={register: iris-mlp}'", tiny=True),
]  # fmt: skip
# Steps whose train command comes with tiny settings of another config's kind.


# --- fast checks: YAML, JSON and the configs of train lines --------------------------------

# Recipes that a fragment (a section or two, not a whole config) is laid over to validate it.
FRAGMENT_BASES = ("digits", "co2")


@pytest.mark.parametrize("block", of_lang("yaml"), ids=lambda b: b.id)
def test_yaml_example_is_a_valid_config(block: Block, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from torchlab.config import load_config, read_recipe
    from torchlab.tune.space import check_space

    monkeypatch.chdir(tmp_path)
    for module in of_lang("python"):  # the user's code the example names (corridor.py)
        if module.doc == block.doc and (module.file_name or "").endswith(".py"):
            (tmp_path / module.file_name).write_text(module.text)  # type: ignore[operator]
    raw = yaml.safe_load(block.text)
    if {"extends", "data", "env"} & set(raw):
        path = tmp_path / (block.file_name or "example.yaml")
        path.write_text(block.text)
        config = load_config(path)
        if getattr(config, "tune", None) is not None:  # every branch of the space, as tune checks
            check_space(read_recipe(path), config.tune.space)  # type: ignore[union-attr]
        return
    errors = []
    for base in FRAGMENT_BASES:
        path = tmp_path / f"over-{base}.yaml"
        path.write_text(yaml.safe_dump({"extends": base, **raw}))
        try:
            load_config(path)
            return
        except Exception as exc:
            errors.append(f"over {base}: {exc}")
    pytest.fail(f"{block.id} is valid over none of {FRAGMENT_BASES}: {errors}")


@pytest.mark.parametrize("block", of_lang("json"), ids=lambda b: b.id)
def test_json_example_parses(block: Block) -> None:
    json.loads(block.text)


def train_lines() -> list[str]:
    """``torchlab train RECIPE ...`` lines of built-in recipes (each recipe is smoke-trained
    by test_cli.py, test_rl_recipes.py or its field's own tests)."""
    from torchlab.config import recipe_names

    names, run = set(recipe_names()), {step.doc for step in STEPS}
    return [
        c
        for c in commands()
        if c.startswith("torchlab train ")
        and c.split()[2] in names
        and c not in dict(shown())
        and c not in run
    ]


@pytest.mark.parametrize("command", train_lines())
def test_train_line_resolves_to_a_valid_config(command: str) -> None:
    from torchlab.config import load_config

    _, _, recipe, *rest = shlex.split(command)
    load_config(recipe, [word for word in rest if "=" in word])  # not options: --seeds 5


@pytest.mark.parametrize(("command", "output"), shown())
def test_shown_output_is_what_the_command_prints(command: str, output: str, capsys) -> None:  # type: ignore[no-untyped-def]
    from torchlab.cli import main

    with pytest.raises(SystemExit):
        main(shlex.split(command)[1:])
    captured = capsys.readouterr()
    assert output in (captured.out + captured.err).splitlines()


# --- everything else runs -----------------------------------------------------------------


def test_every_example_is_covered() -> None:
    """Each command is run, checked as a config or listed in NOT_RUN; each step is in the docs."""
    documented, checked = commands(), set(train_lines())
    run = {step.doc for step in STEPS if step.doc}
    covered = checked | run | set(dict(shown()))
    uncovered = [c for c in documented if c not in covered and not not_run(c)]
    assert not uncovered, f"examples neither run nor listed in NOT_RUN: {uncovered}"
    stale = sorted(run - set(documented))
    assert not stale, f"steps whose command is no longer in the docs: {stale}"


@pytest.mark.e2e  # every documented command in turn: about a minute
def test_examples_run(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(Path(__file__)), "run"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]


# --- the runner (in its own process, from an empty folder) ---------------------------------


def write_inputs(folder: Path) -> None:
    """The files the examples name, made as a user's would be."""
    import numpy as np
    import pandas as pd
    from PIL import Image
    from sklearn.datasets import load_digits, load_iris

    iris = load_iris(as_frame=True).frame.drop(columns="target")
    iris.head(5).to_csv(folder / "flowers.csv", index=False)
    digits = load_digits()
    (folder / "my_digits").mkdir()
    for i in range(3):
        image = (digits.images[i] * 255 / 16).astype(np.uint8)
        Image.fromarray(image).save(folder / "my_digits" / f"{i}.png")
    for label in (0, 1, 2):  # images/<class>/*.png for my-images.yaml
        (folder / "images" / f"digit-{label}").mkdir(parents=True)
        for i in np.flatnonzero(digits.target == label)[:12]:
            image = (digits.images[i] * 255 / 16).astype(np.uint8)
            Image.fromarray(image).resize((32, 32)).convert("RGB").save(
                folder / "images" / f"digit-{label}" / f"{i}.png"
            )
    (folder / "photos").mkdir()  # new photos to predict
    for i in range(100, 103):
        image = (digits.images[i] * 255 / 16).astype(np.uint8)
        Image.fromarray(image).resize((32, 32)).convert("RGB").save(folder / "photos" / f"{i}.jpg")
    rng = np.random.default_rng(0)
    n = 200  # churn.yaml: a customer table with an id, a text category and a target
    (folder / "data").mkdir()
    pd.DataFrame(
        {
            "customer_id": [f"c{i:04d}" for i in range(n)],
            "plan": rng.choice(["basic", "plus", "pro"], n),
            "tenure_months": rng.integers(1, 60, n),
            "monthly_spend": rng.normal(40, 10, n).round(2),
            "churned": rng.integers(0, 2, n),
        }
    ).to_csv(folder / "data" / "churn.csv", index=False)
    days = pd.date_range("2024-01-01", periods=240, freq="D")  # sales.yaml: two stores
    stores = [
        pd.DataFrame(
            {
                "date": days.strftime("%Y-%m-%d"),
                "store": store,
                "units": (
                    20 + 5 * np.sin(np.arange(240) * 2 * np.pi / 7) + rng.normal(0, 1, 240)
                ).round(1),
                "footfall": rng.integers(80, 120, 240),
                "promo": rng.integers(0, 2, 240),
            }
        )
        for store in ("north", "south")
    ]
    pd.concat(stores).to_csv(folder / "sales.csv", index=False)
    future = pd.date_range(days[-1] + pd.Timedelta(days=1), periods=14, freq="D")
    pd.concat(
        pd.DataFrame({"date": future.strftime("%Y-%m-%d"), "store": s, "promo": 0})
        for s in ("north", "south")
    ).to_csv(folder / "future_promos.csv", index=False)
    pd.DataFrame(
        {"text": ["Shares fell after the bank cut its forecast.", "The striker scored twice."]}
    ).to_csv(folder / "texts.csv", index=False)


def write_named_blocks(folder: Path) -> None:
    """Each YAML or Python block that names its file (``# churn.yaml``), written there."""
    for block in blocks():
        if block.file_name:
            (folder / block.file_name).write_text(block.text)


def fill(command: str) -> list[str]:
    """The command with each run placeholder replaced by a run made here: the n-th distinct
    placeholder of a run name is its n-th run (``runs/iris/<a> runs/iris/<b>``: two runs)."""
    seen: dict[str, list[str]] = {}

    def real(match: re.Match[str]) -> str:
        name, stamp = match[1], match[2]
        order = seen.setdefault(name, [])
        if stamp not in order:
            order.append(stamp)
        runs = sorted(p for p in (Path("runs") / name).iterdir() if p.is_dir())
        return str(runs[order.index(stamp)])

    return shlex.split(re.sub(r"runs/([\w-]+)/(2026-[\w-]+|<\w+>)", real, command))


def tiny_for(config: str) -> list[str]:
    """The settings that make a config's run tiny (an RL budget, or one small epoch)."""
    small = SMALL.get(config, [])
    rl = any(setting.startswith("trainer.total_steps=") for setting in small)
    return small if rl else [*small, *TINY]


def cli(argv: list[str]) -> tuple[int, str]:
    from torchlab.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            main(argv)
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, out.getvalue()


def serve_and_ask(export: str, curl: str) -> tuple[int, str]:
    """Start the documented server, send the documented request, stop the server."""
    import socket
    import time
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "torchlab", "serve", export, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=1)
                break
            except OSError:
                time.sleep(0.25)
        answer = subprocess.run(
            curl.replace("localhost:8000", f"127.0.0.1:{port}"),
            shell=True,
            capture_output=True,
            text=True,
            timeout=60,
        )
        ok = answer.returncode == 0 and '"predictions"' in answer.stdout
        return (0 if ok else 1), answer.stdout + answer.stderr
    finally:
        server.terminate()
        server.wait(timeout=30)


def python_blocks() -> list[tuple[Block, Callable[[str], str]]]:
    """Each Python block, with what makes it tiny: its run paths filled in, small budgets."""
    small = {
        "max_epochs=40": "max_epochs=2",
        '"runs/cartpole-ppo/2026-11-25T10-00-00"': "str(sorted(Path('runs/my-cartpole').iterdir())[0])",
        "episodes=50": "episodes=2",
        '"batch.png"': '"batch-from-python.png"',
        # MobileNetV2 is trained by tests/test_transfer.py: the small CNN shows the same calls.
        'torchlab.train("digits-transfer"': 'torchlab.train("digits"',
    }

    def shrink(text: str) -> str:
        for old, new in small.items():
            text = text.replace(old, new)
        return text

    return [(block, shrink) for block in of_lang("python")]


def tiny_train(train: Callable[..., Any]) -> Callable[..., Any]:
    """``torchlab.train`` with the tiny settings laid over the example's own overrides."""

    def train_tiny(recipe: str, overrides: Any = None, **kwargs: Any) -> Any:
        extra = tiny_for(recipe)
        return train(
            recipe,
            [*(f"{k}={json.dumps(v)}" for k, v in (overrides or {}).items()), *extra],
            **kwargs,
        )

    return train_tiny


def run_examples() -> int:
    folder = Path.cwd()
    write_inputs(folder)
    write_named_blocks(folder)
    failures = []
    for step in STEPS:
        doc_line = step.doc or f"(setup) {step.run}"
        start = time.perf_counter()
        try:
            if doc_line.startswith("torchlab serve"):
                continue  # run with its request, below
            if doc_line.startswith("curl"):
                export = str(fill("x runs/iris/<run>")[1]) + "/exports/onnx"
                code, out = serve_and_ask(export, doc_line)
            else:
                command, _, into = (step.run or doc_line).partition(" > ")
                argv = fill(command)[1:]
                if step.tiny:
                    argv += tiny_for(argv[1])
                code, out = cli(argv)
                if into:
                    Path(into).write_text(out)
        except Exception:
            code, out = 1, traceback.format_exc()
        print(
            f"{'ok  ' if code == 0 else 'FAIL'} {time.perf_counter() - start:5.1f}s {doc_line}",
            flush=True,
        )
        if code != 0:
            failures.append(f"{doc_line}\n{out[-2500:]}")
    import torchlab

    torchlab.train = tiny_train(torchlab.train)  # type: ignore[assignment]
    for block, shrink in python_blocks():
        start = time.perf_counter()
        try:
            if block.file_name:  # a module the other examples import: imported there
                continue
            exec(compile(shrink(block.text), block.id, "exec"), {"Path": Path})
            print(f"ok   {time.perf_counter() - start:5.1f}s python {block.id}", flush=True)
        except Exception:
            print(f"FAIL python {block.id}", flush=True)
            failures.append(f"python {block.id}\n{traceback.format_exc()[-2500:]}")
    for failure in failures:
        print(f"\n--- {failure}")
    return 1 if failures else 0


if __name__ == "__main__" and sys.argv[1:] == ["run"]:
    sys.exit(run_examples())
