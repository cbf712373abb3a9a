"""Training arguments for causal-LM fine-tuning and token-level LM distillation (`CLMTrainer`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import UserInputError
from ..losses import DIVERGENCES, check_temperature
from ..teacher_cache.settings import TeacherCacheArguments
from .base_config import BaseConfig, check_unit_interval

# Token divergences of CLMConfig.divergence: those of hfkit.losses, and ULD across tokenizers.
CLM_DIVERGENCES = (*DIVERGENCES, "uld")


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
            "'reverse_kl' KL(student||teacher) (mode-seeking, MiniLLM), 'jsd' generalized JSD (jsd_beta), "
            "'uld' Universal Logit Distillation: a teacher with ANOTHER tokenizer and vocabulary (each model "
            "reads the text in its own tokens; sorted-probability Wasserstein distance, Boizard et al. 2024).",
            "choices": list(CLM_DIVERGENCES),
        },
    )
    jsd_beta: float = field(
        default=0.5,
        metadata={"help": "Beta of divergence='jsd' in [0, 1] (TRL GKD): 0 = forward KL, 1 = reverse KL."},
    )
    uld_top_k: int | None = field(
        default=None,
        metadata={
            "help": "divergence='uld' only: compare each side's k largest probabilities and then the two tails "
            "by their masses, instead of sorting every probability (a 152k-entry sort per position is what "
            "makes ULD slow on a CPU). None: exact. Its cost in loss and gradient: benchmarks/uld_top_k.py."
        },
    )
    teacher_topk: int | None = field(
        default=None,
        metadata={
            "help": "Distil from the teacher's k largest logits per token (both distributions renormalised over "
            "them) instead of the full vocabulary: from cached columns when the dataset has them, else from the "
            "online teacher. None: full logits."
        },
    )

    loss_chunk_size: int | None = field(
        default=None,
        metadata={
            "help": "Compute the token divergence over this many positions at a time (e.g. 1024), recomputed in "
            "the backward pass: the same loss, with its float32 intermediates bounded to one chunk (large "
            "vocabularies). None: all positions at once."
        },
    )

    # On-policy and sequence-level distillation (GKD, Agarwal et al. 2024; TRL's GKDTrainer).
    lmbda: float = field(
        default=0.0,
        metadata={
            "help": "Share in [0, 1] of training batches on which the student first generates the continuation of "
            "each row's prompt and is distilled on its own tokens (on-policy; loss T^2 * divergence, no CE). "
            "0: off-policy KD on the data's text. Needs a live teacher (no cached top-k)."
        },
    )
    seq_kd: bool = field(
        default=False,
        metadata={
            "help": "Sequence-level KD: the batches that are not on-policy train on text the teacher generates "
            "from the prompts (the usual alpha mix of divergence and CE on the teacher's tokens)."
        },
    )
    max_new_tokens: int = field(
        default=64,
        metadata={"help": "Tokens generated per row on on-policy / seq_kd batches (stops at EOS)."},
    )
    prompt_tokens: int = field(
        default=64,
        metadata={
            "help": "Plain-text rows have no prompt: their first prompt_tokens tokens are the prompt that the "
            "student (lmbda) or teacher (seq_kd) continues. Prompt/response and chat rows use their prompt."
        },
    )
    generation_temperature: float = field(
        default=1.0,
        metadata={"help": "Sampling temperature of on-policy / seq_kd generation; 0 = greedy."},
    )
    generation_top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling of that generation."})
    generation_top_k: int = field(default=0, metadata={"help": "Top-k sampling of that generation (0: off)."})

    def __post_init__(self):
        if self.block_size < 2:
            raise UserInputError(
                f"block_size must be >= 2 (each token predicts the next), got {self.block_size}."
            )
        check_temperature(self.temperature, "0.5 to 2")
        check_unit_interval("alpha", self.alpha, "weight of the distillation term; 1 - alpha weights the CE")
        if self.divergence not in CLM_DIVERGENCES:
            raise UserInputError(f"divergence must be one of {CLM_DIVERGENCES}, got {self.divergence!r}.")
        if self.divergence == "uld" and (
            self.teacher_topk is not None or self.lmbda > 0 or self.seq_kd or self.teacher_logits_cache
        ):
            raise UserInputError(
                "divergence 'uld' (a teacher of another tokenizer) reads the teacher's full distribution on the "
                "text in its own tokens, live: unset teacher_topk / teacher_logits_cache, and set lmbda: 0, "
                "seq_kd: false."
            )
        if self.uld_top_k is not None and (self.divergence != "uld" or self.uld_top_k < 1):
            raise UserInputError(
                f"uld_top_k={self.uld_top_k} applies to divergence 'uld' only and must be >= 1: unset it, or "
                "set divergence: uld."
            )
        if self.loss_chunk_size is not None and self.loss_chunk_size < 1:
            raise UserInputError(f"loss_chunk_size must be >= 1 (or None), got {self.loss_chunk_size}.")
        check_unit_interval("jsd_beta", self.jsd_beta, "0 = forward KL, 1 = reverse KL")
        if self.teacher_topk is not None and self.teacher_topk < 1:
            raise UserInputError(
                f"teacher_topk must be >= 1 (or None for full logits), got {self.teacher_topk}."
            )
        check_unit_interval("lmbda", self.lmbda, "share of batches generated by the student")
        for name in ("max_new_tokens", "prompt_tokens"):
            if getattr(self, name) < 1:
                raise UserInputError(f"{name} must be >= 1, got {getattr(self, name)}.")
        if self.generation_temperature < 0:
            raise UserInputError(
                f"generation_temperature must be >= 0 (0 = greedy), got {self.generation_temperature}."
            )
        if not 0 < self.generation_top_p <= 1:
            raise UserInputError(f"generation_top_p must be in (0, 1], got {self.generation_top_p}.")
        if (self.lmbda > 0 or self.seq_kd) and self.teacher_logits_cache is not None:
            raise UserInputError(
                "lmbda > 0 / seq_kd distil on freshly generated tokens, which no cache holds: drop "
                "teacher_logits_cache (the teacher then runs in every step), or set lmbda: 0 and seq_kd: false."
            )
        if self.teacher_logits_cache is not None and self.teacher_topk is None:
            raise UserInputError(
                "teacher_logits_cache needs teacher_topk: full-vocabulary logits are too large to cache (one float "
                "per vocabulary entry per token). Set teacher_topk (e.g. 32), or drop teacher_logits_cache."
            )
        super().__post_init__()
