"""What every hfkit Trainer shares: the config check, teacher loading and placement, vocabulary checks,
kept dataset columns, logging of loss components, and the stop on a diverged loss.

Subclasses override as little as possible: `compute_loss` (and `prediction_step` where evaluation differs).
"""

from __future__ import annotations

import inspect
import logging
import os
from collections import defaultdict
from typing import Any, ClassVar

import torch
from torch import nn
from transformers import AutoTokenizer, PreTrainedModel, Trainer

from ..errors import UserInputError
from ..modeling import count_parameters, resolve_model_path, same_vocabulary
from .base_config import BaseConfig
from .callbacks import DivergenceGuard, config_callbacks
from .checkpoints import AtomicCheckpointMixin

logger = logging.getLogger(__name__)

__all__ = ["BaseTrainer", "check_same_vocabulary", "has_columns", "try_load_tokenizer"]

_SPECIAL_TOKEN_IDS = ("pad_token_id", "bos_token_id", "eos_token_id", "sep_token_id", "cls_token_id")


class BaseTrainer(AtomicCheckpointMixin, Trainer):
    """A `transformers.Trainer` with what every hfkit trainer adds (TRL's base-trainer shape).

    - `args` must be an instance of the subclass's `config_class` (a `BaseConfig`); None builds its defaults.
    - Callbacks the config asks for (early stopping) are added to the caller's.
    - An optional teacher (a model, or a path loaded with `teacher_auto_class` in the student's dtype) is
      frozen, put in eval mode and placed by the accelerator (never wrapped in DDP, never checkpointed).
    - Columns in `kept_columns` survive `remove_unused_columns` (e.g. cached teacher logits).
    - Loss components recorded with `_log_loss_part` are averaged since the last log and logged as
      `loss_<name>` next to `loss`, with one collective per log across processes.
    - A NaN/inf training loss (or NaN/inf weights before a checkpoint) stops the run with a message that
      names the step, the loss components and the learning rate (`callbacks.DivergenceGuard`), before
      anything non-finite is checkpointed, without a host sync per step.
    - A dataset that is not tokenized is refused up front.
    """

    config_class: ClassVar[type[BaseConfig]] = BaseConfig
    default_output_dir: ClassVar[str] = "trainer_output"
    # Loads a teacher given as a path (an AutoModelFor... class); None: this trainer takes no teacher.
    teacher_auto_class: ClassVar[Any] = None
    # How to train without a live teacher, for the error when one cannot be placed (DeepSpeed).
    cached_teacher_hint: ClassVar[str] = "train without a teacher"
    # Dataset columns that are not forward arguments but that compute_loss reads.
    kept_columns: ClassVar[tuple[str, ...]] = ()

    # compute_loss returns a per-(micro-)batch mean: let Trainer divide it for gradient accumulation.
    loss_is_scaled_for_ga = False
    # Student id -> teacher id, for a teacher that cuts text into the student's pieces under other ids
    # (hfkit.data.token_alignment); None: the teacher reads the student's ids as they are.
    teacher_token_map: torch.Tensor | None = None

    def __init__(
        self,
        model: nn.Module | None = None,
        args: BaseConfig | None = None,
        callbacks: list | None = None,
        teacher_model: PreTrainedModel | None = None,
        teacher_processing_class=None,
        **kwargs,
    ):
        args = self.check_args(args)
        if args.remove_unused_columns:
            # Only with remove_unused_columns off can a collator see (and tokenize) raw text columns.
            _check_tokenized(kwargs.get("train_dataset"), "train_dataset")
            _check_tokenized(kwargs.get("eval_dataset"), "eval_dataset")
        self.divergence_guard = DivergenceGuard(self)
        callbacks = [*(callbacks or []), *config_callbacks(args), self.divergence_guard]
        super().__init__(model=model, args=args, callbacks=callbacks, **kwargs)
        self.teacher_processing_class = teacher_processing_class
        self.teacher_model = self._prepare_teacher(teacher_model) if teacher_model is not None else None
        # Sums of each loss component (and their weights) since the last log, reduced by `log`.
        self._loss_parts: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = defaultdict(list)
        total, trainable = count_parameters(self.model)
        self.param_counts = {"total": total, "trainable": trainable}
        if self.is_world_process_zero():
            logger.info(
                "parameters: %s total, %s trainable (%.2f%%)%s",
                f"{total:,}",
                f"{trainable:,}",
                100 * trainable / max(total, 1),
                self._parameters_note(),
            )

    # ---- set-up --------------------------------------------------------------------------------------------

    @classmethod
    def check_args(cls, args: BaseConfig | None) -> BaseConfig:
        """The subclass's config (its defaults when None); refuses plain TrainingArguments with the fix."""
        config = cls.config_class
        if args is None:
            return config(output_dir=cls.default_output_dir)
        if not isinstance(args, config):
            raise TypeError(
                f"args must be {'an' if config.__name__[0] in 'AEIOU' else 'a'} {config.__name__}, got "
                f"{type(args).__name__}: "
                f"build {config.__name__}(...) with the same fields instead of {type(args).__name__}(...)."
            )
        return args

    @classmethod
    def load_teacher(
        cls,
        teacher: PreTrainedModel | str | os.PathLike | None,
        student: nn.Module | None,
        teacher_tokenizer=None,
    ) -> tuple[PreTrainedModel | None, Any]:
        """Load a teacher given as a path (in the student's dtype) with its tokenizer; check a given model's type."""
        if isinstance(teacher, (str, os.PathLike)):
            path = resolve_model_path(str(teacher))
            kwargs = {}
            if student is not None:
                # Same dtype as the student, so one precision setting (bf16/fp16 autocast) governs both.
                kwargs["dtype"] = next(student.parameters()).dtype
            # trust_remote_code stays off: a teacher path must not run code from its folder.
            teacher = cls.teacher_auto_class.from_pretrained(path, trust_remote_code=False, **kwargs)
            if teacher_tokenizer is None:
                teacher_tokenizer = try_load_tokenizer(path)
        if teacher is not None and not isinstance(teacher, PreTrainedModel):
            raise TypeError(
                f"teacher_model must be a PreTrainedModel or a path, got {type(teacher).__name__}."
            )
        return teacher, teacher_tokenizer

    def _prepare_teacher(self, teacher: PreTrainedModel) -> nn.Module:
        """Freeze the teacher and let the accelerator place it: eval mode, no gradients, never wrapped in DDP."""
        shared = {id(p) for p in teacher.parameters()} & {id(p) for p in self.model.parameters()}
        if shared:
            raise UserInputError(
                "the teacher shares parameters with the student, so freezing the teacher would freeze them in "
                "the student too; build the student as an independent copy (e.g. hfkit.student_from_teacher)."
            )
        self._teacher_arg_names = set(inspect.signature(teacher.forward).parameters)
        teacher.eval()
        teacher.requires_grad_(False)
        if self.is_deepspeed_enabled:
            raise UserInputError(
                f"{type(self).__name__} does not place an online teacher under DeepSpeed; use DDP/FSDP, or "
                f"{self.cached_teacher_hint}."
            )
        # evaluation_mode=True: on the device and under the student's mixed-precision autocast, but never
        # wrapped in DDP, since it has no gradients to synchronise. One place decides device and precision.
        return self.accelerator.prepare_model(teacher, evaluation_mode=True)

    def unwrapped(self, model: nn.Module | None = None) -> nn.Module:
        """`model` (default: the trained one; an online teacher went through the accelerator too) as a user loads
        it from disk: without the mixed-precision forward wrapper that accelerate puts on it for bf16/fp16
        training, which would keep autocast on in later timing or scoring. Removed in place: call after training."""
        return self.accelerator.unwrap_model(self.model if model is None else model, keep_fp32_wrapper=False)

    def _parameters_note(self) -> str:
        """Extra words for the start-up parameter-count line (e.g. where the teacher signal comes from)."""
        return ""

    def _set_signature_columns_if_needed(self) -> None:
        """Keep `kept_columns`, which are not forward arguments, through remove_unused_columns."""
        super()._set_signature_columns_if_needed()
        for name in self.kept_columns:
            if name not in self._signature_columns:
                self._signature_columns.append(name)

    # ---- training ------------------------------------------------------------------------------------------

    def _teacher_forward(self, inputs: dict[str, torch.Tensor], **extra) -> Any:
        """The frozen teacher on the student's batch (only the arguments its forward takes), without grad; its
        input_ids translated to the teacher's vocabulary when the two tokenizers cut text alike under other ids."""
        self.teacher_model.eval()
        teacher_inputs = {k: v for k, v in inputs.items() if k in self._teacher_arg_names}
        if self.teacher_token_map is not None and "input_ids" in teacher_inputs:
            ids = teacher_inputs["input_ids"]
            if self.teacher_token_map.device != ids.device:
                self.teacher_token_map = self.teacher_token_map.to(ids.device)
            teacher_inputs["input_ids"] = self.teacher_token_map[ids]
        with torch.no_grad():
            return self.teacher_model(**teacher_inputs, **extra)

    def _log_loss_part(self, name: str, value: torch.Tensor, weight: torch.Tensor | float = 1.0) -> None:
        """Record one micro-batch's loss component; `log` adds the weighted mean since the last log."""
        if isinstance(weight, torch.Tensor):
            weight = weight.to(device=value.device, dtype=torch.float32)
        else:  # a fill kernel, not a copy from host memory: no wait for the device
            weight = torch.full((), float(weight), dtype=torch.float32, device=value.device)
        self._loss_parts[name].append((value.detach().float() * weight, weight))

    def training_step(self, model, inputs, num_items_in_batch=None):
        """Trainer's micro-step; its loss goes to the divergence guard (kept on the device, no sync)."""
        loss = super().training_step(model, inputs, num_items_in_batch)
        # global_step counts finished optimizer steps: this micro-batch belongs to the next one. The lr and
        # the components are this micro-batch's, kept for the message in case this loss is the first bad one.
        parts = {name: values[-1] for name, values in self._loss_parts.items() if values}
        lr = self.lr_scheduler.get_last_lr()[0] if self.lr_scheduler is not None else None
        self.divergence_guard.observe(loss, self.state.global_step + 1, lr, parts)
        return loss

    # ---- logging -------------------------------------------------------------------------------------------

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add each recorded loss component as loss_<name>, averaged since the last training log."""
        # Only training logs carry "loss" (evaluation logs have "eval_loss", the final summary "train_loss").
        if "loss" in logs and self._loss_parts:
            names = sorted(self._loss_parts)
            sums = torch.stack([torch.stack([v for v, _ in self._loss_parts[n]]).sum() for n in names])
            weights = torch.stack([torch.stack([w for _, w in self._loss_parts[n]]).sum() for n in names])
            totals = torch.cat([sums, weights])
            if self.accelerator.num_processes > 1:
                # One collective per log, not per step; every process logs the same components.
                totals = self.accelerator.gather(totals).view(-1, totals.numel()).sum(dim=0)
            sums, weights = totals.split(len(names))
            for name, total, weight in zip(names, sums.tolist(), weights.tolist(), strict=True):
                if weight > 0:
                    logs[f"loss_{name}"] = total / weight
            self._loss_parts.clear()
        super().log(logs, start_time)


# ---- helpers shared by the trainers ----------------------------------------------------------------------


def has_columns(dataset, names: tuple[str, ...] | list[str]) -> bool | None:
    """True/False if the dataset's columns are known (no dataset: False), None if not (an IterableDataset)."""
    if dataset is None:
        return False
    columns = getattr(dataset, "column_names", None)
    if columns is None:
        return None
    return all(name in columns for name in names)


