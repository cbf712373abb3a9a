"""Cache a causal-LM teacher's per-token top-k logits on disk (safetensors) and attach them to a dataset.

Full LM logits cannot be cached (SmolLM2: 49,152 floats per token, ~200 KB); the k largest per token can
(k=32: 256 bytes). Training from them (``CLMConfig.teacher_topk``) needs no teacher in memory and runs it
once instead of once per epoch; the loss renormalises both distributions over the teacher's top-k tokens
(``hfkit.losses.topk_token_kl``).

File ``lm-teacher-topk-<key>.safetensors`` holds three tensors over the dataset's rows in order, unpadded:
``values`` (T, k) float32 raw logits (before temperature: the top-k set does not depend on it), ``indices``
(T, k) int32 token ids, ``lengths`` (N,) int64 tokens per row (T = sum of lengths). The key is the classifier
cache's (``hfkit.teacher_cache.store``: teacher weights and config, dataset fingerprint, a digest of the exact
token ids) plus the cache kind and k; every part is stored as metadata and re-checked on load, together
with shapes, dtypes, row lengths and the index range, so a stale or damaged file is logged and rebuilt.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import torch
from datasets import Dataset, DatasetDict, concatenate_datasets
from datasets.table import InMemoryTable

from ..data.lm import TOPK_INDICES, TOPK_VALUES, LMDataCollator, lm_pad_token_id
from ..data.sources import row_lengths
from .forward import forward_batches
from .store import cache_file, input_columns, key_parts, load_or_compute

logger = logging.getLogger(__name__)

__all__ = [
    "TOPK_INDICES",
    "TOPK_VALUES",
    "TeacherTopK",
    "add_teacher_topk",
    "teacher_topk_logits",
    "topk_cache_path",
]

# Bump when what is stored (or how it is computed) changes; part of the key.
LM_CACHE_KIND = "lm-topk-1"
_FILE_PREFIX = "lm-teacher-topk-"
_TENSORS = {"values": torch.float32, "indices": torch.int32, "lengths": torch.int64}


class TeacherTopK(NamedTuple):
    """A teacher's top-k logits for every token of a dataset, rows concatenated (see the module docstring)."""

    values: torch.Tensor  # (T, k) float32
    indices: torch.Tensor  # (T, k) int32
    lengths: torch.Tensor  # (N,) int64


def topk_cache_path(cache_dir: str, key: str) -> str:
    """Return the cache file path for a key."""
    return cache_file(cache_dir, _FILE_PREFIX, key)


def _lengths(dataset: Dataset) -> torch.Tensor:
    return torch.from_numpy(row_lengths(dataset))


def _check(
    lengths: torch.Tensor, k: int, vocab: int
) -> Callable[[dict[str, torch.Tensor], dict[str, str]], list[str]]:
    """What a top-k cache file must hold: values/indices (T, k) over exactly these row lengths, ids in the vocab."""

    def check(tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> list[str]:
        if set(tensors) != set(_TENSORS):
            return [f"tensors {sorted(tensors)}, expected {sorted(_TENSORS)}"]
        values, indices, stored_lengths = (tensors[n] for n in _TENSORS)
        shape = (int(lengths.sum()), k)
        dtypes = [tensors[n].dtype for n in _TENSORS]
        if dtypes != list(_TENSORS.values()):
            return [f"dtypes {dtypes}, expected {list(_TENSORS.values())}"]
        if tuple(values.shape) != shape or tuple(indices.shape) != shape:
            return [f"values {tuple(values.shape)} / indices {tuple(indices.shape)}, expected {shape}"]
        if not torch.equal(stored_lengths, lengths):
            return ["row lengths differ from the dataset's"]
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= vocab):
            return [f"token ids outside [0, {vocab})"]
        return []

    return check


def _vocab_size(teacher: torch.nn.Module) -> int:
    output = teacher.get_output_embeddings() if hasattr(teacher, "get_output_embeddings") else None
    if output is not None and hasattr(output, "out_features"):
        return int(output.out_features)
    return int(teacher.config.vocab_size)


