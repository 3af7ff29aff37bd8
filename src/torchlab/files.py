"""Writing the files of run and export folders: whole or not at all, and a full disk says so.

Every such file is written to a temporary file in its own folder, fsynced, then renamed
over its final name (``os.replace`` is atomic on POSIX), so a reader, a resume or a crash
never meets half a file. Temporary files and folders are made private by ``tempfile``;
they are given the permissions the umask gives any new file (``0o666 & ~umask``) or folder
(``0o777 & ~umask``) before they take their final name. A write that fails for want of
space (or of a permission) raises :class:`~torchlab.errors.StorageError`, naming the path
and the free space there, instead of the writer's own message.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from torchlab.errors import StorageError

# A full disk, a full quota, and a file over the size limit (RLIMIT_FSIZE) read alike.
NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
REFUSED = {errno.EACCES, errno.EPERM, errno.EROFS}


def umask() -> int:
    """The process's umask (reading it means setting it; it is put back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(path: Path) -> None:
    with storage_errors(path):
        path.mkdir(parents=True, exist_ok=True)


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write; on success it becomes ``path``, synced."""
    make_dirs(path.parent)
    with storage_errors(path):
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        with storage_errors(path):
            yield tmp
            with tmp.open("rb+") as f:
                os.fsync(f.fileno())
            tmp.chmod(0o666 & ~umask())
            os.replace(tmp, path)
            fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode())


def write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2) + "\n")


def write_with(path: Path, write: Callable[[Any], None]) -> None:
    """Write ``path`` atomically with ``write(file object)`` (``torch.save``, ``savefig``)."""
    with atomic_path(path) as tmp, tmp.open("wb") as f:
        write(f)


@contextlib.contextmanager
def temporary_dir(parent: Path, prefix: str) -> Iterator[Path]:
    """A new folder in ``parent`` with the umask's permissions, removed unless renamed away."""
    make_dirs(parent)
    with storage_errors(parent):
        folder = Path(tempfile.mkdtemp(prefix=prefix, suffix=".tmp", dir=parent))
    try:
        folder.chmod(0o777 & ~umask())
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def storage_errors(path: Path) -> Iterator[None]:
    """Turn a failed write of ``path`` into one :class:`StorageError` line."""
    try:
        yield
    except StorageError:
        raise
    except Exception as exc:
        code = failed_errno(exc)
        if code not in NO_SPACE | REFUSED:
            raise
        raise StorageError(storage_problem(path, code)) from exc


def failed_errno(exc: BaseException) -> int | None:
    """The OS error behind ``exc``: its own errno, one in its chain, or one in its message.

    ``torch.save`` reports a failed write as ``RuntimeError: [enforce fail at
    inline_container.cc] unexpected pos`` with the ``OSError`` as its context;
    safetensors writes ``I/O error: ... (os error 28)`` into its message.
    """
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno is not None:
            return seen.errno
        found = re.search(r"os error (\d+)", str(seen))
        if found:
            return int(found[1])
        seen = seen.__cause__ or seen.__context__
    return None


def storage_problem(path: Path, code: int) -> str:
    reason = os.strerror(code)
    if code not in NO_SPACE:
        return (
            f"Cannot write '{path}': {reason}; check the folder's permissions or write elsewhere."
        )
    return (
        f"Cannot write '{path}': {reason} ({human_bytes(free_space(path))} free there); "
        "free some space there, then resume the run or start it again."
    )


def free_space(path: Path) -> int:
    """Bytes free to this user on the filesystem that holds ``path``."""
    for folder in (path, *path.parents):
        if folder.exists():
            stats = os.statvfs(folder)
            return stats.f_bavail * stats.f_frsize
    return 0


def human_bytes(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")
