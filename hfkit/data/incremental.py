"""Data for updating a deployed classifier: labels mapped onto the previous model's classes (+ new ones), replay."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from datasets import ClassLabel, Dataset

from ..errors import UserInputError


@dataclass
class IncrementalArguments:
    """The previous (deployed) model, the new classes, and the replay sample of its old training data."""

    previous_model: str = field(
        metadata={"help": "The deployed classifier to update: local folder, Hub id or 'wheel:<module>'."}
    )
    new_class_names: list[str] | None = field(
        default=None,
        metadata={
            "help": "Classes to add, in order, after the previous model's. Default: the labels of train_file "
            "that the previous model does not have, sorted."
        },
    )
    old_train_file: str | None = field(
        default=None,
        metadata={"help": "The previous model's training data (same columns): the pool replay samples from."},
    )
    replay_examples: int | None = field(
        default=None,
        metadata={"help": "Mix this many old training rows (stratified, seeded) into the new data; 0: none."},
    )
    replay_fraction: float | None = field(
        default=None,
        metadata={"help": "Or mix this fraction of old_train_file (in [0, 1]) into the new data; 0: none."},
    )
    replay_seed: int = field(default=0, metadata={"help": "Seed of the replay sample."})
    replay_selection: str = field(
        default="random",
        metadata={
            "help": "Which old rows fill each class's replay quota: 'random' (seeded) or 'low_margin' (the rows "
            "with the smallest margin between their class's logit and the best other class's under the grown "
            "model, imprinted new rows included: the rows the update most easily flips).",
            "choices": ["random", "low_margin"],
        },
    )
    replay_windows: int = field(
        default=1,
        metadata={
            "help": "Each replayed row contributes up to this many consecutive max_length-token windows of its "
            "text: the first is the row as the model reads it, the others come from the text beyond max_length "
            "(long documents: news articles, tickets, reviews). More old-class rows from the same stored "
            "sample; each window keeps its row's label and gets the previous model's logits. 1: the first only.",
        },
    )
    new_class_init: str = field(
        default="random",
        metadata={
            "help": "How the new classes' output rows start: 'random' (small normal values, as a new head) or "
            "'imprint' (each row = its class's mean head input under the previous model, at the old rows' "
            "norm: weight imprinting, so a short update that also protects the old classes still learns them).",
            "choices": ["random", "imprint"],
        },
    )

    def __post_init__(self):
        if self.replay_selection not in ("random", "low_margin"):
            raise UserInputError(
                f"replay_selection must be 'random' or 'low_margin', got {self.replay_selection!r}."
            )
        if self.new_class_init not in ("random", "imprint"):
            raise UserInputError(
                f"new_class_init must be 'random' or 'imprint', got {self.new_class_init!r}."
            )
        if self.replay_windows < 1:
            raise UserInputError(
                f"replay_windows must be >= 1 (1: each row as read), got {self.replay_windows}."
            )
        if self.replay_examples is not None and self.replay_fraction is not None:
            raise UserInputError("set replay_examples or replay_fraction, not both.")
        if self.replay_examples is not None and self.replay_examples < 0:
            raise UserInputError(f"replay_examples must be >= 0 (0: no replay), got {self.replay_examples}.")
        if self.replay_fraction is not None and not 0.0 <= self.replay_fraction <= 1.0:
            raise UserInputError(
                f"replay_fraction must be in [0, 1] (0: no replay), got {self.replay_fraction}."
            )
        if (self.replay_examples or self.replay_fraction) and self.old_train_file is None:
            raise UserInputError(
                "replay needs the old data: set old_train_file to the previous model's training file."
            )

    @property
    def uses_replay(self) -> bool:
        return bool(self.replay_examples) or bool(self.replay_fraction)


def _label_values(values: list) -> list:
    """Labels as class ids (ints, integral floats) or names (strings, stripped)."""
    out = []
    for v in values:
        if isinstance(v, str):
            out.append(v.strip())
        elif (
            isinstance(v, float)
            and v.is_integer()
            or isinstance(v, (int, np.integer))
            and not isinstance(v, bool)
        ):
            out.append(int(v))
        else:
            raise UserInputError(
                f"label {v!r} is neither a class name nor a class id; every row needs a label."
            )
    return out


def resolve_new_labels(values: list, old_labels: list[str], new_class_names: list[str] | None) -> list[str]:
    """The classes the update adds, checked against the previous model's and the data's labels."""
    names = {v for v in _label_values(values) if isinstance(v, str)}
    if new_class_names is None:
        return sorted(names - set(old_labels))
    clash = sorted(set(new_class_names) & set(old_labels))
    if clash:
        raise UserInputError(
            f"new_class_names {clash} already exist in the previous model (classes {old_labels}); list only "
            "classes it does not have, or leave new_class_names out to take them from the data."
        )
    unknown = sorted(names - set(old_labels) - set(new_class_names))
    if unknown:
        raise UserInputError(
            f"the new data has label(s) {unknown} that are neither classes of the previous model {old_labels} "
            f"nor in new_class_names {new_class_names}: add them to new_class_names or fix the labels."
        )
    return list(new_class_names)


def encode_labels(ds: Dataset, label_column: str, names: list[str], what: str) -> Dataset:
    """Map a label column of names or ids onto `names` (ids 0..K-1) as a ClassLabel column 'labels'."""
    if label_column not in ds.column_names:
        raise UserInputError(
            f"{what} has no column {label_column!r} (columns: {ds.column_names}); set label_column."
        )
    values = _label_values(ds[label_column])
    lookup = {name: i for i, name in enumerate(names)}
    bad = sorted(
        {str(v) for v in values if (v not in lookup if isinstance(v, str) else not 0 <= v < len(names))}
    )
    if bad:
        raise UserInputError(
            f"{what} has label(s) {bad[:10]} outside the classes {names}: labels must be one of those names, "
            f"or ids 0..{len(names) - 1}."
        )
    ids = [lookup[v] if isinstance(v, str) else v for v in values]
    # Add before removing: a table whose only column is the label would otherwise lose its rows.
    ds = ds.add_column("__hfkit_labels", ids)
    ds = ds.remove_columns([c for c in (label_column, "labels") if c in ds.column_names])
    return ds.rename_column("__hfkit_labels", "labels").cast_column("labels", ClassLabel(names=names))


def replay_sample(dataset: Dataset, n: int, seed: int, scores: np.ndarray | None = None) -> Dataset:
    """A seeded sample of `n` rows, stratified over `labels` (each class in proportion, largest remainders).

    With `scores` (one per row), each class's quota is filled with its highest-scoring rows instead of random
    ones (ties in seeded random order), e.g. `low_margin_scores` for the rows an update most easily flips.
    """
    if n <= 0 or len(dataset) == 0:
        return dataset.select([])
    if n >= len(dataset):
        return dataset
    labels = np.asarray(dataset["labels"])
    if scores is not None and len(scores) != len(labels):
        raise ValueError(f"replay_sample: {len(scores)} scores for {len(labels)} rows.")
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * n / len(labels)
    quota = np.floor(exact).astype(int)
    # Hand the rows lost to rounding to the classes with the largest remainders (ties: lower class id).
    for i in np.argsort(-(exact - quota), kind="stable")[: n - quota.sum()]:
        quota[i] += 1
    rng = np.random.default_rng(seed)
    if scores is None:
        keep = [
            rng.choice(np.flatnonzero(labels == c), size=q, replace=False) for c, q in zip(classes, quota)
        ]
    else:
        order = rng.permutation(len(labels))  # seeded tie-break
        ranked = order[np.argsort(-np.asarray(scores, dtype=float)[order], kind="stable")]
        keep = [ranked[labels[ranked] == c][:q] for c, q in zip(classes, quota)]
    return dataset.select(sorted(np.concatenate(keep).tolist()))


def low_margin_scores(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per row: the best other class's logit minus the gold class's (higher = closer to being called another
    class). Computed with the grown model (imprinted new rows included), it ranks old rows by how easily the
    update flips them: the replay rows worth keeping when the budget is small."""
    logits = np.asarray(logits, dtype=float)
    labels = np.asarray(labels)
    rows = np.arange(len(labels))
    gold = logits[rows, labels]
    others = logits.copy()
    others[rows, labels] = -np.inf
    return others.max(axis=1) - gold


def text_windows(dataset: Dataset, tokenizer, text_column: str, max_length: int, windows: int) -> Dataset:
    """Tokenize `text_column` into up to `windows` consecutive windows of `max_length` tokens per row (special
    tokens included), each a row of its own with its source row's `labels`; the first window of a row is
    what `tokenize_dataset` would give. Rows are ordered by source row, then window."""
    if windows < 1:
        raise UserInputError(f"windows must be >= 1, got {windows}.")

    def encode(batch: dict[str, list]) -> dict[str, list]:
        enc = tokenizer(
            batch[text_column], truncation=True, max_length=max_length, return_overflowing_tokens=windows > 1
        )
        source = enc.pop("overflow_to_sample_mapping", list(range(len(batch[text_column]))))
        seen: dict[int, int] = {}
        keep = []
        for i, row in enumerate(source):
            seen[row] = seen.get(row, 0) + 1
            if seen[row] <= windows:
                keep.append(i)
        out = {k: [v[i] for i in keep] for k, v in enc.items()}
        out["labels"] = [batch["labels"][source[i]] for i in keep]
        return out

    return dataset.map(encode, batched=True, remove_columns=dataset.column_names, desc="windowing")
