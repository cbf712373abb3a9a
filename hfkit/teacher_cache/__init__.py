"""Teacher outputs computed once and cached on disk: the shared store, classifier logits, LM top-k logits."""

from .classifier import (
    TEACHER_LOGITS_COLUMN,
    add_teacher_logits,
    cache_path,
    compute_teacher_logits,
    model_logits,
    teacher_logits_for_texts,
)
from .lm import TeacherTopK, add_teacher_topk, teacher_topk_logits, topk_cache_path
from .store import FORMAT_VERSION, save_atomic, teacher_fingerprint

__all__ = [
    "FORMAT_VERSION",
    "TEACHER_LOGITS_COLUMN",
    "TeacherTopK",
    "add_teacher_logits",
    "add_teacher_topk",
    "cache_path",
    "compute_teacher_logits",
    "model_logits",
    "save_atomic",
    "teacher_fingerprint",
    "teacher_logits_for_texts",
    "teacher_topk_logits",
    "topk_cache_path",
]
