"""What torchlab trusts: the code a config names, and the paths inside a folder from elsewhere.

A config may name code outside torchlab as ``module:attr``: a model class, a loss, a
callback, a gymnasium environment. Whether torchlab imports it depends on whose config it is:

- **A config the user trains from is the user's.** Its modules are found in the current
  directory, then beside the config file, then among installed packages (as ``python -m``
  and uvicorn find them), and imported. The run records each module's file and SHA-256 in
  ``code.json``.
- **A run or export folder is data**, possibly someone else's. Loading it imports only
  torchlab's own modules, and the modules its run recorded when they are still the same
  files by hash. Anything else needs ``--trust-code`` (``trusting()``), the way Hugging Face
  asks for ``trust_remote_code``.

The allowed modules are process-wide: a module the user's config named stays importable by
the model, loaders and workers that the same command builds later.
"""

from __future__ import annotations

import hashlib
import importlib
import re
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from torchlab.errors import ConfigError, TrustError

CODE_FILE = "code.json"
OWN_PACKAGE = "torchlab"
# ``package.module:attr``; gymnasium's ``module:Env-v0`` ids have the same shape.
CODE_NAME = re.compile(r"^([A-Za-z_][\w]*(?:\.[A-Za-z_][\w]*)*):([\w.\-]+)$")


@dataclass(frozen=True)
class CodeSource:
    """Where one imported module came from: enough to import it again and to notice a change.

    Attributes:
        module: The dotted module name, e.g. ``mymodel`` or ``mypkg.nets``.
        file: The module's source file (absolute).
        root: The folder it is imported from (the ``sys.path`` entry).
        sha256: The file's hash when the run was trained.
    """

    module: str
    file: str
    root: str
    sha256: str

    @classmethod
    def of(cls, module: ModuleType) -> CodeSource | None:
        """The source of an imported module, or None for one without a file (built-ins)."""
        file = getattr(module, "__file__", None)
        if not file:
            return None
        path = Path(file).resolve()
        levels = module.__name__.count(".") + (2 if path.name == "__init__.py" else 1)
        return cls(module.__name__, str(path), str(path.parents[levels - 1]), file_hash(path))


def file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# Module name -> where it was imported from (None: a module without a file).
_allowed: dict[str, CodeSource | None] = {}
# Set while the user's own config is read and checked: the folders to look in first.
_search: ContextVar[tuple[Path, ...] | None] = ContextVar("torchlab_code_search", default=None)
_trust_all: ContextVar[bool] = ContextVar("torchlab_trust_code", default=False)


@contextmanager
def users_config(folder: Path | None = None) -> Iterator[None]:
    """Read a config the user gave: the code it names may be imported, looked up in the
    current directory, then ``folder`` (the config file's), then installed packages."""
    folders = [Path.cwd()] + ([folder.resolve()] if folder is not None else [])
    token = _search.set(tuple(dict.fromkeys(folders)))
    try:
        yield
    finally:
        _search.reset(token)


@contextmanager
def trusting(trust: bool = True) -> Iterator[None]:
    """``--trust-code``: let run and export folders import the code they name."""
    token = _trust_all.set(trust or _trust_all.get())
    try:
        yield
    finally:
        _trust_all.reset(token)


def trusted() -> bool:
    """Whether the user passed ``--trust-code`` for what is being loaded now."""
    return _trust_all.get()


def import_attr(path: str, where: str) -> Any:
    """``package.module:attr`` named in a config, imported under the rules above."""
    module_name, _, attr = path.partition(":")
    module = import_module(module_name, where)
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ConfigError(
            f"Module '{module_name}' has no attribute '{attr}' (named at '{where}'); "
            f"check the spelling after the colon."
        ) from None


def import_module(name: str, where: str) -> ModuleType:
    """Import a module named in a config, if the config may bring it in (see module doc)."""
    if name == OWN_PACKAGE or name.startswith(f"{OWN_PACKAGE}."):
        return _import(name, where)
    if name in _allowed:
        source = _allowed[name]
        return _import(name, where, source.root if source else None)
    folders = _search.get()
    if folders is None and not trusted():
        raise TrustError(
            f"'{where}' names code from outside torchlab ('{name}'), which a run or export "
            "folder may not import unless you trust it; pass --trust-code if you do."
        )
    top = name.split(".")[0]
    roots = [
        f for f in folders or (Path.cwd(),) if (f / f"{top}.py").is_file() or (f / top).is_dir()
    ]
    module = _import(name, where, str(roots[0]) if roots else None)
    _allowed[name] = CodeSource.of(module)
    return module


