"""Build a smaller student from a teacher by keeping a subset of its transformer layers (DistilBERT-style init)."""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence

import torch
from transformers import PreTrainedModel

from .errors import UserInputError
from .modeling import count_parameters, layers_prefix

logger = logging.getLogger(__name__)

__all__ = ["describe_sizes", "student_from_teacher"]

# Config attributes holding one entry per layer (v5 configs): they must be sliced like the layers, otherwise
# e.g. a sliding-window/full-attention pattern would no longer line up with the kept blocks. Attributes that
# hold layer *indices* (mlp_only_layers, moe_layers, ...) would need remapping instead and are not handled.
_PER_LAYER_CONFIG_FIELDS = (
    "layer_types",
    "mlp_layer_types",
    "no_rope_layers",
    "layers_block_type",
    "layer_rope_theta",
    "num_attention_heads_per_layer",
    "num_key_value_heads_per_layer",
    "block_configs",
)


def _validate_keep_layers(keep_layers: Sequence[int], num_layers: int) -> list[int]:
    """Return keep_layers as a list of ints, or raise a ValueError saying what to change."""
    keep = list(keep_layers)
    if not keep:
        raise UserInputError(
            f"keep_layers is empty: pass at least one teacher layer index in 0..{num_layers - 1}."
        )
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in keep):
        raise UserInputError(f"keep_layers must be integers, got {keep}.")
    if len(set(keep)) != len(keep):
        raise UserInputError(f"keep_layers has duplicates: {keep}; each teacher layer can be kept once.")
    if keep != sorted(keep):
        raise UserInputError(f"keep_layers must be sorted ascending, got {keep}; pass {sorted(keep)}.")
    out_of_range = [i for i in keep if not 0 <= i < num_layers]
    if out_of_range:
        raise UserInputError(
            f"keep_layers {out_of_range} out of range: the teacher has {num_layers} layers (indices 0..{num_layers - 1})."
        )
    return keep


def _student_config(teacher: PreTrainedModel, keep: list[int]):
    """Copy of the teacher config with num_hidden_layers and every per-layer list sliced to `keep`."""
    config = copy.deepcopy(teacher.config)
    num_layers = teacher.config.num_hidden_layers
    for field in _PER_LAYER_CONFIG_FIELDS:
        value = getattr(config, field, None)
        if isinstance(value, (list, tuple)):
            if len(value) != num_layers:
                raise UserInputError(
                    f"config.{field} has {len(value)} entries but the teacher has {num_layers} layers; "
                    "cannot tell which entries belong to the kept layers."
                )
            setattr(config, field, type(value)(value[i] for i in keep))
    config.num_hidden_layers = len(keep)
    return config


def student_from_teacher(teacher: PreTrainedModel, keep_layers: Sequence[int]) -> PreTrainedModel:
    """Standalone copy of `teacher` (same class) keeping only the transformer layers listed in keep_layers."""
    num_layers = teacher.config.num_hidden_layers
    keep = _validate_keep_layers(keep_layers, num_layers)
    prefix = layers_prefix(teacher) + "."
    new_index = {old: new for new, old in enumerate(keep)}

    state_dict = {}
    for key, value in teacher.state_dict().items():
        if key.startswith(prefix):
            index, _, rest = key[len(prefix) :].partition(".")
            if int(index) not in new_index:
                continue
            key = f"{prefix}{new_index[int(index)]}.{rest}"
        state_dict[key] = value

    # A fresh model built from the sliced config, rather than a deepcopy with layers removed: modules that
    # remember their position (e.g. LlamaAttention.layer_idx, used to index the KV cache) then get the
    # student's indices, and non-persistent buffers (rotary inv_freq, ...) are rebuilt for the new config.
    config = _student_config(teacher, keep)
    student = type(teacher)._from_config(config, dtype=teacher.dtype)
    # strict=True: any key the rename missed (or an architecture find_layers mislocated) fails loudly here.
    # load_state_dict copies, so the student shares no storage with the teacher.
    student.load_state_dict(state_dict, strict=True)
    if getattr(teacher, "generation_config", None) is not None and student.can_generate():
        student.generation_config = copy.deepcopy(teacher.generation_config)
    device = next(teacher.parameters()).device
    if device.type != "meta":
        student.to(device)
    student.train(teacher.training)
    logger.info("student keeps teacher layers %s; %s", keep, describe_sizes(teacher, student))
    return student


def describe_sizes(teacher: torch.nn.Module, student: torch.nn.Module) -> str:
    """One line with teacher and student parameter counts and the student/teacher ratio."""
    teacher_total, _ = count_parameters(teacher)
    student_total, _ = count_parameters(student)
    ratio = student_total / teacher_total if teacher_total else float("nan")
    return (
        f"teacher {teacher_total:,} parameters, student {student_total:,} parameters "
        f"({ratio:.1%} of the teacher, {1 / ratio if ratio else float('inf'):.2f}x smaller)"
    )
