"""bitsandbytes quantization (LLM.int8 8-bit, NF4/FP4 4-bit) of a saved classifier or causal LM folder.

The quantization itself is transformers' `BitsAndBytesConfig` path; this file adds what breaks in practice:

* Task heads stay in float. transformers matches `llm_int8_skip_modules` against full module names only as a
  prefix or a suffix at a module boundary, so `"pooler"` does not match `bert.pooler.dense` (neither starts
  nor ends with it) and that layer was quantized. `skip_modules_for` therefore lists the full dotted name of
  every `nn.Linear` outside the base model (the task head: `classifier`, `score`, `lm_head`, ...) plus those
  inside a `pooler` (BERT's pooler only feeds the classifier).
* 4-bit save -> reload on CPU. On a CPU with AVX512-BF16, bitsandbytes' `Linear4bit.forward` repacks its
  weight in place for a CPU kernel the first time it runs in eval mode: it dequantizes the double-quantized
  absmax and stores it **transposed, in bfloat16**. `save_pretrained` then undoes the repacking only
  approximately: with double quant it re-quantizes the bf16-rounded absmax (new offset, other codes), and
  without double quant it saves the absmax still transposed and in bf16, so it is read back scrambled for
  every layer with more than one 64-weight block per row. Reloaded logits therefore differed from the
  logits seen before saving (slightly with double quant, a lot without). `save_quantized` puts each
  repacked layer back into its exact pre-repack state before saving (see `_restore_cpu_packed_4bit`).
"""

from __future__ import annotations

import copy
import logging
import os
from dataclasses import dataclass, field
from typing import Any

import bitsandbytes as bnb
import torch
from transformers import AutoConfig, BitsAndBytesConfig, PretrainedConfig, PreTrainedModel
from transformers.quantizers.quantizers_utils import should_convert_module

# Reloading a saved bitsandbytes folder (and the state kept for an exact save) is hfkit.io's job; this file
# adds quantizing a float folder and saving.
from ..io import ORIGINAL_QUANT_STATE, TaskKind, cpu_safe_4bit, load_weights, resolve_model_path

__all__ = [
    "QuantizeArguments",
    "bnb_config",
    "cpu_safe_4bit",
    "load_quantized",
    "memory_footprint_mb",
    "quantization_summary",
    "save_quantized",
    "skip_modules_for",
]

logger = logging.getLogger(__name__)

_BITS = (4, 8)
_QUANT_TYPES = ("nf4", "fp4")
_COMPUTE_DTYPES = ("float32", "bfloat16", "float16")


@dataclass
class QuantizeArguments:
    """How to quantize a model with bitsandbytes."""

    bits: int = field(default=8, metadata={"help": "8 (LLM.int8) or 4 (NF4/FP4)."})
    quant_type: str = field(
        default="nf4", metadata={"help": "4-bit data type: 'nf4' (normal float) or 'fp4'. Ignored for 8-bit."}
    )
    double_quant: bool = field(
        default=True,
        metadata={
            "help": "4-bit: also quantize the per-block scales (saves ~0.37 bit/weight). Ignored for 8-bit."
        },
    )
    compute_dtype: str = field(
        default="float32",
        metadata={
            "help": "4-bit: dtype of the matmuls ('float32', 'bfloat16', 'float16'). float32 is safe "
            "everywhere; bfloat16 is faster on recent GPUs. Ignored for 8-bit."
        },
    )
    skip_modules: list[str] | None = field(
        default=None,
        metadata={
            "help": "Extra module names to keep in float, on top of the task head and pooler (always kept). "
            "Full dotted names (e.g. bert.encoder.layer.0.output.dense) or suffixes at a module boundary."
        },
    )

    def __post_init__(self):
        if self.bits not in _BITS:
            raise ValueError(
                f"bits={self.bits!r}: bitsandbytes quantizes to 8 or 4 bits; set bits to 8 or 4."
            )
        if self.quant_type not in _QUANT_TYPES:
            raise ValueError(f"quant_type={self.quant_type!r}: use one of {list(_QUANT_TYPES)}.")
        if self.compute_dtype not in _COMPUTE_DTYPES:
            raise ValueError(f"compute_dtype={self.compute_dtype!r}: use one of {list(_COMPUTE_DTYPES)}.")
        if isinstance(self.skip_modules, str):
            raise ValueError(
                f"skip_modules={self.skip_modules!r} is a string; give a list of module names, "
                f"e.g. [{self.skip_modules!r}]."
            )


