"""Training arguments for causal-LM fine-tuning and token-level LM distillation (`CLMTrainer`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import UserInputError
from ..losses import DIVERGENCES, check_temperature
from ..teacher_cache.settings import TeacherCacheArguments
from .base_config import BaseConfig, check_unit_interval


@dataclass
class CLMConfig(TeacherCacheArguments, BaseConfig):
    """`BaseConfig` for `CLMTrainer`: data shape (block_size, packing, completion-only loss), distillation.

    Without a teacher the loss is the token cross-entropy (CE). With a teacher (or cached teacher top-k
    logits) it is ``alpha * T^2 * D(teacher_T, student_T) + (1 - alpha) * CE``, where D is the per-token
    ``divergence`` (forward KL, reverse KL or generalized JSD with ``jsd_beta``) averaged over the tokens that
    have a label. Evaluation reports the student's CE as ``eval_loss`` and ``eval_perplexity``.
    """

    # Overridden defaults (LM fine-tuning practice: short warmup, cosine decay, clipping at 1.0).
    warmup_steps: float = field(
        default=0.05, metadata={"help": "Linear warmup: steps (int >= 1) or a fraction of all steps (< 1)."}
    )
    weight_decay: float = field(
        default=0.0, metadata={"help": "AdamW weight decay (not on bias/norm weights)."}
    )
    per_device_train_batch_size: int = field(default=8, metadata={"help": "Training batch size per device."})
    per_device_eval_batch_size: int = field(default=8, metadata={"help": "Evaluation batch size per device."})
    logging_steps: float = field(default=10, metadata={"help": "Log every N optimizer steps."})

    # Data shape.
    block_size: int = field(
        default=512, metadata={"help": "Tokens per training row (packed block or longest kept example)."}
    )
    packing: bool = field(
        default=True,
        metadata={
            "help": "Concatenate examples (EOS after each) and cut them into full block_size blocks (run_clm). "
            "Off: one example per row, cut (text) or truncated (prompt/response) to block_size and padded."
        },
    )
    completion_only_loss: bool = field(
        default=True,
        metadata={
            "help": "Prompt/response and chat data: learn only the response / assistant tokens (labels -100 on "
            "the prompt). Plain text: every token is learned either way."
        },
    )

    # Distillation.
    temperature: float = field(
        default=1.0,
        metadata={"help": "Softmax temperature of the distillation term; > 0. The term is scaled by T^2."},
    )
    alpha: float = field(
        default=0.5,
        metadata={
            "help": "Weight in [0, 1] of the distillation term when a teacher is present; CE gets 1 - alpha. "
            "Ignored without a teacher (plain fine-tuning)."
        },
    )
    divergence: str = field(
        default="forward_kl",
        metadata={
            "help": "Per-token divergence: 'forward_kl' KL(teacher||student) (mass-covering, classic KD), "
            "'reverse_kl' KL(student||teacher) (mode-seeking, MiniLLM), 'jsd' generalized JSD (jsd_beta).",
            "choices": list(DIVERGENCES),
        },
    )
    jsd_beta: float = field(
        default=0.5,
        metadata={"help": "Beta of divergence='jsd' in [0, 1] (TRL GKD): 0 = forward KL, 1 = reverse KL."},
    )
    teacher_topk: int | None = field(
        default=None,
        metadata={
            "help": "Distil from the teacher's k largest logits per token (both distributions renormalised over "
            "them) instead of the full vocabulary: from cached columns when the dataset has them, else from the "
            "online teacher. None: full logits."
        },
    )

    def __post_init__(self):
        if self.block_size < 2:
            raise UserInputError(
                f"block_size must be >= 2 (each token predicts the next), got {self.block_size}."
            )
        check_temperature(self.temperature, "0.5 to 2")
        check_unit_interval("alpha", self.alpha, "weight of the distillation term; 1 - alpha weights the CE")
        if self.divergence not in DIVERGENCES:
            raise UserInputError(f"divergence must be one of {DIVERGENCES}, got {self.divergence!r}.")
        check_unit_interval("jsd_beta", self.jsd_beta, "0 = forward KL, 1 = reverse KL")
        if self.teacher_topk is not None and self.teacher_topk < 1:
            raise UserInputError(
                f"teacher_topk must be >= 1 (or None for full logits), got {self.teacher_topk}."
            )
        if self.teacher_logits_cache is not None and self.teacher_topk is None:
            raise UserInputError(
                "teacher_logits_cache needs teacher_topk: full-vocabulary logits are too large to cache (one float "
                "per vocabulary entry per token). Set teacher_topk (e.g. 32), or drop teacher_logits_cache."
            )
        super().__post_init__()
