"""Pre-compute a classifier teacher's logits once, cache them on disk as safetensors, attach them to a dataset.

Distillation with a ``teacher_logits`` column lets the trainer skip the teacher entirely, so the teacher
never shares memory with the student and is run once instead of once per epoch. The cache file is
``teacher-logits-<key>.safetensors``, the key that of `hfkit.teacher_cache.store`. Every key part is stored
as a string in the safetensors metadata and re-checked, together with the tensor shape and dtype, on load:
a corrupt or edited file is logged and rebuilt, never trusted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from datasets import Dataset, DatasetDict, List, Value
from transformers import DataCollatorWithPadding

from ..data.augment import replace_mask_token
from ..data.classification import tokenize_dataset
from ..modeling import same_vocabulary
from .forward import forward_batches
from .settings import TEACHER_LOGITS_COLUMN
from .store import cache_file, input_columns, key_parts, load_or_compute

logger = logging.getLogger(__name__)

_TENSOR_NAME = "logits"
_FILE_PREFIX = "teacher-logits-"
_NON_FINITE_FIX = (
    "Check the teacher's weights (e.g. reload its checkpoint); with autocast_dtype float16, use bfloat16 or "
    "float32 (float16 overflows)."
)


def cache_path(cache_dir: str, key: str) -> str:
    """Return the cache file path for a key."""
    return cache_file(cache_dir, _FILE_PREFIX, key)


def _check(
    num_rows: int, num_labels: int | None
) -> Callable[[dict[str, torch.Tensor], dict[str, str]], list[str]]:
    """What a logit cache file must hold: one float32 (num_rows, C) tensor, C the teacher's label count."""

    def check(tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> list[str]:
        if list(tensors) != [_TENSOR_NAME]:
            return [f"tensors {list(tensors)}, expected only {_TENSOR_NAME!r}"]
        logits = tensors[_TENSOR_NAME]
        if logits.dtype != torch.float32 or logits.dim() != 2 or logits.shape[0] != num_rows:
            return [f"tensor {tuple(logits.shape)} {logits.dtype}, expected ({num_rows}, C) float32"]
        if meta.get("num_labels") != str(logits.shape[1]) or (
            num_labels is not None and logits.shape[1] != num_labels
        ):
            return [
                f"{logits.shape[1]} columns, metadata num_labels={meta.get('num_labels')!r}, teacher {num_labels}"
            ]
        return []

    return check


def classifier_logits(
    model: torch.nn.Module,
    dataset: Dataset,
    tokenizer: Any,
    batch_size: int = 64,
    desc: str = "teacher logits",
    autocast_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Float32 CPU logits (N, C) of a classifier over a tokenized, non-empty dataset, in row order.

    ``autocast_dtype`` (torch.bfloat16 / torch.float16): see `forward_batches`; the logits are returned in float32.
    """
    columns = input_columns(model, dataset)
    if len(dataset) == 0:
        raise ValueError("classifier_logits needs a non-empty dataset.")
    out = torch.empty((0, 0))

    def keep(idx: np.ndarray, logits: torch.Tensor) -> None:
        nonlocal out
        if out.numel() == 0:  # the class count is known from the first batch
            out = torch.empty((len(dataset), logits.shape[-1]), dtype=torch.float32)
        out[torch.from_numpy(idx)] = logits.float().cpu()

    collate = DataCollatorWithPadding(tokenizer, return_tensors="pt")
    forward_batches(model, dataset, columns, collate, keep, batch_size, desc, autocast_dtype)
    return out


def compute_teacher_logits(
    teacher: torch.nn.Module,
    dataset: Dataset,
    tokenizer: Any,
    cache_dir: str | None,
    batch_size: int = 64,
    autocast_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Return the teacher's float32 CPU logits (N, C) on a tokenized dataset, in row order, cached in cache_dir.

    ``autocast_dtype``: run the teacher pass under torch.autocast in that dtype (see `forward_batches`); part
    of the cache key.
    """
    if isinstance(dataset, DatasetDict):
        raise TypeError(
            "compute_teacher_logits takes one Dataset split, not a DatasetDict; call it per split."
        )
    if batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}.")
    columns = input_columns(teacher, dataset)
    num_labels = getattr(getattr(teacher, "config", None), "num_labels", None)
    if len(dataset) == 0:
        return torch.empty((0, num_labels or 0), dtype=torch.float32)

    def compute() -> dict[str, torch.Tensor]:
        # Said before the pass: on a CPU it can take minutes, with progress bars off in a redirected log.
        logger.info(
            "teacher pass: scoring %d rows with %s (batch %d%s)%s",
            len(dataset), type(teacher).__name__, batch_size,
            f", autocast {str(autocast_dtype).removeprefix('torch.')}" if autocast_dtype is not None else "",
            "" if cache_dir is None else f"; cached afterwards in {cache_dir}",
        )  # fmt: skip
        logits = classifier_logits(teacher, dataset, tokenizer, batch_size, autocast_dtype=autocast_dtype)
        if num_labels is not None and logits.shape[1] != num_labels:
            raise ValueError(
                f"teacher returned {logits.shape[1]} logits per row but its config has {num_labels} labels."
            )
        return {_TENSOR_NAME: logits}

    tensors, path = load_or_compute(
        cache_dir,
        _FILE_PREFIX,
        lambda: key_parts(teacher, dataset, columns, autocast_dtype),
        "teacher-logit cache",
        _check(len(dataset), num_labels),
        compute,
        (_TENSOR_NAME, "logits", _NON_FINITE_FIX),
        lambda t: "{} x {} logits".format(*t[_TENSOR_NAME].shape),
        lambda t: {
            "num_labels": str(t[_TENSOR_NAME].shape[1]),
            # for reference only; not part of the key
            "dataset_fingerprint": str(dataset._fingerprint),
        },
        logger,
    )
    logits = tensors[_TENSOR_NAME]
    if path is None:
        logger.info("computed %d x %d teacher logits (no cache_dir: not cached)", *logits.shape)
    return logits


def add_teacher_logits(dataset: Dataset, logits: torch.Tensor | np.ndarray) -> Dataset:
    """Return the dataset with a float32 column ``teacher_logits``: (rows, C) one teacher, (rows, K, C) K teachers."""
    array = logits.detach().cpu().float().numpy() if isinstance(logits, torch.Tensor) else np.asarray(logits)
    if array.ndim not in (2, 3):
        raise ValueError(
            f"logits must be (rows, num_labels), or (rows, num_teachers, num_labels) for several teachers; got "
            f"shape {tuple(array.shape)}."
        )
    if array.shape[0] != len(dataset):
        raise ValueError(
            f"logits have {array.shape[0]} rows but the dataset has {len(dataset)}: they must come from the "
            "same rows in the same order (compute them on this split, before any shuffle/select/filter)."
        )
    if TEACHER_LOGITS_COLUMN in dataset.column_names:
        logger.info("replacing the existing %r column.", TEACHER_LOGITS_COLUMN)
        dataset = dataset.remove_columns(TEACHER_LOGITS_COLUMN)
    feature = List(Value("float32")) if array.ndim == 2 else List(List(Value("float32")))
    return dataset.add_column(TEACHER_LOGITS_COLUMN, array.astype(np.float32).tolist(), feature=feature)


def teacher_logits_for_texts(
    teacher: torch.nn.Module,
    teacher_tokenizer: Any,
    raw_dataset: Dataset,
    text_column: str,
    text_pair_column: str | None = None,
    max_length: int | None = 128,
    cache_dir: str | None = None,
    batch_size: int = 64,
    autocast_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Tokenize raw text with the teacher's own tokenizer and return its (cached) logits, in row order."""
    if isinstance(raw_dataset, DatasetDict):
        raise TypeError(
            "teacher_logits_for_texts takes one Dataset split, not a DatasetDict; call it per split."
        )
    tokenized = tokenize_dataset(
        raw_dataset, teacher_tokenizer, text_column, text_pair_column, max_length=max_length, keep_columns=()
    )
    return compute_teacher_logits(
        teacher, tokenized, teacher_tokenizer, cache_dir, batch_size=batch_size, autocast_dtype=autocast_dtype
    )


def teacher_logits_for_student(
    teacher: torch.nn.Module,
    teacher_tokenizer: Any,
    student_tokenizer: Any,
    tokenized: Dataset,
    raw_dataset: Dataset,
    text_column: str,
    text_pair_column: str | None = None,
    max_length: int | None = 128,
    cache_dir: str | None = None,
    batch_size: int = 64,
    autocast_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """The teacher's (cached) logits over the rows a student trains on, in row order.

    A teacher with the student's vocabulary scores the student's `tokenized` rows; any other teacher reads
    `raw_dataset`'s text with its own tokenizer (the student's ids would be other words to it), with the
    student's mask token (augmented copies) swapped for the teacher's own.
    """
    if same_vocabulary(student_tokenizer, teacher_tokenizer):
        return compute_teacher_logits(
            teacher, tokenized, teacher_tokenizer, cache_dir, batch_size, autocast_dtype
        )
    columns = [text_column] + ([text_pair_column] if text_pair_column else [])
    teacher_mask = teacher_tokenizer.mask_token or teacher_tokenizer.unk_token
    teacher_raw = replace_mask_token(
        raw_dataset, columns, student_tokenizer.mask_token or "[MASK]", teacher_mask
    )
    return teacher_logits_for_texts(
        teacher, teacher_tokenizer, teacher_raw, text_column, text_pair_column, max_length, cache_dir,
        batch_size, autocast_dtype,
    )  # fmt: skip
