"""Reading pretrained word vectors in GloVe or word2vec text format."""

from __future__ import annotations

from pathlib import Path

import torch

from torchlab.errors import DataError


def read_vectors(
    path: str | Path, *, keep: set[str] | None = None
) -> tuple[list[str], torch.Tensor]:
    """Words and their vectors ``(N, D)`` from a GloVe or word2vec text file.

    GloVe files hold ``word v1 v2 ...`` per line; word2vec text files start with a
    ``count dim`` header line, which is recognised and skipped.

    Args:
        path: The vectors file (UTF-8).
        keep: When given, only these words are read (the file may be large).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"Word-vector file '{path}' does not exist; check the path.")
    words: list[str] = []
    rows: list[list[float]] = []
    dim = None
    with path.open(encoding="utf-8", errors="strict") as handle:
        try:
            for number, line in enumerate(handle, start=1):
                parts = line.rstrip("\n").rstrip().split(" ")
                if number == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                    continue  # word2vec header: "count dim"
                if len(parts) < 2 or (keep is not None and parts[0] not in keep):
                    continue
                dim = dim or len(parts) - 1
                if len(parts) - 1 != dim:
                    raise DataError(
                        f"Line {number} of '{path}' has {len(parts) - 1} numbers where earlier "
                        f"lines have {dim}; fix or remove that line."
                    )
                try:
                    rows.append([float(v) for v in parts[1:]])
                except ValueError:
                    raise DataError(
                        f"Line {number} of '{path}' holds a value that is not a number; "
                        "the file must be GloVe or word2vec text format."
                    ) from None
                words.append(parts[0])
        except UnicodeDecodeError:
            raise DataError(
                f"'{path}' is not UTF-8 text; give a GloVe or word2vec text file."
            ) from None
    if not rows and keep is None:
        raise DataError(f"'{path}' holds no word vectors; give a GloVe or word2vec text file.")
    return words, torch.tensor(rows, dtype=torch.float32).reshape(len(rows), dim or 0)