def _compute(
    teacher: torch.nn.Module,
    dataset: Dataset,
    columns: list[str],
    k: int,
    lengths: torch.Tensor,
    pad_id: int,
    batch_size: int,
    autocast_dtype: torch.dtype | None = None,
) -> TeacherTopK:
    """Run the teacher over the rows and keep each real token's top-k logits, rows in dataset order."""
    offsets = torch.cat([torch.zeros(1, dtype=torch.int64), lengths.cumsum(0)])
    total = int(offsets[-1])
    values = torch.empty((total, k), dtype=torch.float32)
    indices = torch.empty((total, k), dtype=torch.int32)

    def keep(idx: np.ndarray, logits: torch.Tensor) -> None:
        # topk in float32: bf16 logits tie often, and the stored values are float32 anyway.
        top = logits.float().topk(k, dim=-1)
        for j, row in enumerate(idx.tolist()):
            lo, hi = int(offsets[row]), int(offsets[row + 1])
            values[lo:hi] = top.values[j, : hi - lo].cpu()
            indices[lo:hi] = top.indices[j, : hi - lo].to(torch.int32).cpu()

    collate = LMDataCollator(pad_token_id=pad_id)
    forward_batches(
        teacher, dataset, columns, collate, keep, batch_size, "teacher top-k", autocast_dtype, use_cache=False
    )
    return TeacherTopK(values, indices, lengths)


def teacher_topk_logits(
    teacher: torch.nn.Module,
    dataset: Dataset,
    k: int,
    cache_dir: str | None = None,
    batch_size: int = 8,
    pad_token_id: int | None = None,
    autocast_dtype: torch.dtype | None = None,
) -> TeacherTopK:
    """The teacher's top-k logits for every token of a tokenized LM dataset, cached in cache_dir when given.

    ``autocast_dtype``: run the teacher pass under torch.autocast in that dtype (see `forward_batches`); part of
    the cache key, which a float32 pass leaves as it was.
    """
    if isinstance(dataset, DatasetDict):
        raise TypeError("teacher_topk_logits takes one Dataset split, not a DatasetDict; call it per split.")
    vocab = _vocab_size(teacher)
    if not 1 <= k <= vocab:
        raise ValueError(f"k must be in [1, {vocab}] (the teacher's vocabulary), got {k}.")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}.")
    columns = input_columns(teacher, dataset)
    if len(dataset) == 0:
        raise ValueError("teacher_topk_logits needs a non-empty dataset.")
    lengths = _lengths(dataset)
    pad_id = pad_token_id if pad_token_id is not None else lm_pad_token_id(None, teacher.config)

    def parts() -> dict[str, str]:
        return {
            **key_parts(teacher, dataset, columns, autocast_dtype),
            "cache_kind": LM_CACHE_KIND,
            "topk": str(k),
            "vocab_size": str(vocab),
        }

    def compute() -> dict[str, torch.Tensor]:
        return _compute(teacher, dataset, columns, k, lengths, pad_id, batch_size, autocast_dtype)._asdict()

    tensors, _ = load_or_compute(
        cache_dir,
        _FILE_PREFIX,
        parts,
        "teacher top-k cache",
        _check(lengths, k, vocab),
        compute,
        ("values", "top-k logits", "Check the teacher's weights (e.g. reload its checkpoint)."),
        lambda t: f"{len(t['values'])} tokens x top-{k}",
        log=logger,
    )
    return TeacherTopK(*(tensors[n] for n in _TENSORS))


def add_teacher_topk(dataset: Dataset, topk: TeacherTopK) -> Dataset:
    """Return the dataset with per-token columns teacher_topk_values / teacher_topk_indices ((L, k) per row)."""
    lengths = _lengths(dataset)
    if not torch.equal(lengths, topk.lengths.to(torch.int64)):
        raise ValueError(
            f"the top-k logits cover {len(topk.lengths)} rows / {int(topk.lengths.sum())} tokens but the dataset has "
            f"{len(dataset)} rows / {int(lengths.sum())} tokens: compute them on this split, before any "
            "shuffle/select/filter."
        )
    k = topk.values.shape[1]
    # int32 offsets count tokens (not values): fine up to 2^31 tokens in one split.
    offsets = pa.array(torch.cat([torch.zeros(1, dtype=torch.int64), lengths.cumsum(0)]).numpy(), pa.int32())

    def column(flat: torch.Tensor) -> pa.Array:
        # Built in Arrow directly: a Python list of lists of lists would cost seconds per million tokens.
        per_token = pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1).numpy()), k)
        return pa.ListArray.from_arrays(offsets, per_token)

    columns = {TOPK_VALUES: column(topk.values.float()), TOPK_INDICES: column(topk.indices.to(torch.int32))}
    base = dataset.remove_columns([c for c in columns if c in dataset.column_names]).flatten_indices()
    extra = Dataset(InMemoryTable(pa.table(columns)))
    return concatenate_datasets([base, extra], axis=1)
