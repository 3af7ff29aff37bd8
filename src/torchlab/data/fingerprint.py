"""Fingerprints of a run's data files, so evaluating against changed data never goes unnoticed.

A file is fingerprinted by its size and SHA-256 (of its first and last MiB beyond 256 MiB,
where hashing it all would slow every run); a folder by the names and sizes of the files
below it. ``data.json`` keeps them; ``evaluate`` compares them with the data as it is now.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

WHOLE_FILE = 256 * 2**20  # hash the whole file up to this size
SAMPLE = 2**20  # beyond it, the first and last MiB


def fingerprint(path: Path) -> dict[str, Any]:
    """What identifies ``path``'s contents: ``{"kind", "bytes", "sha256", ...}``."""
    if path.is_dir():
        digest, files, total = hashlib.sha256(), 0, 0
        for root, dirs, names in os.walk(path):
            dirs.sort()
            for name in sorted(names):
                file = Path(root) / name
                size = file.stat().st_size
                digest.update(f"{file.relative_to(path).as_posix()}\0{size}\n".encode())
                files, total = files + 1, total + size
        return {"kind": "folder", "files": files, "bytes": total, "sha256": digest.hexdigest()}
    size = path.stat().st_size
    digest = hashlib.sha256()
    with path.open("rb") as file:
        if size <= WHOLE_FILE:
            for block in iter(lambda: file.read(2**20), b""):
                digest.update(block)
        else:
            digest.update(file.read(SAMPLE))
            file.seek(size - SAMPLE)
            digest.update(file.read(SAMPLE))
    return {
        "kind": "file",
        "bytes": size,
        "sha256": digest.hexdigest(),
        "sampled": size > WHOLE_FILE,
    }


def fingerprints(paths: list[str]) -> dict[str, dict[str, Any]]:
    """Fingerprints of the paths that exist (others are a source's own names, e.g. ``digits``)."""
    return {p: fingerprint(Path(p)) for p in paths if Path(p).exists()}


def changes(recorded: dict[str, dict[str, Any]]) -> list[str]:
    """One sentence per recorded file or folder that is gone or differs now."""
    found = []
    for name, was in recorded.items():
        path = Path(name)
        if not path.exists():
            found.append(f"'{name}' no longer exists")
            continue
        now = fingerprint(path)
        if now.get("sha256") != was.get("sha256"):
            what = (
                f"{was.get('files')} -> {now.get('files')} files, "
                if now["kind"] == "folder"
                else ""
            )
            found.append(
                f"'{name}' changed since the run was trained ({what}{was.get('bytes')} -> "
                f"{now['bytes']} bytes)"
            )
    return found
