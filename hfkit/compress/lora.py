"""LoRA / QLoRA fine-tuning through PEFT, configured from YAML, and export of the merged plain model.

Train with `apply_lora` (the base frozen, low-rank adapters plus the task head trainable), then ship with
`merge_and_unload_to`: the adapters are folded into the weights and a plain transformers checkpoint is
saved, which `AutoModelFor*.from_pretrained` loads without PEFT. A QLoRA base (4/8-bit) cannot be merged in
place without rounding the update into the quantized weights: save the adapter and use
`merge_adapter_into_base`, which reloads the base in float and merges there.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from peft import LoraConfig, PeftConfig, PeftModel, TaskType, get_peft_model, prepare_model_for_kbit_training
from transformers import (
    AutoTokenizer,
    BitsAndBytesConfig,
    PreTrainedModel,
)

from ..errors import UserInputError
from ..io import TaskKind
from ..modeling import (
    ModelArguments,
    count_parameters,
    load_classifier,
    resolve_model_path,
)

logger = logging.getLogger(__name__)

__all__ = [
    "LoraArguments",
    "apply_lora",
    "load_quantized_classifier",
    "lora_quantization_config",
    "merge_adapter_into_base",
    "merge_and_unload_to",
]

# Heads that PEFT trains in full for sequence classification (its own default modules_to_save) and the LM
# head: they stay in float when the base is quantized.
HEAD_MODULES = ["classifier", "score", "lm_head"]


def peft_task_type(task: TaskKind | TaskType | str) -> TaskType:
    """PEFT's TaskType for a hfkit TaskKind, a pipeline tag or a PEFT TaskType name ('SEQ_CLS')."""
    try:
        kind = TaskKind.parse(task)
    except UserInputError as e:
        raise UserInputError(
            f"task_type {task!r} is not a PEFT TaskType; use 'SEQ_CLS' or 'CAUSAL_LM'."
        ) from e
    if kind.peft_task_type is None:
        raise UserInputError(f"task {kind.value!r} has no PEFT TaskType; use 'SEQ_CLS' or 'CAUSAL_LM'.")
    return TaskType(kind.peft_task_type)


@dataclass
class LoraArguments:
    """LoRA / QLoRA settings (all keys start with lora_ or qlora_, so they mix with other recipe arguments)."""

    use_lora: bool = field(
        default=False,
        metadata={"help": "Fine-tune LoRA adapters (plus the task head) instead of all the weights."},
    )
    lora_r: int = field(default=8, metadata={"help": "Rank of the LoRA update matrices."})
    lora_alpha: int = field(
        default=16, metadata={"help": "LoRA scaling numerator: the update is scaled by lora_alpha / lora_r."}
    )
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA input, in [0, 1)."})
    lora_target_modules: list[str] | None = field(
        default=None,
        metadata={
            "help": "Layers that get adapters, as PEFT matches them (name suffixes such as query value, "
            "or q_proj v_proj). Default: all-linear, every Linear of the model except the task/LM head."
        },
    )
    lora_modules_to_save: list[str] | None = field(
        default=None,
        metadata={
            "help": "Modules trained in full and saved with the adapter. Sequence classification always adds "
            "the new head (classifier / score), so it trains; list more here (e.g. pooler)."
        },
    )
    qlora_bits: int | None = field(
        default=None,
        metadata={
            "help": "QLoRA: load the frozen base quantized to 4 (NF4) or 8 bits with bitsandbytes; "
            "the head and the adapters stay in float."
        },
    )
    merge_on_save: bool = field(
        default=True,
        metadata={
            "help": "At the end, save the adapters merged into a plain model (loads with AutoModel..."
            ".from_pretrained, no PEFT needed); false: save the adapter only."
        },
    )

    def __post_init__(self):
        if self.lora_r < 1:
            raise ValueError(f"lora_r must be >= 1, got {self.lora_r}.")
        if self.lora_alpha <= 0:
            raise ValueError(f"lora_alpha must be > 0, got {self.lora_alpha}.")
        if not 0 <= self.lora_dropout < 1:
            raise ValueError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}.")
        if self.qlora_bits not in (None, 4, 8):
            raise ValueError(f"qlora_bits must be 4 or 8 (or unset for a float base), got {self.qlora_bits}.")
        if self.qlora_bits is not None and not self.use_lora:
            raise ValueError(
                "qlora_bits is set but use_lora is false: set use_lora: true to train with QLoRA."
            )
        if self.lora_target_modules is not None and not self.lora_target_modules:
            raise ValueError(
                "lora_target_modules is empty: name layers (e.g. query value) or leave it unset."
            )

    @property
    def target_modules(self) -> str | list[str]:
        """What PEFT's LoraConfig gets: 'all-linear' unless layers are named."""
        if self.lora_target_modules is None or self.lora_target_modules == ["all-linear"]:
            return "all-linear"
        return list(self.lora_target_modules)


def lora_quantization_config(
    args: LoraArguments, compute_dtype: torch.dtype = torch.float32
) -> BitsAndBytesConfig | None:
    """The BitsAndBytesConfig to load a QLoRA base with (None when qlora_bits is unset); heads stay in float."""
    if args.qlora_bits is None:
        return None
    # Naming the skipped modules replaces transformers' default skip list, so the LM head is named too. A
    # quantized classification head cannot be trained, and 8-bit heads fail outright on CPU.
    skip = list(dict.fromkeys(HEAD_MODULES + list(args.lora_modules_to_save or [])))
    if args.qlora_bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",  # the QLoRA paper's settings: NF4 with double quantization
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute_dtype,
        llm_int8_skip_modules=skip,
    )


