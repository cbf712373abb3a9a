"""Training arguments for sequence-classification fine-tuning, with sensible fine-tuning defaults."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from transformers.trainer_utils import IntervalStrategy, SaveStrategy

from ..errors import UserInputError
from .base_config import BaseConfig


@dataclass
class ClassifierConfig(BaseConfig):
    """`BaseConfig` for `ClassifierTrainer`.

    Defaults differ from `TrainingArguments` where fine-tuning practice does: linear warmup over 6% of
    the steps then cosine decay, weight decay 0.01 (the Trainer already excludes bias and LayerNorm),
    gradient clipping at 1.0, evaluation and checkpoint every epoch; early stopping watches accuracy.
    """

    default_best_metric: ClassVar[str] = "accuracy"

    # Overridden defaults.
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

    # Loss.
    class_weights: list[float] | None = field(
        default=None, metadata={"help": "Per-class weights of the cross-entropy, in label-id order."}
    )
    balance_classes: bool = field(
        default=False,
        metadata={"help": "Weight classes by inverse frequency in the training set (n / (K * count))."},
    )

    # Transfer learning.
    head_learning_rate: float | None = field(
        default=None,
        metadata={
            "help": "Peak learning rate of the task head (the parameters outside the base model, e.g. BERT's "
            "`classifier`), on the same warmup/decay schedule; the rest keeps learning_rate. A new or grown head "
            "starts far from its optimum while the pre-trained body needs small steps: e.g. 1e-3 with a body at "
            "5e-5. Default: learning_rate for every parameter."
        },
    )
    freeze_embeddings: bool = field(default=False, metadata={"help": "Do not train the embedding layer."})
    freeze_layers: int = field(default=0, metadata={"help": "Do not train the first N transformer layers."})

    extra_metrics: list[str] | None = field(
        default=None,
        metadata={
            "help": "`evaluate` metric modules computed next to hfkit's own (accuracy, precision, recall, F1, "
            "ROC-AUC) at every evaluation: Hub ids (e.g. matthews_correlation) or local metric scripts/folders. "
            "Their code runs on load: a Hub id needs trust_remote_metrics."
        },
    )
    trust_remote_metrics: bool = field(
        default=False,
        metadata={
            "help": "Allow extra_metrics given by Hub id: evaluate downloads the metric's code from the Hub and "
            "runs it. Off unless you trust those metrics; local metric scripts named by path need no opt-in."
        },
    )

    report_file: str = field(
        default="eval_report.json",
        metadata={
            "help": "File in output_dir for the final evaluation report (metrics + confusion matrix), as JSON; "
            "a Markdown copy is written next to it (same name, .md)."
        },
    )

    def __post_init__(self):
        if self.class_weights is not None:
            if self.balance_classes:
                raise UserInputError("set either class_weights or balance_classes, not both.")
            if any(w <= 0 for w in self.class_weights):
                raise UserInputError(f"class_weights must all be > 0, got {self.class_weights}.")
        if self.head_learning_rate is not None and self.head_learning_rate <= 0:
            raise UserInputError(f"head_learning_rate must be > 0, got {self.head_learning_rate}.")
        if self.freeze_layers < 0:
            raise UserInputError(f"freeze_layers must be >= 0, got {self.freeze_layers}.")
        super().__post_init__()
