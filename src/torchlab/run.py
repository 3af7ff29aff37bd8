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
  summary.json       test metrics and the baseline (written last, only when the run completes)
```
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
from dataclasses import asdict
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from torchlab.config import RunConfig, validate
from torchlab.errors import RunError
from torchlab.trust import (
    CODE_FILE,
    allow_recorded,
    sources_named_in,
    to_records,
    trusting,
)


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically, so a reader never sees half a file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise RunError(
            f"'{path}' is missing; is '{path.parent}' a torchlab run directory?"
        ) from None
    except ValueError:
        raise RunError(f"'{path}' is not valid JSON; the run directory is damaged.") from None


def create_run_dir(config: RunConfig, output_dir: str | Path | None = None) -> Path:
    """A new, empty ``<output_dir>/<name>/<timestamp>`` folder (suffixed if taken)."""
    root = Path(output_dir or config.output_dir) / config.name
    stamp = datetime.now().strftime("%Y-%m-%dT%H-%M-%S")
    for attempt in range(1000):
        path = root / (stamp if attempt == 0 else f"{stamp}-{attempt + 1}")
        try:
            path.mkdir(parents=True, exist_ok=False)
            return path
        except FileExistsError:
            continue
    raise RunError(f"Cannot create a new run folder under '{root}'; clean up old runs there.")


def record_code(folder: Path, config: Any) -> None:
    """Write ``code.json``: where each outside module the config names came from (none: no file)."""
    sources = sources_named_in(config.model_dump(mode="json"))
    if sources:
        write_json(folder / CODE_FILE, to_records(sources))


def environment(device: Any, seed: int) -> dict[str, Any]:
    import numpy
    import sklearn
    import torch
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
        if not (self.dir / "config.yaml").is_file():
            raise RunError(
                f"'{self.dir}' is not a torchlab run directory (no config.yaml); check the path."
            )

    def __repr__(self) -> str:
        return f"Run('{self.dir}', status={self.status!r})"

    @cached_property
    def config(self) -> RunConfig:
        """The run's config; the code it names is imported only if the run recorded it and
        the files are unchanged (see :mod:`torchlab.trust`), or under ``--trust-code``."""
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
        with trusting(self.trust_code):
            code = self.dir / CODE_FILE
            if code.is_file():
                allow_recorded(read_json(code), self.dir)
            return validate(raw)

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

    def save_spec(self, spec: Any) -> None:
        write_json(self.dir / "spec.json", asdict(spec))

    @property
    def featurizer(self) -> Any:
        from torchlab.data import load_featurizer

        return load_featurizer(read_json(self.dir / "featurizer.json"), self.dir)

    def load_model(self) -> Any:
        """The trained model with its best weights, in eval mode on the CPU."""
        from torchlab.models import build_model
        from torchlab.tasks import build_task
        from torchlab.training.checkpoint import load_into, load_weights

        task = build_task(self.config.task, self.spec)
        model = build_model(self.config.model, self.spec, task.num_outputs, trained=True)
        load_into(
            model, load_weights(self.dir / "model.safetensors"), self.dir / "model.safetensors"
        )
        return model.eval()