def _check_tokenized(dataset, name: str) -> None:
    """Refuse a dataset (or a dict of them) whose known columns hold no input_ids: it was never tokenized."""
    if isinstance(dataset, dict):
        for key, value in dataset.items():
            _check_tokenized(value, f"{name}[{key!r}]")
        return
    columns = getattr(dataset, "column_names", None)
    if not columns or "input_ids" in columns or "inputs_embeds" in columns:
        return
    raise UserInputError(
        f"{name} has columns {list(columns)} but no 'input_ids': it is not tokenized. Tokenize it first, e.g. "
        "dataset.map(lambda batch: tokenizer(batch['text'], truncation=True), batched=True) (for classification "
        "data hfkit.tokenize_dataset does it; for causal LMs hfkit.load_lm_data), or pass "
        "remove_unused_columns=False with a data_collator that tokenizes."
    )


def try_load_tokenizer(path: str):
    """The tokenizer saved with a teacher folder, or None if it has none (only used for the vocab check)."""
    try:
        return AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    except (OSError, ValueError):
        return None


def check_same_vocabulary(student, teacher, tokenizer, teacher_tokenizer, fix: str) -> None:
    """The teacher runs on the student's token ids: same vocabulary (tokenizers), else same config ids."""
    if hasattr(tokenizer, "get_vocab") and hasattr(teacher_tokenizer, "get_vocab"):
        if not same_vocabulary(tokenizer, teacher_tokenizer):
            s_vocab, t_vocab = tokenizer.get_vocab(), teacher_tokenizer.get_vocab()
            differ = sorted(set(s_vocab.items()) ^ set(t_vocab.items()), key=str)[:5]
            raise UserInputError(
                f"tokenizers differ: student vocab has {len(s_vocab)} tokens, teacher vocab {len(t_vocab)} "
                f"(e.g. {differ} are not shared). {fix}"
            )
        return
    s_config, t_config = student.config, teacher.config
    mismatches = []
    if getattr(s_config, "vocab_size", None) != getattr(t_config, "vocab_size", None):
        mismatches.append(f"vocab_size {s_config.vocab_size} vs {t_config.vocab_size}")
    for name in _SPECIAL_TOKEN_IDS:
        s_id, t_id = getattr(s_config, name, None), getattr(t_config, name, None)
        if s_id != t_id:
            mismatches.append(f"{name} {s_id} vs {t_id}")
    if mismatches:
        raise UserInputError(
            f"tokenizers differ (student vs teacher config): {', '.join(mismatches)}. {fix} If the tokenizers "
            "are in fact the same, pass processing_class and teacher_processing_class so their vocabularies are "
            "compared instead of the configs."
        )
