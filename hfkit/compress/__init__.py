"""Compression for deployment, one technique a file: quantize, prune, lowrank, lora, trim_vocab; pipeline chains them."""

from .lora import LoraArguments, apply_lora, merge_adapter_into_base, merge_and_unload_to
from .lowrank import LowRankArguments, factorize_model, load_lowrank, plan_lowrank, save_lowrank
from .prune import (
    PruneArguments,
    SparsityReport,
    magnitude_prune,
    prune,
    sparsity_report,
    structured_prune,
)
from .quantize import QuantizeArguments, load_quantized, memory_footprint_mb, save_quantized, skip_modules_for
from .trim_vocab import TrimVocabArguments, oov_rates, save_trimmed, trim_vocabulary

__all__ = [
    "LoraArguments",
    "LowRankArguments",
    "PruneArguments",
    "QuantizeArguments",
    "SparsityReport",
    "TrimVocabArguments",
    "apply_lora",
    "factorize_model",
    "load_lowrank",
    "load_quantized",
    "magnitude_prune",
    "memory_footprint_mb",
    "merge_adapter_into_base",
    "merge_and_unload_to",
    "oov_rates",
    "plan_lowrank",
    "prune",
    "save_lowrank",
    "save_quantized",
    "save_trimmed",
    "skip_modules_for",
    "sparsity_report",
    "structured_prune",
    "trim_vocabulary",
]