def _meta_model(config: PretrainedConfig, task: TaskKind | str) -> PreTrainedModel:
    # Only the module tree is needed: build it on the meta device, no memory and no weights.
    with torch.device("meta"):
        return TaskKind.parse(task).auto_class.from_config(config)


def _linear_names(model: torch.nn.Module) -> list[str]:
    # Exactly the layers transformers' bnb integration replaces (nn.Linear proper, and GPT-2 style Conv1D).
    from transformers.pytorch_utils import Conv1D

    return [n for n, m in model.named_modules() if type(m) is torch.nn.Linear or isinstance(m, Conv1D)]


def skip_modules_for(
    model_or_config: PreTrainedModel | PretrainedConfig, task: TaskKind | str | None = None
) -> list[str]:
    """Full names of the Linear layers to keep in float: the task head (outside the base model) and any pooler."""
    if isinstance(model_or_config, PretrainedConfig):
        model = _meta_model(model_or_config, _resolve_task(model_or_config, task))
    else:
        model = model_or_config
    prefix = model.base_model_prefix
    names = [
        name
        for name in _linear_names(model)
        # A model whose base is itself (e.g. a bare encoder) has no head outside it.
        if (prefix and hasattr(model, prefix) and not name.startswith(prefix + "."))
        or "pooler" in name.split(".")
    ]
    output = model.get_output_embeddings()
    if output is not None:
        # An LM head tied to or living inside the base model is still the output layer.
        names += [n for n, m in model.named_modules() if m is output and n not in names]
    return names


def _check_skip_modules(model: PreTrainedModel, extra: list[str]) -> None:
    # Use transformers' own matching rule, so a name that would silently match nothing is caught here.
    linears = _linear_names(model)
    for key in extra:
        if all(should_convert_module(name, [key]) for name in linears):
            hints = [n for n in linears if key in n][:5]
            raise ValueError(
                f"skip_modules entry {key!r} matches no Linear layer of {type(model).__name__}: names match "
                "only as a prefix or suffix at a module boundary. "
                + (f"Did you mean {hints}?" if hints else f"Its Linear layers include {linears[:5]}.")
            )


def bnb_config(
    args: QuantizeArguments,
    model_or_config: PreTrainedModel | PretrainedConfig,
    task: TaskKind | str | None = None,
) -> BitsAndBytesConfig:
    """The `BitsAndBytesConfig` for `args`, keeping the model's task head, pooler and `args.skip_modules` in float."""
    model = (
        _meta_model(model_or_config, _resolve_task(model_or_config, task))
        if isinstance(model_or_config, PretrainedConfig)
        else model_or_config
    )
    skip = skip_modules_for(model)
    extra = list(args.skip_modules or [])
    _check_skip_modules(model, extra)
    skip += [name for name in extra if name not in skip]
    if args.bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=args.quant_type,
        bnb_4bit_use_double_quant=args.double_quant,
        bnb_4bit_compute_dtype=getattr(torch, args.compute_dtype),
        llm_int8_skip_modules=skip,
    )


def _resolve_task(config: PretrainedConfig, task: TaskKind | str | None) -> TaskKind:
    return TaskKind.parse(task) if task is not None else TaskKind.from_config(config)


def _settings(quant: dict[str, Any]) -> dict[str, Any]:
    # The fields that decide the stored tensors and the computation; the rest are bnb defaults.
    if quant.get("load_in_8bit"):
        out = {"bits": 8}
    else:
        out = {
            "bits": 4,
            "quant_type": quant.get("bnb_4bit_quant_type"),
            "double_quant": quant.get("bnb_4bit_use_double_quant"),
            "compute_dtype": str(quant.get("bnb_4bit_compute_dtype")).removeprefix("torch."),
        }
    out["skip_modules"] = sorted(quant.get("llm_int8_skip_modules") or [])
    return out


