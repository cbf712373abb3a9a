"""What every hfkit training config shares: fine-tuning defaults, early stopping, checks, the CPU-DDP patch."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from transformers import TrainingArguments
from transformers.trainer_utils import SchedulerType

from ..errors import UserInputError
from .checkpoints import NoTokenOnDisk

# Above this, AdamW fine-tuning does not train: the weights explode within a few steps (seen at 1e6).
MAX_LEARNING_RATE = 1.0


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


def check_temperature(value: float, typical: str) -> None:
    """A distillation temperature must be > 0; `typical` names the usual range."""
    if not value > 0:
        raise UserInputError(f"temperature must be > 0, got {value}; typical values are {typical}.")


def check_unit_interval(name: str, value: float, meaning: str) -> None:
    """`name` must lie in [0, 1]; `meaning` says what the value weighs."""
    if not 0.0 <= value <= 1.0:
        raise UserInputError(f"{name} must be in [0, 1] ({meaning}), got {value}.")