def load_quantized_classifier(
    model_args: ModelArguments,
    labels: Sequence[str],
    args: LoraArguments,
    compute_dtype: torch.dtype = torch.float32,
) -> PreTrainedModel:
    """Load a sequence classifier for `labels` with its base quantized for QLoRA (as load_classifier does in float)."""
    quantization_config = lora_quantization_config(args, compute_dtype)
    if quantization_config is None:
        raise ValueError(
            "load_quantized_classifier needs qlora_bits (4 or 8); use load_classifier for float."
        )
    # The same loading and head handling as in float; the base is quantized on load, the head stays float.
    return load_classifier(model_args, list(labels), quantization_config=quantization_config)


def _is_quantized(model: torch.nn.Module) -> bool:
    return getattr(model, "hf_quantizer", None) is not None


def lora_config(args: LoraArguments, task_type: TaskKind | TaskType | str = TaskType.SEQ_CLS) -> LoraConfig:
    """The PEFT LoraConfig that `args` describe (also what CLMTrainer(peft_config=...) takes)."""
    return LoraConfig(
        r=args.lora_r,
        lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout,
        target_modules=args.target_modules,
        modules_to_save=list(args.lora_modules_to_save) if args.lora_modules_to_save else None,
        task_type=peft_task_type(task_type),
    )


def apply_lora(
    model: PreTrainedModel,
    args: LoraArguments,
    task_type: TaskKind | TaskType | str = TaskType.SEQ_CLS,
    gradient_checkpointing: bool = False,
) -> PeftModel:
    """Wrap `model` with LoRA adapters (base frozen; adapters and the task head trainable) and return it."""
    if isinstance(model, PeftModel):
        raise ValueError(
            "the model already has PEFT adapters: pass the plain transformers model to apply_lora."
        )
    task_type = peft_task_type(task_type)
    if args.qlora_bits is not None and not _is_quantized(model):
        raise ValueError(
            f"qlora_bits={args.qlora_bits} but the model was loaded in float: load it with "
            "quantization_config=lora_quantization_config(args) (or load_quantized_classifier), or unset qlora_bits."
        )
    if _is_quantized(model):
        # Casts the float parts (norms, head) to float32 and lets gradients reach the adapters through
        # the frozen quantized layers; non-reentrant checkpointing is the one torch keeps supporting.
        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    peft_model = get_peft_model(model, lora_config(args, task_type))
    total, trainable = count_parameters(peft_model)
    logger.info(
        "LoRA r=%d on %d layers%s: %s of %s parameters trainable (%.2f%%)",
        args.lora_r,
        len(peft_model.peft_config["default"].target_modules),
        f", base in {args.qlora_bits} bits" if args.qlora_bits else "",
        f"{trainable:,}",
        f"{total:,}",
        100 * trainable / total,
    )
    return peft_model


def merge_and_unload_to(
    model: PeftModel, tokenizer, folder: str | os.PathLike, is_main_process: bool = True
) -> PreTrainedModel:
    """Merge the LoRA adapters into the float base, save a plain transformers model (+ tokenizer), return it."""
    if not isinstance(model, PeftModel):
        raise TypeError(
            f"expected a PeftModel (from apply_lora), got {type(model).__name__}: "
            "a plain model is saved with save_pretrained."
        )
    if _is_quantized(model.get_base_model()):
        raise ValueError(
            "cannot merge LoRA adapters into a quantized (QLoRA) base: the update would be rounded into the "
            "4/8-bit weights. Save the adapter (model.save_pretrained(adapter_folder)), then reload the base in "
            "float and merge there: merge_adapter_into_base(base_folder, adapter_folder, out_folder)."
        )
    merged = model.merge_and_unload()
    merged.save_pretrained(folder, is_main_process=is_main_process)
    if tokenizer is not None and is_main_process:
        tokenizer.save_pretrained(folder)
    return merged


def merge_adapter_into_base(
    base_folder: str,
    adapter_folder: str | os.PathLike,
    out_folder: str | os.PathLike,
    model_class: type | None = None,
    **from_pretrained_kwargs,
) -> PreTrainedModel:
    """Load the base in float, merge a saved LoRA adapter into it and save the plain model to out_folder."""
    if not (Path(adapter_folder) / "adapter_config.json").is_file():
        raise FileNotFoundError(
            f"{adapter_folder} has no adapter_config.json: pass the folder a PeftModel was saved to."
        )
    peft_config = PeftConfig.from_pretrained(str(adapter_folder))
    if model_class is None:
        try:
            model_class = TaskKind.parse(peft_config.task_type).auto_class
        except UserInputError as e:
            raise UserInputError(
                f"adapter task_type {peft_config.task_type!r}: pass model_class (the AutoModel... to load the base)."
            ) from e
    from_pretrained_kwargs.setdefault("trust_remote_code", False)
    base_path = resolve_model_path(base_folder, from_pretrained_kwargs["trust_remote_code"])
    base = model_class.from_pretrained(base_path, **from_pretrained_kwargs)
    if _is_quantized(base):
        raise ValueError(
            f"base {base_folder} loaded quantized (its config or the arguments carry a quantization_config): "
            "merge into the float checkpoint the QLoRA base was quantized from."
        )
    peft_model = PeftModel.from_pretrained(base, str(adapter_folder))
    tokenizer = None
    for source in (str(adapter_folder), base_path):
        if (Path(source) / "tokenizer_config.json").is_file():
            tokenizer = AutoTokenizer.from_pretrained(source)
            break
    else:
        logger.warning(
            "no tokenizer in %s or %s: %s holds the model only.", adapter_folder, base_path, out_folder
        )
    return merge_and_unload_to(peft_model, tokenizer, out_folder)