def load_quantized(
    folder: str | os.PathLike,
    args: QuantizeArguments | None = None,
    task: TaskKind | str | None = None,
    device_map: str | dict | None = None,
    trust_remote_code: bool = False,
    **from_pretrained_kwargs: Any,
) -> PreTrainedModel:
    """Load a saved float model quantized by `args`, or reload a folder saved by `save_quantized` (args=None)."""
    # Also 'wheel:<module>' (e.g. the offline MiniLM).
    folder = resolve_model_path(os.fspath(folder), trust_remote_code)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"model folder {folder!r} does not exist.")
    if not os.path.isfile(os.path.join(folder, "config.json")):
        raise FileNotFoundError(
            f"{folder!r} has no config.json: give a folder written by save_pretrained / save_quantized."
        )
    config = AutoConfig.from_pretrained(folder, trust_remote_code=trust_remote_code)
    task = _resolve_task(config, task)
    stored = getattr(config, "quantization_config", None)
    if isinstance(stored, BitsAndBytesConfig):
        stored = stored.to_dict()
    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code, **from_pretrained_kwargs}
    if device_map is not None:
        kwargs["device_map"] = device_map  # else hfkit.io's default: the GPU when there is one, else the CPU
    if stored is not None:
        if not (stored.get("load_in_8bit") or stored.get("load_in_4bit")):
            raise ValueError(
                f"{folder!r} is already quantized with {stored.get('quant_method')!r}, not bitsandbytes; "
                "quantize the original float model instead."
            )
        if args is not None:
            wanted = _settings(bnb_config(args, config, task).to_dict())
            if wanted != _settings(stored):
                raise ValueError(
                    f"{folder!r} is already quantized with {_settings(stored)}; it cannot be quantized again "
                    f"with {wanted}. Quantize the original float model folder instead, or reload this one "
                    "with args=None."
                )
        # A pre-quantized folder: transformers reads the settings from its config.json.
    elif args is None:
        raise ValueError(f"{folder!r} holds a float model; pass QuantizeArguments to quantize it.")
    else:
        kwargs["quantization_config"] = bnb_config(args, config, task)
    # One loader for every folder kind: low-rank factors are built before the weights load (and quantized
    # like any Linear); the load-time 4-bit state is kept for an exact save.
    return load_weights(folder, task, **kwargs)


def _restore_cpu_packed_4bit(model: torch.nn.Module) -> int:
    """Undo bitsandbytes' in-place CPU repacking of 4-bit layers exactly; return how many layers it touched."""
    from bitsandbytes.functional import _convert_weight_packed_for_cpu_inverse

    restored = 0
    for module in model.modules():
        if not isinstance(module, bnb.nn.Linear4bit):
            continue
        state = getattr(module.weight, "quant_state", None)
        if state is None or not getattr(state, "packing_format_for_cpu", False):
            continue
        # The 4-bit codes round-trip exactly; bnb's own inverse is lossy only in how it rebuilds absmax,
        # which we skip (original_nested=False) and replace below.
        state.original_nested = False
        codes, state = _convert_weight_packed_for_cpu_inverse(module.weight.data, state)
        original = getattr(module, ORIGINAL_QUANT_STATE, None)
        if original is not None:
            # Loaded by load_quantized: the state as stored on disk, bit for bit.
            state = copy.copy(original)
        else:
            # Unknown origin: keep exactly the scales the CPU kernel used (bf16 values, held in float32, in
            # the untransposed layout), not double-quantized, so a reload computes the same outputs.
            state.absmax = state.absmax.T.reshape(-1).float()
            state.nested = False
        module.weight.data = codes
        module.weight.quant_state = state
        module.quant_state = state
        restored += 1
    return restored


def save_quantized(model: PreTrainedModel, tokenizer: Any, folder: str | os.PathLike) -> None:
    """Save a bitsandbytes-quantized model (safetensors) and its tokenizer so `load_quantized` reloads it exactly."""
    if not (getattr(model, "is_loaded_in_8bit", False) or getattr(model, "is_loaded_in_4bit", False)):
        raise ValueError(
            f"{type(model).__name__} is not quantized with bitsandbytes; load it with load_quantized(folder, "
            "QuantizeArguments(...)) first, or save a float model with save_pretrained."
        )
    restored = _restore_cpu_packed_4bit(model)
    if restored:
        logger.debug("restored %d CPU-repacked 4-bit layers before saving.", restored)
    model.save_pretrained(folder)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)


def memory_footprint_mb(model: PreTrainedModel) -> float:
    """Memory of the model's parameters and buffers in MB (1e6 bytes), as transformers counts it."""
    return model.get_memory_footprint() / 1e6


def quantization_summary(model: PreTrainedModel) -> dict[str, Any]:
    """Bits, settings and which Linear layers are quantized or kept in float, e.g. for a report."""
    quant = model.config.quantization_config
    quant = quant.to_dict() if hasattr(quant, "to_dict") else dict(quant)
    quantized = [m for m in model.modules() if isinstance(m, (bnb.nn.Linear4bit, bnb.nn.Linear8bitLt))]
    return {
        **_settings(quant),
        "quantized_layers": len(quantized),
        "float_layers": _linear_names(model),
        "memory_mb": memory_footprint_mb(model),
    }
