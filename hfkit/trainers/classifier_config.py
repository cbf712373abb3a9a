"""Training arguments for sequence-classification fine-tuning, with sensible fine-tuning defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
from transformers import TrainingArguments
from transformers.trainer_utils import IntervalStrategy, SaveStrategy, SchedulerType


@dataclass
class ClassifierConfig(TrainingArguments):
    """`TrainingArguments` for `ClassifierTrainer`.

    Defaults differ from `TrainingArguments` where fine-tuning practice does: linear warmup over 6% of
    the steps then cosine decay, weight decay 0.01 (the Trainer already excludes bias and LayerNorm),
    gradient clipping at 1.0, evaluation and checkpoint every epoch.
    """

    # Overridden defaults.
    learning_rate: float = field(default=5e-5, metadata={"help": "Peak learning rate of AdamW."})
    lr_scheduler_type: SchedulerType | str = field(
        default="cosine", metadata={"help": "Schedule after warmup."}
    )
    warmup_steps: float = field(
        default=0.06, metadata={"help": "Linear warmup: steps (int >= 1) or a fraction of all steps (< 1)."}
    )
    weight_decay: float = field(
        default=0.01, metadata={"help": "AdamW weight decay (not on bias/LayerNorm)."}
    )
    num_train_epochs: float = field(default=3.0, metadata={"help": "Number of training epochs."})
    per_device_train_batch_size: int = field(default=32, metadata={"help": "Training batch size per device."})
    per_device_eval_batch_size: int = field(
        default=64, metadata={"help": "Evaluation batch size per device."}
    )
    eval_strategy: IntervalStrategy | str = field(
        default="epoch", metadata={"help": "When to evaluate: 'no', 'steps', 'epoch'."}
    )
    save_strategy: SaveStrategy | str = field(
        default="epoch", metadata={"help": "When to save: 'no', 'steps', 'epoch', 'best'."}
    )
    save_total_limit: int | None = field(default=2, metadata={"help": "Keep at most this many checkpoints."})
    logging_steps: float = field(default=50, metadata={"help": "Log every N optimizer steps."})

    # Early stopping.
    early_stopping_patience: int | None = field(
        default=None,
        metadata={
            "help": "Stop after this many evaluations without improvement of metric_for_best_model "
            "(default metric: accuracy), then reload the best checkpoint. None: no early stopping."
        },
    )
    early_stopping_threshold: float = field(
        default=0.0, metadata={"help": "Minimum improvement that counts as one, for early stopping."}
    )

    # Loss.
    class_weights: list[float] | None = field(
        default=None, metadata={"help": "Per-class weights of the cross-entropy, in label-id order."}
    )
    balance_classes: bool = field(
        default=False,
        metadata={"help": "Weight classes by inverse frequency in the training set (n / (K * count))."},
    )

    # Transfer learning.
    freeze_embeddings: bool = field(default=False, metadata={"help": "Do not train the embedding layer."})
    freeze_layers: int = field(default=0, metadata={"help": "Do not train the first N transformer layers."})

    report_file: str = field(
        default="eval_report.json",
        metadata={"help": "File in output_dir for the final evaluation report (metrics + confusion matrix)."},
    )

    def __post_init__(self):
        if self.early_stopping_patience is not None:
            if self.early_stopping_patience < 1:
                raise ValueError(
                    f"early_stopping_patience must be >= 1 (or None to disable), got {self.early_stopping_patience}."
                )
            if str(self.eval_strategy) == "no":
                raise ValueError(
                    "early_stopping_patience needs evaluations to watch: set eval_strategy to 'epoch' or 'steps'."
                )
            if self.early_stopping_threshold < 0:
                raise ValueError(
                    f"early_stopping_threshold must be >= 0, got {self.early_stopping_threshold}."
                )
            # Early stopping is only useful if the best checkpoint comes back at the end.
            self.load_best_model_at_end = True
            if self.metric_for_best_model is None:
                self.metric_for_best_model = "accuracy"
            if str(self.save_strategy) != "best":
                self.save_strategy = self.eval_strategy
                if str(self.eval_strategy) == "steps" and self.eval_steps is not None:
                    self.save_steps = self.eval_steps
        if self.class_weights is not None:
            if self.balance_classes:
                raise ValueError("set either class_weights or balance_classes, not both.")
            if any(w <= 0 for w in self.class_weights):
                raise ValueError(f"class_weights must all be > 0, got {self.class_weights}.")
        if (
            not self.use_cpu
            and int(os.environ.get("WORLD_SIZE", "1")) > 1
            and not torch.accelerator.is_available()
        ):
            # Several launched processes and no GPU: without use_cpu each process would silently train its
            # own copy (Trainer's parallel_mode stays NOT_PARALLEL); with it they form one gloo DDP group.
            self.use_cpu = True
        if self.freeze_layers < 0:
            raise ValueError(f"freeze_layers must be >= 0, got {self.freeze_layers}.")
        super().__post_init__()
