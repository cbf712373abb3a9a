"""The one entry point of the teacher cache: a teacher's outputs over a tokenized dataset, attached as columns.

Every recipe and trainer that distils from cached teacher outputs calls `add_teacher_outputs` with the run's
`TeacherCacheArguments` (its config): classifier logits (one teacher or several, stacked) or, with ``topk``, a
causal LM's per-token top-k logits. The cache folder and the precision of the pass come from the settings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from datasets import Dataset

from .classifier import add_teacher_logits, compute_teacher_logits, teacher_logits_for_student
from .lm import add_teacher_topk, teacher_topk_logits
from .settings import TeacherCacheArguments


@dataclass
class TeacherText:
    """The raw rows behind a tokenized dataset (same order): a teacher of another vocabulary reads their text with
    its own tokenizer (`teacher_logits_for_student`)."""

    raw: Dataset
    text_column: str
    text_pair_column: str | None = None
    max_length: int | None = 128


def add_teacher_outputs(
    dataset: Dataset,
    teachers: Sequence[tuple[torch.nn.Module, Any]],
    settings: TeacherCacheArguments,
    tokenizer: Any,
    batch_size: int = 64,
    text: TeacherText | None = None,
    topk: int | None = None,
) -> Dataset:
    """`dataset` with its teachers' (cached) outputs: a ``teacher_logits`` column, or LM top-k columns with `topk`.

    `teachers`: (model, its tokenizer) pairs; several classifier teachers give a (K, num_labels) row each.
    `tokenizer`: the one `dataset` was tokenized with. `text`: the raw rows, for a teacher whose vocabulary
    differs (without it every teacher scores the dataset's own token ids). `topk`: a causal-LM teacher (one),
    its k largest logits per token.
    """
    if not teachers:
        raise ValueError("add_teacher_outputs needs at least one (teacher, tokenizer) pair.")
    cache_dir, autocast = settings.teacher_logits_cache, settings.teacher_autocast_dtype()
    if topk is not None:
        if len(teachers) != 1:
            raise ValueError(f"top-k LM caching takes one teacher, got {len(teachers)}.")
        teacher = teachers[0][0]
        pad_id = getattr(tokenizer, "pad_token_id", None)
        topk_logits = teacher_topk_logits(teacher, dataset, topk, cache_dir, batch_size, pad_id, autocast)
        return add_teacher_topk(dataset, topk_logits)
    logits = []
    for teacher, teacher_tokenizer in teachers:
        if text is None:
            logits.append(
                compute_teacher_logits(
                    teacher, dataset, teacher_tokenizer or tokenizer, cache_dir, batch_size, autocast
                )
            )
        else:
            logits.append(
                teacher_logits_for_student(
                    teacher,
                    teacher_tokenizer,
                    tokenizer,
                    dataset,
                    text.raw,
                    text.text_column,
                    text.text_pair_column,
                    text.max_length,
                    cache_dir,
                    batch_size,
                    autocast,
                )  # fmt: skip
            )
    return add_teacher_logits(dataset, logits[0] if len(logits) == 1 else torch.stack(logits, dim=1))
