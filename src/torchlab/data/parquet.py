"""The ``parquet`` source: one Parquet file read into memory, or a dataset streamed."""

from __future__ import annotations

from torchlab.data.base import DataBundle, SourceContext
from torchlab.data.tables import read_table
from torchlab.data.tabular import build_bundle
from torchlab.errors import DataError
from torchlab.registry import DATASETS


@DATASETS.register("parquet")
def parquet_file(
    context: SourceContext,
    /,
    *,
    path: str,
    target: str | list[str],
    categorical: list[str] | None = None,
    drop: list[str] | None = None,
    streaming: bool = False,
    key: str | None = None,
    buffer: int = 65_536,
    max_categories: int = 1_000,
) -> DataBundle:
    """A Parquet file read whole into memory, or, with ``streaming: true``, a Parquet dataset
    of any size (a file, a folder or a glob) read in record batches.

    Args:
        path: The file; when streaming, a folder of Parquet files or a glob pattern too, or
            CSV files, converted once to a Parquet copy beside them.
        target: The target column, or several (multi-output regression, multi-label).
        categorical: Columns to one-hot even though they hold numbers (codes, ids of groups).
        drop: Columns to ignore, such as row ids.
        streaming: Stream row groups instead of reading the table into memory: for tables
            larger than memory. Rows are split by a seeded hash (see ``key``).
        key: When streaming, the column whose hashed value puts a row in train, val or
            test (rows with the same key stay together); by default the row's number.
        buffer: When streaming, the fewest rows shuffled together (whole row groups are
            gathered until they hold this many).
        max_categories: When streaming, the most categories a column keeps; rarer values
            are encoded, like values never seen, as all zeros.
    """
    if streaming:
        from torchlab.data.stream.tables import streamed_bundle  # pyarrow.dataset, lazily

        return streamed_bundle(
            context, path=path, target=target, categorical=categorical, drop=drop, key=key,
            buffer=buffer, max_categories=max_categories,
        )  # fmt: skip
    if key is not None:
        raise DataError(
            "data.source.key splits streamed rows; set data.source.streaming=true to use it, "
            "or leave it out."
        )
    frame, source = read_table(path, parquet=True)
    return build_bundle(frame, source, target, context, categorical=categorical, drop=drop)