def _import(name: str, where: str, root: str | None = None) -> ModuleType:
    """Import ``name``; from ``root`` first when given, even if a module of that name from
    elsewhere was imported before (two runs' ``mymodel.py`` in one process)."""
    if root is not None:
        if root in sys.path:
            sys.path.remove(root)
        sys.path.insert(0, root)
        loaded = getattr(sys.modules.get(name), "__file__", None)
        if loaded and not Path(loaded).resolve().is_relative_to(Path(root).resolve()):
            top = name.split(".")[0]
            for key in [k for k in sys.modules if k == top or k.startswith(f"{top}.")]:
                del sys.modules[key]
        importlib.invalidate_caches()
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ConfigError(
            f"Cannot import module '{name}' named at '{where}' ({exc}); put "
            f"{name.split('.')[0]}.py in the current directory or beside the config file, or "
            "install its package."
        ) from exc


# --- what a run records, and loading it back ------------------------------------------------


def sources_named_in(data: Any) -> list[CodeSource]:
    """The recorded sources of every outside module that a config's values name."""
    names: dict[str, None] = {}
    for value in _strings(data):
        match = CODE_NAME.match(value)
        if match and match[1] in _allowed and not match[1].startswith(OWN_PACKAGE):
            names[match[1]] = None
    return [source for name in names if (source := _allowed[name]) is not None]


def _strings(data: Any) -> Iterable[str]:
    if isinstance(data, str):
        yield data
    elif isinstance(data, dict):
        for value in data.values():
            yield from _strings(value)
    elif isinstance(data, (list, tuple)):
        for value in data:
            yield from _strings(value)


def to_records(sources: Iterable[CodeSource]) -> list[dict[str, str]]:
    return [asdict(source) for source in sources]


def allow_recorded(records: Any, folder: Path) -> None:
    """Let a run folder import the modules it recorded, when they are the same files.

    Raises:
        TrustError: A recorded file is gone, changed since the run was trained (unless
            trusted), or lies inside the folder itself (a folder's own files are never run).
    """
    if not isinstance(records, list):
        records = [None]  # reported as damaged below
    for record in records:
        source = _recorded(record, folder)
        path = Path(source.file)
        if not path.is_absolute() or path.resolve().is_relative_to(folder.resolve()):
            raise TrustError(
                f"'{folder}' records code inside itself ('{source.file}'); a run folder's own "
                "files are never imported. Pass --trust-code only if you trust its origin."
            )
        if not path.is_file():
            raise TrustError(
                f"'{folder}' was trained with module '{source.module}' from '{path}', which no "
                f"longer exists; put the file back there to use this run."
            )
        if file_hash(path) != source.sha256 and not trusted():
            raise TrustError(
                f"'{path}' (module '{source.module}') changed since '{folder}' was trained; "
                "restore that version, or pass --trust-code to use the file as it is now."
            )
        _allowed[source.module] = source


def _recorded(record: Any, folder: Path) -> CodeSource:
    try:
        return CodeSource(**{k: str(record[k]) for k in ("module", "file", "root", "sha256")})
    except (KeyError, TypeError):
        raise TrustError(
            f"'{folder / CODE_FILE}' is damaged (an entry lacks module, file, root or sha256); "
            "train the run again."
        ) from None


# --- paths named inside a folder ------------------------------------------------------------


def inside(folder: Path, name: Any, where: str) -> Path:
    """``folder / name`` when it stays inside ``folder`` (no ``..``, absolute path or symlink
    out), the way a sidecar's or featurizer's file names must.

    Raises:
        TrustError: The name leads outside the folder.
    """
    path = Path(folder) / str(name)
    if Path(str(name)).is_absolute() or not path.resolve().is_relative_to(Path(folder).resolve()):
        raise TrustError(
            f"{where} names '{name}', which lies outside '{folder}'; a folder's files must stay "
            "inside it. Export or train the run again."
        )
    return path


def hf_folder_options(directory: str | Path) -> dict[str, Any]:
    """``from_pretrained`` options that read a local folder without running its code: weights
    from safetensors only (``pytorch_model.bin`` is a pickle) and no ``auto_map`` modules,
    unless the user passed ``--trust-code``.

    Raises:
        TrustError: The folder's weights exist only as a pickle.
    """
    directory = Path(directory)
    if trusted():
        return {"local_files_only": True, "trust_remote_code": trusted()}
    if not any(directory.glob("*.safetensors")) and any(directory.glob("*.bin")):
        raise TrustError(
            f"'{directory}' holds its weights only as a pickle (*.bin), which can run code when "
            "loaded; save them as safetensors (model.save_pretrained(folder)) or pass "
            "--trust-code if you trust the folder."
        )
    return {"local_files_only": True, "use_safetensors": True}
