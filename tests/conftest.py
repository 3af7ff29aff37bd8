from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# pytest-xdist runs one worker per core, and every subprocess a test starts is one more
# process: torch's default of one thread per core oversubscribed the CPUs and made the
# suite 2.5x slower on 2 cores. Set before torch is imported; subprocesses inherit it.
for _variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")


def run_cli(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """``python -m torchlab ARGS`` in a subprocess, as a user would run it."""
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    return subprocess.run(
        [sys.executable, "-m", "torchlab", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A randomly initialised two-layer BERT (120 token ids, 64 positions) saved as a local
    Hugging Face directory."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=120, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=64,
    )  # fmt: skip
    directory = tmp_path_factory.mktemp("tiny-bert")
    BertModel(config).save_pretrained(directory)
    return str(directory)


@pytest.fixture
def cli(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Run the CLI in a fresh temporary folder."""
    return lambda *args: run_cli(*args, cwd=tmp_path)


@pytest.fixture(autouse=True)
def mlflow_settings_stay_in_their_test() -> Iterator[None]:
    """``mlflow.set_tracking_uri`` writes ``MLFLOW_TRACKING_URI`` into the environment, and a
    tracked run sets MLflow's HTTP retry settings there: left behind, every later run in the
    worker would be tracked, to a server its test has stopped."""
    saved = {key: value for key, value in os.environ.items() if key.startswith("MLFLOW_")}
    yield
    for key in [key for key in os.environ if key.startswith("MLFLOW_")]:
        del os.environ[key]
    os.environ.update(saved)
