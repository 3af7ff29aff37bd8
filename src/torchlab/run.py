"""Run directories: everything about one run in one folder, never overwritten.

```
runs/<recipe>/<timestamp>/
  config.yaml        the resolved config          run.json       status: running | failed | completed
  environment.json   versions, device, seed       spec.json      what the model was built for
  featurizer.json    how raw input becomes model input (used by predict)
  data.json          split sizes, class balance, imputed values
  metrics.jsonl      one line per epoch and per logged step
  tensorboard/       event files                  checkpoints/   resumable checkpoints
  model.safetensors  best weights                 learning_curves.png
  report.html        one self-contained page      MODEL_CARD.md  intended use, data, metrics, limits
  lr_finder.png/.json  the range test, when optim.lr is auto
  code.json          where the code the config names came from (file, SHA-256), if any
  calibration.json   the temperature or interval half-widths fitted with task.calibrate / intervals
  summary.json       test metrics and the baseline (written last, only when the run completes)
  .lock              held by the process that trains the run (its PID inside)
```
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import platform
import shutil
from collections.abc import Callable, Iterator
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import IO, Any

import yaml

from torchlab.config import check_early, validate
from torchlab.errors import ConfigError, DataError, RunError, StorageError
from torchlab.files import fsync_dir, storage_errors, temporary_dir, write_json, write_text
from torchlab.kinds import KindConfig
from torchlab.trust import (
    CODE_FILE,
    allow_recorded,
    sources_named_in,
    to_records,
    trusting,
)

LOCK = ".lock"


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise RunError(
            f"'{path}' is missing; is '{path.parent}' a torchlab run directory?"
        ) from None
    except ValueError:
        raise RunError(f"'{path}' is not valid JSON; the run directory is damaged.") from None


def create_run(
    config: Any,
    output_dir: str | Path | None = None,
    write_files: Callable[[Path], None] = lambda folder: None,
    status: str = "running",
    folder: str | Path | None = None,
) -> Run:
    """A new ``<output_dir>/<name>/<timestamp>`` folder (suffixed if taken), held by this process.

    Its ``config.yaml``, ``code.json``, ``run.json`` and whatever ``write_files(folder)``
    writes go into a hidden folder beside it first, which takes its final name only when
    they are all there: a crash or a full disk never leaves a half-made run folder.
    ``folder`` names the run folder itself instead (a fold of a cross-validation); it must
    not exist yet.
    """
    root = Path(folder).parent if folder else Path(output_dir or config.output_dir) / config.name
    with temporary_dir(root, ".new-run-") as staging:
        lock = hold_lock(staging)
        try:
            write_text(staging / "config.yaml", config.to_yaml())
            record_code(staging, config)
            Run(staging).set_status(status, created=datetime.now().isoformat(timespec="seconds"))
            write_files(staging)
            run = Run(
                _move_to(staging, Path(folder)) if folder else _move_to_free_name(staging, root)
            )
        except BaseException:
            lock.close()
            raise
    run.lock = lock
    return run


def _move_to(staging: Path, path: Path) -> Path:
    try:
        staging.rename(path)  # fails if the folder exists and is not empty
    except OSError as exc:
        if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
            raise RunError(f"Run folder '{path}' exists already; resume it instead.") from None
        raise
    fsync_dir(path.parent)
    return path


def _move_to_free_name(staging: Path, root: Path) -> Path:
    stamp = datetime.now().strftime("%Y-%m-%dT%H-%M-%S")
    for attempt in range(1000):
        path = root / (stamp if attempt == 0 else f"{stamp}-{attempt + 1}")
        if path.exists():
            continue
        try:
            staging.rename(path)  # fails if another run took the name meanwhile (not empty)
        except OSError as exc:
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                continue
            raise
        fsync_dir(root)
        return path
    raise RunError(f"Cannot create a new run folder under '{root}'; clean up old runs there.")


def elastic_marker(config: Any, output_dir: str | Path | None) -> Path | None:
    """Where a ``torchrun`` job notes its run folder, so its restarts resume it."""
    job = os.environ.get("TORCHELASTIC_RUN_ID")
    root = Path(output_dir or config.output_dir) / config.name
    return root / f".torchrun-{job}" if job else None


def elastic_restart_of(config: Any, output_dir: str | Path | None) -> Path | None:
    """The run folder of this ``torchrun`` job when torchrun restarted it after a failure."""
    marker = elastic_marker(config, output_dir)
    if marker is None or int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) == 0:
        return None
    return Path(marker.read_text()) if marker.is_file() else None


def hold_lock(folder: Path) -> IO[str]:
    """Lock ``folder`` for this process (released when the returned file closes or it dies)."""
    import fcntl

    with storage_errors(folder / LOCK):
        lock = (folder / LOCK).open("a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or "another process"
        lock.close()
        raise RunError(
            f"Run folder '{folder}' is in use by process {holder}; wait for it to finish "
            "(or stop it) before training it again."
        ) from None
    with storage_errors(folder / LOCK):
        lock.seek(0)
        lock.truncate()
        lock.write(f"{os.getpid()}\n")
        lock.flush()
    return lock


def record_code(folder: Path, config: Any) -> None:
    """Write ``code.json``: where each outside module the config names came from (none: no file)."""
    sources = sources_named_in(config.model_dump(mode="json"))
    if sources:
        write_json(folder / CODE_FILE, to_records(sources))


def environment(device: Any, seed: int, world: Any = None) -> dict[str, Any]:
    """Versions, machine and device; under ``torchrun`` also the ranks and their backend."""
    import numpy
    import sklearn
    import torch
    import torch.distributed as dist
    import torchvision

    from torchlab import __version__

    return {
        "torchlab": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": numpy.__version__,
        "scikit-learn": sklearn.__version__,
        "platform": platform.platform(),
        "processor": platform.processor(),
        "cpus": os.cpu_count(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.machine(),
        "threads": torch.get_num_threads(),
        "seed": seed,
        "world_size": world.size if world is not None else 1,
        "distributed_backend": dist.get_backend() if dist.is_initialized() else None,
    }


class Run:
    """A run directory, finished or not.

    Attributes:
        dir: The run's folder.
        trust_code: Whether its config may import code it did not record (``--trust-code``).
    """

    def __init__(self, path: str | Path, *, trust_code: bool = False) -> None:
        self.dir = Path(path).absolute()  # still this run after a change of directory
        self.trust_code = trust_code
        self.lock: IO[str] | None = None
        if not (self.dir / "config.yaml").is_file():
            raise RunError(
                f"'{self.dir}' is not a torchlab run directory (no config.yaml); check the path."
            )

    def __repr__(self) -> str:
        return f"Run('{self.dir}', status={self.status!r})"

    @cached_property
    def config(self) -> KindConfig:
        """The run's config; the code it names is imported only if the run recorded it and
        the files are unchanged (see :mod:`torchlab.trust`), or under ``--trust-code``."""
        with self._code_allowed():
            return validate(self._raw_config())

    def check_early(self) -> None:
        """Raise what reading :attr:`config` would raise where the registry index can tell
        without importing the leaves: a damaged file, code the run may not import, a name
        or setting that no longer exists (see :mod:`torchlab.precheck`)."""
        with self._code_allowed():
            check_early(self._raw_config())

    @contextlib.contextmanager
    def _code_allowed(self) -> Iterator[None]:
        with trusting(self.trust_code):
            code = self.dir / CODE_FILE
            if code.is_file():
                allow_recorded(read_json(code), self.dir)
            yield

    def _raw_config(self) -> dict[str, Any]:
        path = self.dir / "config.yaml"
        try:
            raw = yaml.safe_load(path.read_text())
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            problem = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise RunError(
                f"'{path}' is not a readable torchlab config ({problem}); the run directory is "
                "damaged."
            ) from None
        if not isinstance(raw, dict):
            raise RunError(
                f"'{path}' does not hold a config mapping; the run directory is damaged."
            )
        return raw

    @property
    def status(self) -> str:
        return read_json(self.dir / "run.json")["status"]

    def set_status(self, status: str, **extra: Any) -> None:
        path = self.dir / "run.json"
        info = read_json(path) if path.exists() else {}
        write_json(
            path,
            {
                **info,
                "status": status,
                "updated": datetime.now().isoformat(timespec="seconds"),
                **extra,
            },
        )

    def hold(self) -> None:
        """Lock the run for this process, which is about to train it (rank 0 alone under DDP)."""
        if self.lock is None and os.environ.get("RANK", "0") == "0":
            self.lock = hold_lock(self.dir)

    def release(self) -> None:
        if self.lock is not None:
            self.lock.close()  # closing the file releases its flock
            self.lock = None

    @contextlib.contextmanager
    def recording_failure(self, *, new: bool, main: bool) -> Iterator[None]:
        """Record in ``run.json`` why training stopped (rank 0 records for all ranks).

        A new run stopped by its config or data before its first checkpoint is removed:
        nothing in it is worth keeping. A completed run whose further training failed before
        it started (its status still says completed) keeps its status: its results stand.
        """
        try:
            yield
        except BaseException as exc:
            if not main:
                raise
            untrained = not (self.dir / "checkpoints").exists()
            if new and untrained and isinstance(exc, (ConfigError, DataError)):
                shutil.rmtree(self.dir)
                raise
            if self.status != "completed":
                with contextlib.suppress(StorageError):  # a full disk may refuse run.json too
                    self.set_status("failed", error=f"{type(exc).__name__}: {exc}")
            raise

    @property
    def summary(self) -> dict[str, Any]:
        if not (self.dir / "summary.json").exists():
            raise RunError(
                f"Run '{self.dir}' has not completed (status: {self.status}); "
                f"resume it with: torchlab train --resume {self.dir}"
            )
        return read_json(self.dir / "summary.json")

    @property
    def metrics(self) -> dict[str, Any]:
        """Test metrics of the best weights (``test/accuracy``, ...)."""
        return self.summary["test"]

    @property
    def history(self) -> list[dict[str, Any]]:
        """Every line of ``metrics.jsonl``: per-epoch records and logged steps."""
        path = self.dir / "metrics.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    @property
    def spec(self) -> Any:
        from torchlab.data.base import DataSpec

        raw = read_json(self.dir / "spec.json")
        return DataSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})

    @property
    def featurizer(self) -> Any:
        from torchlab.data import load_featurizer

        return load_featurizer(read_json(self.dir / "featurizer.json"), self.dir)

    def load_model(self) -> Any:
        """The trained model with its best weights, in eval mode on the CPU (an RL run: its
        deterministic policy)."""
        from torchlab.kinds import kind_of_config

        return kind_of_config(self.config).load_model(self)
