"""Teacher outputs computed once (one inference loop, forward.py) and cached on disk (store.py): classifier
logits (classifier.py) and per-token LM top-k logits (lm.py). Its settings (settings.py) and the one entry
point every recipe calls (attach.py: `add_teacher_outputs`) live here too."""

from .attach import TeacherText, add_teacher_outputs
from .classifier import (
    add_teacher_logits,
    cache_path,
    classifier_logits,
    compute_teacher_logits,
    teacher_logits_for_student,
    teacher_logits_for_texts,
)
from .forward import forward_batches
from .lm import TeacherTopK, add_teacher_topk, teacher_topk_logits, topk_cache_path
from .settings import TEACHER_LOGITS_COLUMN, TEACHER_LOGITS_DTYPES, TeacherCacheArguments
from .store import FORMAT_VERSION, save_atomic, teacher_fingerprint

__all__ = [
    "FORMAT_VERSION",
    "TEACHER_LOGITS_COLUMN",
    "TEACHER_LOGITS_DTYPES",
    "TeacherCacheArguments",
    "TeacherText",
    "TeacherTopK",
    "add_teacher_logits",
    "add_teacher_outputs",
    "add_teacher_topk",
    "cache_path",
    "classifier_logits",
    "compute_teacher_logits",
    "forward_batches",
    "save_atomic",
    "teacher_fingerprint",
    "teacher_logits_for_student",
    "teacher_logits_for_texts",
    "teacher_topk_logits",
    "topk_cache_path",
]
