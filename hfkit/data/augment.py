"""Word-level text augmentation for distillation: more inputs on which the student can match the teacher.

Augmented rows carry no trustworthy gold label (dropping or swapping words can flip a sentiment or an
entailment), so their label is set to -100 and they are trained on the teacher's soft labels only.
Augment the raw text *before* tokenizing and before computing teacher logits, so that the teacher sees
the augmented text too.

Words are whitespace-separated tokens and are re-joined with single spaces.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from datasets import ClassLabel, Dataset, Value, concatenate_datasets
from datasets.fingerprint import Hasher

from ..errors import UserInputError

IGNORE_INDEX = -100
AUGMENTED_COLUMN = "augmented"
METHODS = ("dropout", "swap", "mask")
# Part of the augmented datasets' fingerprints: bump it when the output for a given seed changes.
_ALGORITHM_VERSION = "1"


def _check_p(p: float, name: str = "p") -> None:
    if not 0.0 <= p < 1.0:
        raise UserInputError(f"{name} must be in [0, 1), got {p}.")


def word_dropout(text: str, rng: random.Random, p: float = 0.1) -> str:
    """Delete each word with probability p, keeping at least one word."""
    _check_p(p)
    words = text.split()
    if not words:
        return text
    kept = [w for w in words if rng.random() >= p]
    if not kept:
        # An empty input would be a degenerate example (only [CLS] [SEP]): keep one word at random.
        kept = [rng.choice(words)]
    return " ".join(kept)


def word_mask(text: str, rng: random.Random, p: float = 0.1, mask_token: str = "[MASK]") -> str:
    """Replace each word with mask_token (pass the tokenizer's own) with probability p."""
    _check_p(p)
    words = text.split()
    if not words:
        return text
    return " ".join(mask_token if rng.random() < p else w for w in words)


def word_swap(text: str, rng: random.Random, n_swaps: int = 1) -> str:
    """Swap n_swaps randomly chosen pairs of adjacent words."""
    if n_swaps < 0:
        raise ValueError(f"n_swaps must be >= 0, got {n_swaps}.")
    words = text.split()
    if len(words) < 2:
        return text
    for _ in range(n_swaps):
        i = rng.randrange(len(words) - 1)
        words[i], words[i + 1] = words[i + 1], words[i]
    return " ".join(words)


def _method_fns(p: float, mask_token: str) -> dict[str, Callable[[str, random.Random], str]]:
    return {
        "dropout": lambda text, rng: word_dropout(text, rng, p),
        "swap": lambda text, rng: word_swap(text, rng, 1),
        "mask": lambda text, rng: word_mask(text, rng, p, mask_token),
    }


def _validate(
    dataset: Dataset,
    text_columns: list[str],
    copies: int,
    methods: Sequence[str],
    p: float,
    label_column: str | None,
) -> None:
    if isinstance(copies, bool) or not isinstance(copies, int) or copies < 0:
        raise ValueError(f"copies must be an integer >= 0, got {copies!r}.")
    if isinstance(methods, str):
        raise TypeError(
            f"methods must be a sequence of names, not the string {methods!r}; e.g. ({methods!r},)."
        )
    if not methods:
        raise ValueError(f"methods is empty; choose from {METHODS}.")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown augmentation method(s) {unknown}; choose from {METHODS}.")
    _check_p(p)
    needed = text_columns + ([label_column] if label_column is not None else [])
    missing = [c for c in needed if c not in dataset.column_names]
    if missing:
        raise ValueError(f"column(s) {missing} not found; the dataset has columns {dataset.column_names}.")
    # Token ids or teacher logits computed from the original text would silently mismatch the new text.
    derived = [c for c in ("input_ids", "teacher_logits", AUGMENTED_COLUMN) if c in dataset.column_names]
    if derived:
        raise ValueError(
            f"the dataset already has column(s) {derived}: augment the raw text before tokenizing, "
            "computing teacher logits, or augmenting again."
        )
    if label_column is not None:
        feature = dataset.features[label_column]
        if not isinstance(feature, ClassLabel) and not (
            isinstance(feature, Value) and feature.dtype.startswith("int")
        ):
            raise ValueError(
                f"label column {label_column!r} has type {feature}; augment_dataset sets augmented rows to "
                f"{IGNORE_INDEX}, which needs integer class ids (encode the labels first)."
            )


def augment_dataset(
    dataset: Dataset,
    text_column: str,
    copies: int,
    methods: Sequence[str] = METHODS,
    seed: int = 0,
    p: float = 0.1,
    mask_token: str = "[MASK]",
    text_pair_column: str | None = None,
    label_column: str | None = "labels",
) -> Dataset:
    """Return the rows followed by `copies` seeded augmented copies (label -100, column augmented=1)."""
    text_columns = [text_column] + ([text_pair_column] if text_pair_column else [])
    _validate(dataset, text_columns, copies, methods, p, label_column)
    if copies == 0:
        return dataset

    base = dataset
    if label_column is not None and base.features[label_column] != Value("int64"):
        # -100 is no valid ClassLabel id (and may not fit a narrower int type): store plain int64 ids.
        base = base.cast_column(label_column, Value("int64"))
    originals = base.add_column(AUGMENTED_COLUMN, [0] * len(base), feature=Value("int64"))

    # One private generator, consumed in a fixed order (copy, row, column): reproducible across runs and
    # untouched by (and not touching) the global `random` state that training code seeds.
    rng = random.Random(seed)
    fns = _method_fns(p, mask_token)
    texts = {c: list(base[c]) for c in text_columns}
    parts = [originals]
    for copy in range(1, copies + 1):
        new_texts: dict[str, list[str]] = {c: [] for c in text_columns}
        for row in range(len(base)):
            fn = fns[rng.choice(methods)]
            for c in text_columns:
                value = texts[c][row]
                new_texts[c].append(fn(value, rng) if isinstance(value, str) else value)

        def make_copy(batch: dict[str, list], indices: list[int], new_texts=new_texts) -> dict[str, list]:
            out = {c: [new_texts[c][i] for i in indices] for c in text_columns}
            if label_column is not None:
                out[label_column] = [IGNORE_INDEX] * len(indices)
            out[AUGMENTED_COLUMN] = [1] * len(indices)
            return out

        # A fingerprint from the inputs and settings (not from hashing the closure) is deterministic, so
        # downstream caches keyed on it (tokenization, hfkit.teacher_cache) hit again in the next run.
        fingerprint = Hasher.hash(
            [
                _ALGORITHM_VERSION,
                base._fingerprint,
                text_columns,
                label_column,
                list(methods),
                seed,
                p,
                mask_token,
                copy,
            ]
        )
        parts.append(
            base.map(
                make_copy,
                with_indices=True,
                batched=True,
                features=originals.features,
                new_fingerprint=fingerprint,
                desc=f"augmenting (copy {copy}/{copies})",
            )
        )
    return concatenate_datasets(parts)


def replace_mask_token(
    dataset: Dataset, text_columns: Sequence[str], mask_token: str, new_mask_token: str
) -> Dataset:
    """Return the dataset with `mask_token` words of its augmented rows replaced by `new_mask_token`.

    For a teacher with its own tokenizer: the "mask" augmentation writes the student's mask token
    (``[MASK]`` for BERT), which another tokenizer reads as plain text (MPNet: ``[``, ``mask``, ``]``).
    Give the teacher its own mask token (``<mask>``) in the same places. Rows that are not augmented
    are left as they are, even if they contain the string.
    """
    if mask_token == new_mask_token or AUGMENTED_COLUMN not in dataset.column_names:
        return dataset

    def swap(batch: dict[str, list]) -> dict[str, list]:
        out = {}
        for c in text_columns:
            out[c] = [
                " ".join(new_mask_token if w == mask_token else w for w in text.split())
                if augmented and isinstance(text, str)
                else text
                for text, augmented in zip(batch[c], batch[AUGMENTED_COLUMN], strict=True)
            ]
        return out

    return dataset.map(swap, batched=True, desc="mask token for the teacher")


@dataclass
class AugmentArguments:
    """Text augmentation for distillation: extra copies of the training rows, trained on teacher soft labels."""

    augment_copies: int = field(
        default=0, metadata={"help": "Augmented copies of every training row (0: no augmentation)."}
    )
    augment_methods: list[str] = field(
        default_factory=lambda: list(METHODS),
        metadata={"help": f"Methods picked at random per row, from {METHODS}."},
    )
    augment_p: float = field(default=0.1, metadata={"help": "Per-word probability for dropout and mask."})
    augment_seed: int = field(default=0, metadata={"help": "Seed of the augmentation (reproducible)."})

    def __post_init__(self):
        if self.augment_copies < 0:
            raise UserInputError(f"augment_copies must be >= 0, got {self.augment_copies}.")
        unknown = [m for m in self.augment_methods if m not in METHODS]
        if unknown or not self.augment_methods:
            raise UserInputError(f"augment_methods {self.augment_methods}: choose one or more of {METHODS}.")
        _check_p(self.augment_p, "augment_p")
