"""The teacher-cache settings: one dataclass that every distilling config inherits, and the column it fills.

`TeacherCacheArguments` is read by the code that owns it: `hfkit.teacher_cache.add_teacher_outputs` (every
recipe) and the trainers (`DistillTrainer`, `CLMTrainer`) when they are given a teacher and a folder but no
cached column, so the YAML keys ``teacher_logits_cache`` / ``teacher_logits_dtype`` work from Python as well.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..errors import UserInputError

# The dataset column of a classifier teacher's cached logits, read by DistillTrainer (the one definition).
TEACHER_LOGITS_COLUMN = "teacher_logits"
TEACHER_LOGITS_DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass
class TeacherCacheArguments:
    """Where the teacher's outputs are cached, and the precision of the one-off teacher pass that fills it.

    A config inherits it first (``class DistillConfig(TeacherCacheArguments, ClassifierConfig)``) so its fields
    come after the `TrainingArguments` ones (``output_dir`` stays the first positional field); its
    ``__post_init__`` checks them and hands on to the next class.
    """

    teacher_logits_cache: str | None = field(
        default=None,
        metadata={
            "help": "Folder where the teacher's outputs are cached: a classifier's logits, or a causal LM's per-token "
            "top-k logits (needs teacher_topk). The teacher runs once, keyed by teacher + data + tokenization, and "
            "training reads the cache without running it (datasets that already carry the column are used as they "
            "are)."
        },
    )
    teacher_logits_dtype: str = field(
        default="auto",
        metadata={
            "help": "Precision of the one-off teacher pass that fills teacher_logits_cache: 'auto' (bf16/fp16 "
            "autocast when bf16/fp16 training is on, else float32), 'float32', 'bfloat16' or 'float16'. "
            "'bfloat16' makes a big teacher's pass 2-3x faster on CPUs with AVX512-BF16 and on GPUs, without "
            "changing the student's training precision. Part of the cache key."
        },
    )

    def __post_init__(self):
        if self.teacher_logits_dtype not in TEACHER_LOGITS_DTYPES:
            raise UserInputError(
                f"teacher_logits_dtype must be one of {TEACHER_LOGITS_DTYPES}, got {self.teacher_logits_dtype!r}."
            )
        parent = getattr(super(), "__post_init__", None)
        if parent is not None:  # the next config in the MRO (e.g. ClassifierConfig -> TrainingArguments)
            parent()

    def teacher_autocast_dtype(self) -> torch.dtype | None:
        """The autocast dtype of the teacher pass (teacher_logits_dtype resolved), or None for float32."""
        name = self.teacher_logits_dtype
        if name == "auto":
            name = (
                "bfloat16"
                if getattr(self, "bf16", False)
                else "float16"
                if getattr(self, "fp16", False)
                else "float32"
            )
        return None if name == "float32" else getattr(torch, name)
