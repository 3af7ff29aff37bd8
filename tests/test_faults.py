"""Faults a run meets, each ending in one line and a coherent run folder: a diverging loss,
a full disk, a run killed before its first checkpoint, a resume that fails or finds the run
in use, and names that would lead outside the output folder."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import signal
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

import torchlab
from conftest import run_cli
from torchlab.cli import main
from torchlab.training.checkpoint import verify

QUICK = {"trainer.max_epochs": 1, "trainer.progress": "none"}


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """Run the CLI in this process: its exit code and its one ``error:`` line (if any)."""
    try:
        main(list(args))
        code = 0
    except SystemExit as exited:
        code = int(exited.code or 0)
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == (1 if code else 0), err
    return code, errors[0] if errors else ""


@contextlib.contextmanager
def file_size_limit(size: int) -> Iterator[None]:
    """Writes past ``size`` bytes fail (EFBIG), as on a full disk; no root needed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an error, not a killed process
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)


def status(run: Path) -> dict:
    return json.loads((run / "run.json").read_text())


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A completed one-epoch iris run (7 steps, checkpoints at steps 3, 6 and 7, 2 kept),
    trained under umask 027."""
    previous = os.umask(0o027)
    try:
        run = torchlab.train(
            "iris",
            {**QUICK, "trainer.checkpoint_every_n_steps": 3},
            output_dir=tmp_path_factory.mktemp("trained"),
        )
    finally:
        os.umask(previous)
    return run.dir


@pytest.fixture
def run_copy(trained: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(trained, tmp_path / "run"))


def test_a_diverging_run_stops_before_any_checkpoint_holds_nan(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, line = cli(
        capsys, "train", "iris", "optim.name=sgd", "optim.lr=1e6", "trainer.max_epochs=2",
        "trainer.checkpoint_every_n_steps=1", "trainer.progress=none",
        "--output-dir", str(tmp_path),
    )  # fmt: skip
    assert code == 2 and "non-finite" in line and " at step " in line, line
    step = int(line.split(" at step ")[1].split()[0])
    (run,) = (tmp_path / "iris").iterdir()
    kept = sorted((run / "checkpoints").iterdir())
    assert kept and kept[-1].name.startswith(f"step-{step - 1:09d}")  # the last finite one
    for checkpoint in kept:
        weights = load_file(checkpoint / "model.safetensors")
        assert all(torch.isfinite(w).all() for w in weights.values()), checkpoint.name
        state = torch.load(checkpoint / "state.pt", weights_only=True)
        moments = [v for s in state["optimizer"]["state"].values() for v in s.values()]
        assert all(torch.isfinite(m).all() for m in moments), checkpoint.name
    assert status(run)["status"] == "failed"


def test_a_full_disk_while_training_is_one_line_and_keeps_the_checkpoints(
    capsys: pytest.CaptureFixture[str], run_copy: Path
) -> None:
    before = sorted((run_copy / "checkpoints").iterdir())
    with file_size_limit(4000):  # run.json fits; the weights (5.6 kB) do not
        code, line = cli(capsys, "train", "--resume", str(run_copy), "trainer.max_epochs=2")
    assert code == 2
    assert f"Cannot write '{run_copy / 'checkpoints'}" in line and "free there" in line, line
    assert sorted((run_copy / "checkpoints").iterdir()) == before
    for checkpoint in before:
        verify(checkpoint)  # whole, as written
    assert not list((run_copy / "checkpoints").glob(".*"))  # no temporary folder left behind
    info = status(run_copy)
    assert info["status"] == "failed" and info["error"].startswith("StorageError: Cannot write")


def test_a_full_disk_when_a_run_starts_leaves_no_run_folder(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with file_size_limit(300):  # config.yaml does not fit
        code, line = cli(capsys, "train", "iris", "--output-dir", str(tmp_path))
    assert code == 2 and "config.yaml" in line and "free there" in line, line
    assert list((tmp_path / "iris").iterdir()) == []  # neither a run nor a half-made one


def test_run_and_export_files_follow_the_umask(trained: Path, tmp_path: Path) -> None:
    files = ["config.yaml", "run.json", "summary.json", "model.safetensors", "data.json"]
    assert {name: mode(trained / name) for name in files} == dict.fromkeys(files, 0o640)
    assert mode(trained) == 0o750
    for checkpoint in (trained / "checkpoints").iterdir():
        assert mode(checkpoint) == 0o750 and mode(checkpoint / "state.pt") == 0o640
    previous = os.umask(0o027)
    try:
        target = torchlab.export(trained, "torchscript", output=tmp_path / "export")
    finally:
        os.umask(previous)
    assert mode(target) == 0o750 and mode(target / "export.json") == 0o640


@pytest.mark.slow
def test_a_run_killed_before_its_first_checkpoint_resumes_without_repeating_history(
    tmp_path: Path,
) -> None:
    kill = {"name": "torchlab.testing:KillAtStep", "step": 3, "marker": str(tmp_path / "killed")}
    trainer = {"max_epochs": 1, "progress": "none", "log_every_n_steps": 1, "callbacks": [kill]}
    config = {"extends": "iris", "trainer": trainer}  # 7 steps; the first checkpoint at step 7
    (tmp_path / "killed.yaml").write_text(yaml.safe_dump(config))
    killed = run_cli("train", "killed.yaml", "--output-dir", "runs", cwd=tmp_path)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    (run,) = (tmp_path / "runs" / "killed").iterdir()
    assert not (run / "checkpoints").exists()

    torchlab.train(resume=run)
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines if "train/loss_step" in r] == list(range(1, 8))
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss_step")] == list(range(1, 8))


def test_train_seconds_count_every_segment_of_a_resumed_run(run_copy: Path) -> None:
    first = sorted((run_copy / "checkpoints").iterdir())[-1]
    earlier = torch.load(first / "state.pt", weights_only=True)["loop"]["seconds"]
    assert earlier > 0
    torchlab.train(resume=run_copy, overrides={"trainer.max_epochs": 2})
    last = sorted((run_copy / "checkpoints").iterdir())[-1]
    assert torch.load(last / "state.pt", weights_only=True)["loop"]["seconds"] > earlier
    assert json.loads((run_copy / "summary.json").read_text())["train_seconds"] > earlier


def test_a_failed_resume_of_a_completed_run_leaves_it_completed(
    capsys: pytest.CaptureFixture[str], run_copy: Path
) -> None:
    summary = (run_copy / "summary.json").read_text()
    latest = sorted((run_copy / "checkpoints").iterdir())[-1]
    (latest / "state.pt").write_bytes(b"")  # a damaged checkpoint: the resume cannot start
    code, line = cli(capsys, "train", "--resume", str(run_copy), "trainer.max_epochs=2")
    assert code == 2 and "state.pt" in line, line
    assert status(run_copy)["status"] == "completed"
    assert (run_copy / "summary.json").read_text() == summary


def test_a_run_in_use_by_another_process_is_refused(
    capsys: pytest.CaptureFixture[str], run_copy: Path
) -> None:
    from torchlab.run import hold_lock

    lock = hold_lock(run_copy)  # as a training process holds it
    try:
        code, line = cli(capsys, "train", "--resume", str(run_copy), "trainer.max_epochs=2")
    finally:
        lock.close()
    assert code == 2 and f"is in use by process {os.getpid()}" in line, line
    assert status(run_copy)["status"] == "completed"
    assert len(list((run_copy / "checkpoints").iterdir())) == 2  # untouched


@pytest.mark.parametrize("recipe", ["iris", "cartpole-ppo"])
@pytest.mark.parametrize("name", ["../../outside", "ABSOLUTE"])
def test_a_name_that_leads_outside_the_output_folder_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, recipe: str, name: str
) -> None:
    name = str(tmp_path / "outside") if name == "ABSOLUTE" else name
    output = tmp_path / "a" / "b"
    code, line = cli(capsys, "train", recipe, f"name={name}", "--output-dir", str(output))
    assert code == 2 and "Config key 'name'" in line and "plain folder name" in line, line
    assert not (tmp_path / "outside").exists()
