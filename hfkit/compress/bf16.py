"""bfloat16 torch folders: the classifier's weights stored and run in bfloat16, for CPUs with native bf16.

`export_bf16(folder, output)` loads a saved classifier (dense, low-rank or vocabulary-trimmed), casts every
floating-point weight to bfloat16 and saves it with `save_pretrained`: safetensors of half the float32 size,
and ``dtype: bfloat16`` in config.json, which `hfkit.io.load_model` (transformers' ``dtype="auto"``) reads
back, so the reloaded model runs in bfloat16 with no setting to remember.

Why the whole model, LayerNorm included: torch's CPU kernels for bfloat16 LayerNorm and softmax accumulate in
float32 already, and one dtype keeps the graph free of casts. It pays off only where the CPU has bf16 matrix
units (AVX512-BF16 / AMX, see hfkit.trainers.base_config.native_bf16); elsewhere torch emulates bf16 and it is
slower than float32 (the compression report measures it on the machine it runs on).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch
from transformers import AutoTokenizer

from ..io import TaskKind, float_classifier_config, load_weights
from ..modeling import resolve_model_path

__all__ = ["export_bf16"]

logger = logging.getLogger(__name__)


def export_bf16(folder: str | os.PathLike, output_dir: str | os.PathLike, tokenizer: Any = None) -> str:
    """Save a classifier folder's model with bfloat16 weights (safetensors, config, tokenizer) to output_dir."""
    folder = resolve_model_path(os.fspath(folder))
    output_dir = os.fspath(output_dir)
    config = float_classifier_config(folder, "bf16")
    tokenizer = tokenizer if tokenizer is not None else AutoTokenizer.from_pretrained(folder)
    # Loaded in float32 whatever the folder holds, so the cast below is the one rounding.
    model = load_weights(folder, TaskKind.from_config(config), dtype=torch.float32)
    model = model.to(torch.bfloat16)
    model.save_pretrained(output_dir)  # config.dtype is now bfloat16: the reload picks it up
    tokenizer.save_pretrained(output_dir)
    logger.info("bf16: %s -> %s", folder, output_dir)
    return output_dir
