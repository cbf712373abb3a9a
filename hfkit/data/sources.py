"""Where data comes from, for every task: the shared arguments, local files in any format, Hub datasets."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from typing import Any

import datasets
import numpy as np
import pyarrow.compute as pc
from datasets import Dataset, DatasetDict

from ..errors import MissingInputError, UserInputError

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


@dataclass
class DataSourceArguments:
    """Where the data comes from and how validation rows are held out; every task's data arguments extend it."""

    dataset_name: str | None = field(
        default=None,
        metadata={"help": "Hub dataset id (e.g. 'glue') or a local dataset folder; used when no train_file."},
    )
    dataset_config_name: str | None = field(
        default=None, metadata={"help": "Configuration of the Hub dataset (e.g. 'sst2')."}
    )
    train_file: str | None = field(
        default=None, metadata={"help": "Local training file: .csv, .tsv, .json, .jsonl, .parquet or .txt."}
    )
    validation_file: str | None = field(
        default=None,
        metadata={"help": "Local validation file; when absent a seeded share of train is held out."},
    )
    validation_split: float = field(
        default=0.1,
        metadata={
            "help": "Share of the training examples held out, seeded, when there is no validation set "
            "(classification: stratified by label; causal LM: blocks, when packed)."
        },
    )
    split_seed: int = field(
        default=42,
        metadata={
            "help": "Seed of the train/validation split and subsampling; independent of the training seed."
        },
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Keep a seeded random subset of this many training examples."}
    )
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "Keep a seeded random subset of this many validation examples."}
    )

    def __post_init__(self):
        if self.train_file is None and self.dataset_name is None:
            raise UserInputError(
                "No data given: set train_file (a local file) or dataset_name (a Hub dataset)."
            )
        if not 0.0 < self.validation_split < 1.0:
            raise UserInputError(f"validation_split must be in (0, 1), got {self.validation_split}.")
        for name in ("max_train_samples", "max_eval_samples"):
            check_positive(self, name)


def check_positive(args: Any, name: str) -> None:
    """Raise when the optional integer field `name` of `args` is set but not positive."""
    value = getattr(args, name)
    if value is not None and value <= 0:
        raise UserInputError(f"{name} must be a positive integer or None, got {value}.")


def load_data_file(path: str, what: str = "data file", text_sample_by: str | None = None) -> Dataset:
    """Load one local csv/tsv/json/jsonl/parquet/txt file as a Dataset, with a clear error if it is missing.

    A .txt file is one row a line; with ``text_sample_by`` ('document', 'paragraph' or 'line') it is split
    that way instead and keeps its line breaks (documents for causal-LM training).
    """
    if not os.path.isfile(path):
        unset = "${HFKIT_DATA}" in path
        raise MissingInputError(
            f"{what} not found: {path!r}"
            + (
                ": the config reads it from ${HFKIT_DATA} and no data folder was found. Set HFKIT_DATA to the "
                "folder that holds the data sets (e.g. export HFKIT_DATA=/path/to/shared/data), or pass the "
                "file on the command line."
                if unset
                else f" (absolute: {os.path.abspath(path)}). Check the path, or pass another one on the command line."
            )
        )
    ext = os.path.splitext(path)[1].lower()
    if ext not in _BUILDERS:
        raise UserInputError(
            f"{what} {path!r} has extension {ext!r}; supported: {', '.join(sorted(_BUILDERS))}. "
            "Convert the file or rename it to its real format."
        )
    empty = f"{what} {path!r} is empty: it has no rows. Point to a file with data."
    if os.path.getsize(path) == 0:  # `datasets` fails on these with StopIteration or a pandas parse error
        raise UserInputError(empty)
    builder, options = _BUILDERS[ext]
    if ext == ".txt" and text_sample_by is not None:
        # keep_linebreaks: verse and code lose their shape (and the model its newline tokens) without them.
        options = {"sample_by": text_sample_by, "keep_linebreaks": True}
    try:
        return datasets.load_dataset(builder, data_files={"train": path}, split="train", **options)
    except datasets.exceptions.DatasetGenerationError as err:
        raise UserInputError(f"could not parse {what} {path!r} as {ext}: {err.__cause__ or err}") from err
    except ValueError as err:
        # A file with a header but no rows: `datasets` says 'Instruction "train" corresponds to no data!'.
        if "corresponds to no data" not in str(err):
            raise
        raise UserInputError(empty) from err


def load_raw_datasets(args: DataSourceArguments, text_sample_by: str | None = None) -> DatasetDict:
    """Raw train (and validation, if given) splits from local files or the Hub, same code path as load_dataset."""
    if args.train_file is not None:
        raw = DatasetDict({"train": load_data_file(args.train_file, "train_file", text_sample_by)})
        if args.validation_file is not None:
            raw["validation"] = load_data_file(args.validation_file, "validation_file", text_sample_by)
        return raw
    loaded = datasets.load_dataset(args.dataset_name, args.dataset_config_name)
    if "train" not in loaded:
        raise UserInputError(f"dataset {args.dataset_name!r} has no 'train' split (it has {list(loaded)}).")
    raw = DatasetDict({"train": loaded["train"]})
    # Hub datasets such as GLUE ship a test split without labels: use validation only.
    if "validation" in loaded:
        raw["validation"] = loaded["validation"]
    return raw


def split_source(args: DataSourceArguments, split: str) -> str:
    """The file (or Hub dataset) a raw split was read from, for messages that must name it."""
    path = args.validation_file if split == "validation" else args.train_file
    return path or args.dataset_name or "?"


def subsample(ds: Dataset, n: int | None, seed: int) -> Dataset:
    """A seeded random subset of n rows (the dataset itself when n is None or not smaller)."""
    if n is None or n >= len(ds):
        return ds
    return ds.shuffle(seed=seed).select(range(n))


def row_lengths(ds: Dataset, column: str = "input_ids") -> np.ndarray:
    """Length of every row's list in `column` (tokens per row), read from Arrow without building Python lists."""
    values = ds.with_format("arrow")[column]
    return pc.list_value_length(values).to_numpy(zero_copy_only=False).astype(np.int64)
