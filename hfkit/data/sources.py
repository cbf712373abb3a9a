"""Where data comes from: local files in any format `datasets` reads, with clear errors."""

from __future__ import annotations

import csv
import os
from typing import Any

import datasets
from datasets import Dataset

# File extension -> `datasets` builder and the extra options it needs.
_BUILDERS: dict[str, tuple[str, dict[str, Any]]] = {
    ".csv": ("csv", {}),
    # QUOTE_NONE: TSV corpora such as GLUE contain bare quote characters inside sentences.
    ".tsv": ("csv", {"sep": "\t", "quoting": csv.QUOTE_NONE}),
    ".json": ("json", {}),
    ".jsonl": ("json", {}),
    ".parquet": ("parquet", {}),
    ".txt": ("text", {}),
}


def load_data_file(path: str, what: str = "data file") -> Dataset:
    """Load one local csv/tsv/json/jsonl/parquet/txt file as a Dataset, with a clear error if it is missing."""
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{what} not found: {path!r} (absolute: {os.path.abspath(path)}). "
            "Check the path, or pass another one on the command line."
        )
    ext = os.path.splitext(path)[1].lower()
    if ext not in _BUILDERS:
        raise ValueError(
            f"{what} {path!r} has extension {ext!r}; supported: {', '.join(sorted(_BUILDERS))}. "
            "Convert the file or rename it to its real format."
        )
    empty = f"{what} {path!r} is empty: it has no rows. Point to a file with data."
    if os.path.getsize(path) == 0:  # `datasets` fails on these with StopIteration or a pandas parse error
        raise ValueError(empty)
    builder, options = _BUILDERS[ext]
    try:
        return datasets.load_dataset(builder, data_files={"train": path}, split="train", **options)
    except datasets.exceptions.DatasetGenerationError as err:
        raise ValueError(f"could not parse {what} {path!r} as {ext}: {err.__cause__ or err}") from err
    except ValueError as err:
        # A file with a header but no rows: `datasets` says 'Instruction "train" corresponds to no data!'.
        if "corresponds to no data" not in str(err):
            raise
        raise ValueError(empty) from err
