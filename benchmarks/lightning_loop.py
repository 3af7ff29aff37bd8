"""The PyTorch Lightning side of ``loop_overhead.py``, in the benchmark's own environment.

Lightning is no torchlab dependency: ``--setup`` creates ``benchmarks/.venv-lightning``
(torch from this machine's wheels, ``lightning`` from the registry, torchlab itself in
editable mode with its core dependencies), and ``loop_overhead.py`` runs itself with that
interpreter when it exists, so that plain PyTorch, torchlab and Lightning train side by
side in one process.

A Lightning user writes a ``LightningModule`` and a ``DataLoader``, and calls
``Trainer.fit``, which owns the epoch loop. To alternate epoch by epoch with the other two
loops, ``fit`` runs in a worker thread that a callback stops at the start of every epoch
until the benchmark lets it go; only one of the loops ever computes at a time.

    .venv/bin/python benchmarks/lightning_loop.py --setup
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

HERE = Path(__file__).resolve().parent
VENV = HERE / ".venv-lightning"
PYTHON = VENV / "bin" / "python"


def available() -> bool:
    """Whether ``lightning`` can be imported by this interpreter."""
    try:
        import lightning  # noqa: F401
    except ImportError:
        return False
    return True


def version() -> str:
    import lightning

    return lightning.__version__


def enabled(script: str, argv: list[str] | None, *, skip: bool) -> bool:
    """Whether Lightning runs here; re-runs ``script`` in its venv when that exists."""
    if skip or available():
        return not skip
    if PYTHON.exists():
        command = [str(PYTHON), script, *(sys.argv[1:] if argv is None else argv)]
        sys.exit(subprocess.run(command, check=False).returncode)
    print(
        f"note: Lightning is not installed here; create its environment with "
        f"{sys.executable} {script} --setup (comparing with plain PyTorch only).",
        file=sys.stderr,
    )
    return False


def setup() -> None:
    """Create ``benchmarks/.venv-lightning`` with torch, lightning and torchlab."""
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    pip = [str(PYTHON), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "torch==2.14.1", "torchvision==0.29.1", "lightning"], check=True)
    subprocess.run([*pip, "-e", str(HERE.parent)], check=True)  # torchlab's core dependencies


class _Gate:
    """Lets the worker thread's ``fit`` run one epoch per :meth:`LightningLoop.epoch` call."""

    def __init__(self) -> None:
        self.go = threading.Semaphore(0)
        self.done = threading.Semaphore(0)
        self.seconds: list[float] = []
        self.started = 0.0
        self.error: BaseException | None = None


def _module_and_callback(model: nn.Module, lr: float, weight_decay: float, gate: _Gate) -> Any:
    import lightning as L

    class Classifier(L.LightningModule):
        """What a Lightning user writes for this model: loss, logging, optimizer."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            inputs, target = batch
            loss = F.cross_entropy(self.model(inputs), target)
            self.log("train/loss", loss, on_step=False, on_epoch=True)  # the epoch's mean
            return loss

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.AdamW(self.parameters(), lr=lr, weight_decay=weight_decay)

    class EpochGate(L.Callback):
        """Waits for the benchmark before each epoch and times the epoch."""

        def on_train_epoch_start(self, trainer: Any, module: Any) -> None:
            gate.go.acquire()
            gate.started = time.perf_counter()

        def on_train_epoch_end(self, trainer: Any, module: Any) -> None:
            gate.seconds.append(time.perf_counter() - gate.started)
            gate.done.release()

    return Classifier(), EpochGate()


class LightningLoop:
    """``lightning.Trainer.fit`` over a shuffled ``DataLoader``, one epoch per call.

    Args:
        model: The case's model with the same initial weights as the other loops.
        inputs: All training inputs, (N, ...).
        target: All class indices, (N,).
        batch_size: Samples per step.
        epochs: Epochs ``fit`` runs; call :meth:`epoch` exactly that many times.
        lr: AdamW's learning rate.
        weight_decay: AdamW's weight decay.
        folder: Where the ``CSVLogger`` writes the epoch losses.
    """

    def __init__(
        self,
        model: nn.Module,
        inputs: torch.Tensor,
        target: torch.Tensor,
        *,
        batch_size: int,
        epochs: int,
        lr: float,
        weight_decay: float,
        folder: Path,
    ) -> None:
        import lightning as L
        from lightning.pytorch.loggers import CSVLogger

        self.gate = _Gate()
        module, callback = _module_and_callback(model, lr, weight_decay, self.gate)
        loader = DataLoader(TensorDataset(inputs, target), batch_size=batch_size, shuffle=True)
        trainer = L.Trainer(
            accelerator="cpu",
            devices=1,
            max_epochs=epochs,
            logger=CSVLogger(folder, name="lightning"),
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[callback],
        )
        self.thread = threading.Thread(
            target=self._fit, args=(trainer, module, loader), daemon=True
        )
        self.thread.start()

    def _fit(self, trainer: Any, module: Any, loader: DataLoader) -> None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # e.g. "consider more DataLoader workers"
                trainer.fit(module, loader)
        except BaseException as exc:  # re-raised in the main thread by epoch()
            self.gate.error = exc
            self.gate.done.release()

    def epoch(self) -> float:
        """Let ``fit`` train one epoch; returns its seconds."""
        self.gate.go.release()
        self.gate.done.acquire()
        if self.gate.error is not None:
            raise RuntimeError(f"Lightning's fit failed: {self.gate.error!r}") from self.gate.error
        return self.gate.seconds[-1]

    def close(self) -> None:
        """Wait for ``fit`` to return (after its last epoch)."""
        self.thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setup", action="store_true", help=f"create {VENV} and exit")
    args = parser.parse_args()
    if args.setup:
        setup()
        print(f"created {VENV}")
    else:
        parser.print_help()


if __name__ == "__main__":
    main()
