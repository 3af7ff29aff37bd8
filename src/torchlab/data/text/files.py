"""Reading labelled texts from CSV, JSON Lines and folders of ``.txt`` files.

Every reader checks what a user most often gets wrong and names the file and row: bytes
that are not in the declared encoding, a missing text or label column, an empty text.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

from torchlab.data.tables import rows_shown
from torchlab.errors import DataError


def read_text(path: Path, encoding: str = "utf-8") -> str:
    """The whole file decoded strictly, with the line of the first undecodable byte on error."""
    if not path.is_file():
        raise DataError(f"Text file '{path}' does not exist; check the path.")
    raw = path.read_bytes()
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(
            f"'{path}' line {line} holds bytes that are not {encoding} ({raw[exc.start : exc.end]!r}); "
            f"save the file as {encoding} or set data.source.encoding (e.g. latin-1)."
        ) from None
    except LookupError:
        raise DataError(
            f"Unknown text encoding '{encoding}'; use a Python codec name such as utf-8 or latin-1."
        ) from None


def _check_text(text: object, where: str) -> str:
    if not isinstance(text, str) or not text.strip():
        raise DataError(f"{where} has an empty text; fill it in or remove that row.")
    return text


def read_csv(
    path: Path,
    *,
    text_column: str,
    label_column: str | None,
    encoding: str = "utf-8",
    allow_empty: bool = False,
) -> tuple[list[str], list[str]]:
    """``(texts, labels)`` of a CSV file; labels are ``[]`` when ``label_column`` is None.
    Empty texts are an error unless ``allow_empty`` (predicting, which may skip them)."""
    import pandas as pd

    content = read_text(path, encoding)
    try:
        frame = pd.read_csv(io.StringIO(content), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"'{path}' is not a readable CSV file ({exc}); fix its format.") from None
    wanted = [c for c in (text_column, label_column) if c is not None]
    for column in wanted:
        if column not in frame.columns:
            found = ", ".join(map(str, frame.columns)) or "none"
            setting = "text_column" if column == text_column else "label_column"
            raise DataError(
                f"'{path}' has no column '{column}' (columns: {found}); rename the column or "
                f"set data.source.{setting}."
            )
    texts = list(frame[text_column])
    if not allow_empty and (empty := [i for i, text in enumerate(texts) if not text.strip()]):
        raise DataError(
            f"'{path}' has {_count(empty, 'empty text')} at {rows_shown(empty)}; "
            + (
                "fill it in or remove that row."
                if len(empty) == 1
                else "fill them in or remove those rows."
            )
        )
    labels: list[str] = []
    if label_column is not None:
        labels = [label.strip() for label in frame[label_column]]
        if unlabelled := [i for i, label in enumerate(labels) if not label]:
            raise DataError(
                f"'{path}' has {_count(unlabelled, f'empty {label_column!r}')} at "
                f"{rows_shown(unlabelled)}; label those rows or remove them."
            )
    return texts, labels


def _count(rows: list[int], what: str) -> str:
    return f"an {what}" if len(rows) == 1 else f"{len(rows)} {what}s"


def read_jsonl(
    path: Path, *, text_key: str, label_key: str, encoding: str = "utf-8"
) -> tuple[list[str], list[str]]:
    """``(texts, labels)`` of a JSON Lines file: one object per line."""
    texts, labels = [], []
    for number, line in enumerate(read_text(path, encoding).splitlines(), start=1):
        if not line.strip():
            continue
        where = f"'{path}' line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{where} is not valid JSON ({exc.msg}); fix that line.") from None
        if not isinstance(record, dict):
            raise DataError(f"{where} is not a JSON object; write one object per line.")
        for key, setting in ((text_key, "text_column"), (label_key, "label_column")):
            if key not in record:
                raise DataError(
                    f"{where} has no key '{key}' (keys: {', '.join(record) or 'none'}); add it or "
                    f"set data.source.{setting}."
                )
        texts.append(_check_text(record[text_key], where))
        label = record[label_key]
        if label is None or not str(label).strip():
            raise DataError(f"{where} has an empty '{label_key}'; label it or remove the line.")
        labels.append(str(label).strip())
    if not texts:
        raise DataError(f"'{path}' holds no records; write one JSON object per line.")
    return texts, labels


def read_folder(root: Path, *, encoding: str = "utf-8") -> tuple[list[str], list[str]]:
    """``(texts, labels)`` from ``root/<label>/*.txt``, sorted by label then file name."""
    if not root.is_dir():
        raise DataError(
            f"Folder '{root}' does not exist; give a folder with one sub-folder per class."
        )
    texts, labels = [], []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for file in sorted(folder.glob("*.txt")):
            texts.append(_check_text(read_text(file, encoding), f"'{file}'"))
            labels.append(folder.name)
    if not texts:
        raise DataError(
            f"No .txt files found in sub-folders of '{root}'; put each class's texts in "
            "root/<class>/<name>.txt."
        )
    return texts, labels


def read_inputs(
    paths: list[Path], *, text_column: str = "text", encoding: str = "utf-8"
) -> tuple[list[str], list[str]]:
    """Texts to predict for and an id each: CSV rows (``file:row`` from 0), ``.txt`` files.

    A folder stands for the ``.txt`` files in it. Empty texts are kept, for the caller to
    refuse or skip.
    """
    if not paths:
        raise DataError(
            "No input files were given; name a CSV file with a 'text' column or .txt files."
        )
    texts: list[str] = []
    ids: list[str] = []
    for path in map(Path, paths):
        files = sorted(path.glob("*.txt")) if path.is_dir() else [path]
        for file in files:
            if file.suffix.lower() == ".csv":
                rows, _ = read_csv(
                    file,
                    text_column=text_column,
                    label_column=None,
                    encoding=encoding,
                    allow_empty=True,
                )
                texts += rows
                ids += [f"{file.name}:{row}" for row in range(len(rows))]
            else:
                texts.append(read_text(file, encoding))
                ids.append(str(file))
    if not texts:
        raise DataError(f"No texts found in {', '.join(map(str, paths))}; give .csv or .txt files.")
    return texts, ids
