"""What every hfkit training config shares: fine-tuning defaults, early stopping, checks, the CPU-DDP patch."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from transformers import TrainingArguments
from transformers.trainer_utils import SchedulerType

from ..errors import UserInputError
from ..losses.core import check_temperature  # noqa: F401 (re-exported: the one check, owned by hfkit.losses)
from .checkpoints import NoTokenOnDisk

# Above this, AdamW fine-tuning does not train: the weights explode within a few steps (seen at 1e6).
MAX_LEARNING_RATE = 1.0


def cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo); empty where they cannot be read."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


# "0": an unset bf16 stays off everywhere (the tests: the same numbers on any CPU).
AUTO_BF16_ENV = "HFKIT_AUTO_BF16"


def native_bf16(on_cpu: bool) -> bool:
    """Whether bf16 runs natively where training will run: a CUDA GPU with bf16, or a CPU with AVX512-BF16 or
    AMX. Elsewhere torch emulates bf16 and autocast is slower than float32, so it stays off."""
    if os.environ.get(AUTO_BF16_ENV, "1").strip().lower() in ("0", "false", "no"):
        return False
    if not on_cpu:
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


@dataclass
class BaseConfig(NoTokenOnDisk, TrainingArguments):
    """`TrainingArguments` with the defaults and checks every hfkit trainer shares (TRL's base-config shape).

    Defaults differ from `TrainingArguments` where fine-tuning practice does: linear warmup then cosine
    decay, gradient clipping at 1.0 (the Trainer's own default). Early stopping is wired by the trainer
    from `early_stopping_patience`. When several processes are launched on a machine without an
    accelerator, `use_cpu` is switched on so that they form one gloo DDP group.
    """

    # The metric early stopping watches when metric_for_best_model is not set.
    default_best_metric: ClassVar[str] = "loss"

    # Overridden defaults.
    learning_rate: float = field(default=5e-5, metadata={"help": "Peak learning rate of AdamW."})
    lr_scheduler_type: SchedulerType | str = field(
        default="cosine", metadata={"help": "Schedule after warmup."}
    )
    warmup_steps: float = field(
        default=0.06, metadata={"help": "Linear warmup: steps (int >= 1) or a fraction of all steps (< 1)."}
    )

    # Early stopping.
    early_stopping_patience: int | None = field(
        default=None,
        metadata={
            "help": "Stop after this many evaluations without improvement of metric_for_best_model "
            "(default: accuracy for classifiers, loss for causal LMs), then reload the best checkpoint. "
            "None: no early stopping."
        },
    )
    early_stopping_threshold: float = field(
        default=0.0, metadata={"help": "Minimum improvement that counts as one, for early stopping."}
    )

    bf16: bool | None = field(
        default=None,
        metadata={
            "help": "bf16 autocast (float32 master weights). Default (unset): on where bf16 runs natively, a CUDA "
            "GPU with bf16 or a CPU with AVX512-BF16/AMX (~2x faster training there, same accuracy: see "
            "benchmarks/RESULTS.md); off elsewhere, where it is emulated and slower (and with HFKIT_AUTO_BF16=0). "
            "true / false force it."
        },
    )

    plot_curves: bool = field(
        default=True,
        metadata={
            "help": "At the end of training, write training_curves.png to output_dir: the training loss (and each "
            "loss component) and the validation metrics per evaluation."
        },
    )

    def __post_init__(self):
        self._check_training_values()
        self._check_early_stopping()
        if (
            not self.use_cpu
            and int(os.environ.get("WORLD_SIZE", "1")) > 1
            and not torch.accelerator.is_available()
        ):
            # Several launched processes and no GPU: without use_cpu each process would silently train its
            # own copy (Trainer's parallel_mode stays NOT_PARALLEL); with it they form one gloo DDP group.
            self.use_cpu = True
        if self.bf16 is None:
            on_cpu = self.use_cpu or not torch.accelerator.is_available()
            self.bf16 = not self.fp16 and native_bf16(on_cpu)
            if self.bf16 and on_cpu:
                self.use_cpu = True  # Trainer takes bf16 on a CPU only with use_cpu
        super().__post_init__()

    def _check_training_values(self) -> None:
        """Refuse values with which Trainer would train nothing, crash late, or diverge at once."""
        if self.num_train_epochs <= 0 and self.max_steps <= 0:
            raise UserInputError(
                f"nothing to train: num_train_epochs is {self.num_train_epochs} and max_steps is {self.max_steps}. "
                "Set num_train_epochs > 0 (e.g. 3) or max_steps > 0 (max_steps wins when both are set)."
            )
        for name in (
            "per_device_train_batch_size",
            "per_device_eval_batch_size",
            "gradient_accumulation_steps",
        ):
            value = getattr(self, name)
            if value < 1:
                raise UserInputError(
                    f"{name} must be >= 1, got {value}. For a larger effective batch without more memory, raise "
                    "gradient_accumulation_steps; to fit memory, lower the batch size (1 is the minimum)."
                )
        if not 0 <= self.learning_rate <= MAX_LEARNING_RATE:
            raise UserInputError(
                f"learning_rate {self.learning_rate} is outside [0, {MAX_LEARNING_RATE}]: AdamW fine-tuning uses 1e-5 "
                "to 5e-4 (5e-5 is the default here); a larger rate makes the weights explode within a few steps. "
                "Set e.g. learning_rate 5e-5."
            )
        if (
            self.output_dir is not None
            and os.path.exists(self.output_dir)
            and not os.path.isdir(self.output_dir)
        ):
            raise UserInputError(
                f"output_dir {self.output_dir!r} is a file, not a folder: pass a folder path (it is "
                "created if missing), or move the file away."
            )

    def _check_early_stopping(self) -> None:
        """Validate early stopping and wire what it needs: evaluations, best-model reload, matching saves."""
        if self.early_stopping_patience is None:
            return
        if self.early_stopping_patience < 1:
            raise UserInputError(
                f"early_stopping_patience must be >= 1 (or None to disable), got {self.early_stopping_patience}."
            )
        if str(self.eval_strategy) == "no":
            raise UserInputError(
                "early_stopping_patience needs evaluations to watch: set eval_strategy to 'epoch' or 'steps'."
            )
        if self.early_stopping_threshold < 0:
            raise UserInputError(
                f"early_stopping_threshold must be >= 0, got {self.early_stopping_threshold}."
            )
        # Early stopping is only useful if the best checkpoint comes back at the end.
        self.load_best_model_at_end = True
        if self.metric_for_best_model is None:
            self.metric_for_best_model = self.default_best_metric
        if str(self.save_strategy) != "best":
            self.save_strategy = self.eval_strategy
            if str(self.eval_strategy) == "steps" and self.eval_steps is not None:
                self.save_steps = self.eval_steps


def check_unit_interval(name: str, value: float, meaning: str) -> None:
    """`name` must lie in [0, 1]; `meaning` says what the value weighs."""
    if not 0.0 <= value <= 1.0:
        raise UserInputError(f"{name} must be in [0, 1] ({meaning}), got {value}.")
