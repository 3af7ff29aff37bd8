"""The exceptions a user can see.

Each carries one sentence that names the bad thing and the fix. The CLI prints the message
and exits with ``exit_code``; no traceback unless ``--debug`` is given.
"""

from __future__ import annotations


class TorchlabError(Exception):
    """Base of every error torchlab raises on purpose for a user to read."""

    exit_code = 1


class ConfigError(TorchlabError):
    """A recipe, YAML file or override is wrong (unknown key, wrong type, bad value)."""

    exit_code = 2


class RegistryError(ConfigError):
    """A component name is unknown or registered twice."""


class DataError(TorchlabError):
    """Input data is missing, empty or malformed."""

    exit_code = 2


class CheckpointError(TorchlabError):
    """A checkpoint or run directory is missing, corrupt or belongs to another model."""

    exit_code = 2


class RunError(TorchlabError):
    """A run directory cannot be created, found or resumed."""

    exit_code = 2


class StorageError(TorchlabError):
    """A file cannot be written: the disk is full, a size limit was hit, or permission lacks."""

    exit_code = 2


class ExportError(TorchlabError):
    """A model cannot be exported faithfully, or an export directory is unusable."""

    exit_code = 2


class TrustError(TorchlabError):
    """A run or export folder would run code, or reach outside itself, without the user's say."""

    exit_code = 2


def load_problem(exc: BaseException) -> str:
    """The part of a failed ``torch.load``/safetensors message that says what is wrong.

    torch's own message leads with advice to retry with ``weights_only=False`` or to
    allowlist the offending global, which would run whatever a tampered file holds: that
    advice is dropped.
    """
    text = str(exc)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1].strip()
        return (text.split(". ")[0].splitlines() or [type(exc).__name__])[0][:200]
    noise = ("Weights only load failed", "(1)", "(2)", "Re-running", "Please", "Check the doc")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(noise)]
    return (useful or [type(exc).__name__])[0].split(". ")[0].removesuffix(".")[:200]
