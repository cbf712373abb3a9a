"""Load, check, split and tokenize text-classification data from local files or the Hub."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from datasets import ClassLabel, Dataset, DatasetDict, Value

from ..errors import UserInputError
from .sources import DataSourceArguments, check_positive, load_raw_datasets, split_source, subsample

logger = logging.getLogger(__name__)


@dataclass
class DataArguments(DataSourceArguments):
    """Classification data: where it comes from (DataSourceArguments), its text and label columns, tokenization."""

    text_column: str = field(default="text", metadata={"help": "Column holding the (first) sentence."})
    text_pair_column: str | None = field(
        default=None, metadata={"help": "Column holding the second sentence, for sentence-pair tasks."}
    )
    label_column: str = field(default="label", metadata={"help": "Column holding the label (int or str)."})
    class_names: list[str] | None = field(
        default=None,
        metadata={"help": "Readable names for integer labels 0..K-1, in order (e.g. negative positive)."},
    )
    max_length: int | None = field(
        default=128, metadata={"help": "Truncate to this many tokens (None: the tokenizer's own limit)."}
    )

    def __post_init__(self):
        super().__post_init__()
        check_positive(self, "max_length")


def _check_columns(ds: Dataset, split: str, columns: list[str], source: str) -> None:
    missing = [c for c in columns if c not in ds.column_names]
    if missing:
        raise UserInputError(
            f"column(s) {missing} not found in the {split} data ({source}); it has columns {ds.column_names}. "
            "Set text_column / text_pair_column / label_column to one of those."
        )
    if len(ds) == 0:
        raise UserInputError(
            f"the {split} data ({source}) is empty: it has no rows. Point to a file with data."
        )


def _check_text(ds: Dataset, split: str, column: str) -> None:
    for i, value in enumerate(ds[column]):
        if not isinstance(value, str):
            raise UserInputError(
                f"{split} row {i}, column {column!r}: expected text, got {type(value).__name__} {value!r}. "
                "Fill or drop empty rows, or choose the right text column."
            )


def _clean_labels(ds: Dataset, split: str, column: str) -> Dataset:
    """Strip surrounding whitespace from string labels; make integral float labels (0.0, 1.0) integers."""
    feature = ds.features[column]
    if not isinstance(feature, Value):
        return ds
    values = ds[column]
    if feature.dtype in ("string", "large_string"):
        # 'pos' and 'pos ' (a stray space in some rows) are one class, not two.
        stripped = sum(isinstance(v, str) and v != v.strip() for v in values)
        if stripped:
            logger.warning(
                "stripped surrounding whitespace from %d %s label(s) (column %r), e.g. %r -> %r.",
                stripped,
                split,
                column,
                *next((v, v.strip()) for v in values if isinstance(v, str) and v != v.strip()),
            )
            strip = [v.strip() if isinstance(v, str) else v for v in values]
            ds = ds.remove_columns(column).add_column(column, strip, feature=feature)
    elif feature.dtype.startswith("float") and all(v is not None and float(v).is_integer() for v in values):
        # Labels written as 0.0 / 1.0 (pandas, JSON from numpy) are class ids, not new names.
        ds = ds.cast_column(column, Value("int64"))
    return ds


def _label_names(train: Dataset, args: DataArguments) -> list[str]:
    feature = train.features[args.label_column]
    if isinstance(feature, ClassLabel):
        return list(feature.names)
    values = sorted(set(train[args.label_column]), key=lambda v: (str(type(v)), v))
    if any(v is None for v in values):
        raise UserInputError(f"train column {args.label_column!r} has empty labels; every row needs a label.")
    if args.class_names is not None:
        if values != list(range(len(args.class_names))):
            raise UserInputError(
                f"class_names gives {len(args.class_names)} names, so labels must be the integers "
                f"0..{len(args.class_names) - 1}; the training labels are {values[:20]}."
            )
        return list(args.class_names)
    return [str(v) for v in values]


def _encode_labels(ds: Dataset, split: str, args: DataArguments, names: list[str]) -> Dataset:
    """Map raw labels (ints or strings) to ids 0..K-1 and store them as a ClassLabel column 'labels'."""
    feature = ds.features[args.label_column]
    if isinstance(feature, ClassLabel):
        if list(feature.names) != names:
            raise UserInputError(
                f"{split} labels {feature.names} differ from the training labels {names}; "
                "both splits must use the same label set."
            )
        to_id = None
    else:
        lookup = (
            {i: i for i in range(len(names))}
            if args.class_names is not None
            else {v: names.index(str(v)) for v in set(ds[args.label_column]) if str(v) in names}
        )
        unseen = sorted({str(v) for v in ds[args.label_column]} - {str(k) for k in lookup})
        if unseen:
            raise UserInputError(
                f"{split} has label(s) {unseen[:10]} never seen in training (training labels: {names}). "
                "Use the same label set in both files, or add training examples of those labels."
            )
        to_id = lookup
    if to_id is not None:
        ds = ds.map(
            lambda batch: {args.label_column: [to_id[v] for v in batch[args.label_column]]},
            batched=True,
            desc=f"encoding {split} labels",
        )
    ds = ds.cast_column(args.label_column, ClassLabel(names=names))
    if args.label_column != "labels":
        if "labels" in ds.column_names:
            ds = ds.remove_columns("labels")
        ds = ds.rename_column(args.label_column, "labels")
    return ds


def load_classification_data(
    args: DataArguments, extra_columns: tuple[str, ...] = ()
) -> tuple[DatasetDict, list[str]]:
    """Load, check, label-encode and split classification data; returns (train/validation, label names).

    Each split keeps its text column(s), a ClassLabel column named ``labels`` and those of ``extra_columns``
    it has (e.g. a cached ``teacher_logits`` column in the training file).
    """
    raw = load_raw_datasets(args)
    columns = (
        [args.text_column] + ([args.text_pair_column] if args.text_pair_column else []) + [args.label_column]
    )
    for split, ds in raw.items():
        _check_columns(ds, split, columns, split_source(args, split))
        for column in columns[:-1]:
            _check_text(ds, split, column)
    raw = DatasetDict({split: _clean_labels(ds, split, args.label_column) for split, ds in raw.items()})
    names = _label_names(raw["train"], args)
    if len(names) < 2:
        raise UserInputError(
            f"the training labels (column {args.label_column!r}) hold a single class {names}; "
            "classification needs at least two."
        )
    keep = columns[:-1] + [args.label_column]
    encoded = DatasetDict(
        {
            s: _encode_labels(
                ds.select_columns(keep + [c for c in extra_columns if c in ds.column_names]), s, args, names
            )
            for s, ds in raw.items()
        }
    )
    if "validation" not in encoded:
        # An int row count: `datasets` rounds a float test_size up (0.1 of 73 rows would hold out 8).
        n_val = round(args.validation_split * len(encoded["train"]))
        try:
            split = encoded["train"].train_test_split(
                test_size=n_val, seed=args.split_seed, stratify_by_column="labels"
            )
        except ValueError as err:
            raise UserInputError(
                f"cannot hold out validation_split={args.validation_split} ({n_val} of "
                f"{len(encoded['train'])} training rows, stratified over {len(names)} labels): {err} "
                "Give a validation_file, more training data, or another validation_split."
            ) from err
        encoded = DatasetDict({"train": split["train"], "validation": split["test"]})
    encoded["train"] = subsample(encoded["train"], args.max_train_samples, args.split_seed)
    encoded["validation"] = subsample(encoded["validation"], args.max_eval_samples, args.split_seed)
    return encoded, names


def tokenize_dataset(
    ds: Dataset | DatasetDict,
    tokenizer: Any,
    text_column: str,
    text_pair_column: str | None = None,
    max_length: int | None = 128,
    keep_columns: tuple[str, ...] = ("labels",),
) -> Dataset | DatasetDict:
    """Tokenize text (or text pairs) without padding: the collator pads each batch to its own longest row."""

    def encode(batch: dict[str, list]) -> dict[str, list]:
        pair = batch[text_pair_column] if text_pair_column else None
        return tokenizer(batch[text_column], pair, truncation=max_length is not None, max_length=max_length)

    any_split = next(iter(ds.values())) if isinstance(ds, DatasetDict) else ds
    drop = [c for c in any_split.column_names if c not in keep_columns]
    return ds.map(encode, batched=True, remove_columns=drop, desc="tokenizing")
