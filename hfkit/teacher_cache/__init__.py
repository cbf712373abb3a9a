"""Teacher outputs computed once (one inference loop, forward.py) and cached on disk (store.py): classifier
logits (classifier.py) and per-token LM top-k logits (lm.py)."""

from .classifier import (
    TEACHER_LOGITS_COLUMN,
    add_teacher_logits,
    cache_path,
    classifier_logits,
    compute_teacher_logits,
    teacher_logits_for_student,
    teacher_logits_for_texts,
)
from .forward import forward_batches
from .lm import TeacherTopK, add_teacher_topk, teacher_topk_logits, topk_cache_path
from .store import FORMAT_VERSION, save_atomic, teacher_fingerprint

__all__ = [
    "FORMAT_VERSION",
    "TEACHER_LOGITS_COLUMN",
    "TeacherTopK",
    "add_teacher_logits",
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
