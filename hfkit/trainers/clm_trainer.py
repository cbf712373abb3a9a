"""`CLMTrainer`: fine-tune a causal LM (optionally with LoRA) and distil a teacher LM into it, token by token."""

from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F
from datasets import Dataset
from torch import nn
from transformers import AutoModelForCausalLM, PreTrainedModel

from ..data.lm import (
    TOPK_INDICES,
    TOPK_VALUES,
    LMDataCollator,
    completion_batch,
    lm_pad_token_id,
    policy_prompts,
    retokenize_batch,
)
from ..errors import UserInputError
from ..generation import eos_token_ids
from ..losses import distillation_loss, hard_label_ce, mix_soft_and_hard, uld_loss
from ..metrics import perplexity
from ..teacher_cache import add_teacher_outputs
from .base_trainer import BaseTrainer, check_same_vocabulary, has_columns
from .clm_config import CLMConfig

logger = logging.getLogger(__name__)

__all__ = ["CLMTrainer", "check_vocabularies"]


class CLMTrainer(BaseTrainer):
    """A `transformers.Trainer` for causal-LM fine-tuning and token-level distillation.

    Training loss: the token cross-entropy (``loss_ce``) on positions whose label is not -100, or, with a
    teacher model or cached teacher top-k logits in the training set, ``alpha * T^2 * loss_kd + (1 - alpha)
    * loss_ce`` where ``loss_kd`` is ``args.divergence`` between teacher and student at temperature T
    (`hfkit.losses.token_divergence`); both components are logged, loss_kd before the alpha and T^2 factors.
    Each term is a mean over the label tokens of a micro-batch (gradient accumulation averages micro-batches). The teacher is frozen, placed by the
    accelerator in eval mode, run under ``torch.no_grad`` and never saved. With ``args.teacher_logits_cache`` (and
    ``teacher_topk``) set, the trainer computes (or loads) the teacher's top-k columns at set-up and trains
    without running the teacher. The loss is `hfkit.losses.distillation_loss`, as in `DistillTrainer`. ``peft_config`` (a PEFT
    ``LoraConfig``) wraps the model with ``get_peft_model`` as TRL does; checkpoints then hold the adapter.

    On-policy distillation (GKD): with ``args.lmbda`` > 0, that share of micro-batches (drawn from
    ``args.seed``, the same in every process) is replaced before the step by the student's own continuation of
    each row's prompt (`hfkit.data.lm.policy_prompts`; sampled in eval mode, without gradient checkpointing,
    with the KV cache), and the loss there is ``T^2 * D`` alone: cross-entropy on the student's own samples
    would teach it its mistakes. With ``args.seq_kd`` the other batches are the teacher's continuations
    instead of the data's text (sequence-level KD, the usual mix). Generated tokens are learned up to and
    including the first EOS, found by position (`hfkit.data.lm.completion_batch`), so pad == eos is safe.
    lmbda = 0 without seq_kd is exactly off-policy KD.

    Evaluation: ``eval_loss`` is the student's mean CE over every label token of the evaluation set (token-
    weighted, exact across batches and processes) and ``eval_perplexity`` = exp(eval_loss).
    """

    config_class = CLMConfig
    default_output_dir = "clm_output"
    teacher_auto_class = AutoModelForCausalLM
    cached_teacher_hint = "train from cached teacher top-k columns (teacher_topk + teacher_logits_cache)"
    kept_columns = (TOPK_VALUES, TOPK_INDICES)

    def __init__(
        self,
        model: PreTrainedModel | None = None,
        args: CLMConfig | None = None,
        train_dataset=None,
        eval_dataset=None,
        processing_class=None,
        teacher_model: PreTrainedModel | str | None = None,
        teacher_processing_class=None,
        peft_config=None,
        data_collator=None,
        **kwargs,
    ):
        args = self.check_args(args)
        if model is None:
            raise UserInputError(
                "CLMTrainer needs the model to train: pass model=AutoModelForCausalLM.from_pretrained(path)."
            )
        if not isinstance(model, nn.Module):
            raise TypeError(
                f"model must be a PreTrainedModel, got {type(model).__name__}: load it with "
                "AutoModelForCausalLM.from_pretrained(path) first."
            )
        teacher_model, teacher_processing_class = self.load_teacher(
            teacher_model, model, teacher_processing_class
        )

        cached = has_columns(train_dataset, (TOPK_VALUES, TOPK_INDICES)) is True
        if (
            teacher_model is not None
            and not cached
            and args.teacher_logits_cache is not None
            and isinstance(train_dataset, Dataset)
        ):
            # args.teacher_logits_cache honoured here too (not only by the recipe): the teacher's top-k is
            # computed once (or loaded) and training runs without it. (uld refuses a cache in its config.)
            check_vocabularies(model, teacher_model, processing_class, teacher_processing_class)
            train_dataset = _cache_teacher_topk(args, teacher_model, train_dataset, processing_class)
            teacher_model, cached = None, True
        self._check_teacher_source(args, teacher_model, cached, train_dataset is not None)
        if teacher_model is not None and args.divergence == "uld":
            if processing_class is None or teacher_processing_class is None:
                raise UserInputError(
                    "divergence 'uld' re-tokenizes each batch for the teacher: pass processing_class (the "
                    "student's tokenizer) and teacher_processing_class (the teacher's)."
                )
        elif teacher_model is not None:
            check_vocabularies(model, teacher_model, processing_class, teacher_processing_class)
        self.distilling = teacher_model is not None or cached
        self._cached_topk = cached

        if peft_config is not None:
            model = _wrap_peft(model, peft_config, args)
        if data_collator is None:
            config = getattr(model, "config", None)
            data_collator = LMDataCollator(pad_token_id=lm_pad_token_id(processing_class, config))

        super().__init__(
            model=model,
            args=args,
            data_collator=data_collator,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            teacher_model=teacher_model,
            teacher_processing_class=teacher_processing_class,
            **kwargs,
        )
        # Token-level NLL sums of the running evaluation.
        self._eval_rows: torch.Tensor | None = None
        self._eval_totals: torch.Tensor | None = None
        self._topk_checked = False
        # On-policy / seq_kd: where the current micro-batch's tokens come from ('data', 'student', 'teacher').
        self._batch_source = "data"
        self._policy_draws = 0
        if (args.lmbda > 0 or args.seq_kd) and train_dataset is not None and self.teacher_model is None:
            raise UserInputError(
                "lmbda > 0 / seq_kd need the teacher in the loop (it scores freshly generated tokens): pass "
                "teacher_model, without cached top-k columns."
            )

    # ---- setup checks ----------------------------------------------------------------------------------

    @staticmethod
    def _check_teacher_source(
        args: CLMConfig, teacher: PreTrainedModel | None, cached: bool, training: bool
    ) -> None:
        """A teacher model XOR cached top-k columns (or neither, for plain fine-tuning), consistent with args."""
        if teacher is not None and cached:
            raise UserInputError(
                f"train_dataset has cached teacher top-k columns ({TOPK_VALUES}, {TOPK_INDICES}) and a teacher_model "
                "was passed too: train from one of them (drop teacher_model to save its memory, or the columns)."
            )
        if cached and args.teacher_topk is None:
            raise UserInputError(
                f"train_dataset has cached teacher top-k columns ({TOPK_VALUES}) but teacher_topk is not set: set "
                "teacher_topk to the k they were computed with."
            )
        # Without a train_dataset (an evaluation-only trainer, e.g. scoring the teacher) nothing is distilled.
        if training and args.teacher_topk is not None and teacher is None and not cached:
            raise ValueError(
                f"teacher_topk={args.teacher_topk} but there is no teacher: pass teacher_model, or add cached top-k "
                "columns (hfkit.teacher_cache.lm.add_teacher_topk) to train_dataset, or unset teacher_topk."
            )
        if (teacher is not None or cached) and args.alpha == 0:
            raise UserInputError(
                "alpha=0 gives the teacher no weight (the loss would be plain cross-entropy): set alpha > 0, e.g. "
                "0.5, or train without teacher_model."
            )

    def _parameters_note(self) -> str:
        """Say where the teacher signal comes from, on the start-up parameter line."""
        if not self.distilling:
            return ""
        return "; distilling from " + ("cached teacher top-k" if self._cached_topk else "the teacher")

    # ---- on-policy and sequence-level batches ----------------------------------------------------------

    def training_step(self, model, inputs, num_items_in_batch=None):
        """Trainer's micro-step, on generated tokens when this micro-batch is on-policy (lmbda) or seq_kd."""
        args = self.args
        self._batch_source = "data"
        if self.teacher_model is not None and (args.lmbda > 0 or args.seq_kd):
            # One draw per micro-batch from (seed, count): reproducible, and the same in every process.
            draw = np.random.default_rng([args.seed, self._policy_draws]).random()
            self._policy_draws += 1
            if draw < args.lmbda:
                self._batch_source = "student"
            elif args.seq_kd:
                self._batch_source = "teacher"
        if self._batch_source != "data":
            generator = (
                self.accelerator.unwrap_model(model)
                if self._batch_source == "student"
                else self.teacher_model
            )
            inputs = self.generated_batch(generator, inputs)
            # The next step's num_items_in_batch was counted on the data's labels: recount on these tokens.
            num_items_in_batch = None
        return super().training_step(model, inputs, num_items_in_batch)

    def generated_batch(
        self, generator: nn.Module, inputs: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Replace the batch by `generator`'s continuation of each row's prompt (labels on the continuation)."""
        args = self.args
        config = getattr(generator, "config", None)
        pad_id = lm_pad_token_id(self.processing_class, config)
        prompt_ids, prompt_mask = policy_prompts(inputs, args.prompt_tokens, pad_id)
        eos_ids = eos_token_ids(generator, self.processing_class)
        sampling = args.generation_temperature > 0
        settings = {"max_new_tokens": args.max_new_tokens, "do_sample": sampling, "pad_token_id": pad_id}
        if sampling:
            settings.update(
                temperature=args.generation_temperature,
                top_p=args.generation_top_p,
                top_k=args.generation_top_k,
            )
        if eos_ids:
            settings["eos_token_id"] = eos_ids
        was_training = generator.training
        checkpointing = getattr(generator, "is_gradient_checkpointing", False)
        # Generation in train mode would sample with dropout on; under gradient checkpointing transformers turns
        # the KV cache off. Both are restored for the training forward.
        generator.eval()
        if checkpointing:
            generator.gradient_checkpointing_disable()
        try:
            with torch.no_grad():
                sequences = generator.generate(
                    input_ids=prompt_ids, attention_mask=prompt_mask, use_cache=True, **settings
                )
        finally:
            if checkpointing:
                generator.gradient_checkpointing_enable(
                    gradient_checkpointing_kwargs=args.gradient_checkpointing_kwargs
                )
            generator.train(was_training)
        return completion_batch(sequences, prompt_mask, eos_ids)

    # ---- loss ------------------------------------------------------------------------------------------

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, torch.Tensor],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ):
        """Training: CE, or alpha * T^2 * divergence + (1 - alpha) * CE with a teacher. Evaluation: CE."""
        inputs = dict(inputs)
        topk_values, topk_indices = inputs.pop(TOPK_VALUES, None), inputs.pop(TOPK_INDICES, None)
        labels = inputs.pop("labels", None)
        if labels is None:
            raise UserInputError(
                "the batch has no 'labels': build the data with hfkit.data.lm (labels = input_ids, -100 on tokens "
                "not to learn) and keep the default LMDataCollator."
            )
        # use_cache=False: a training forward needs no KV cache, which would only hold memory.
        outputs = model(**inputs, use_cache=False)
        # Position t predicts token t + 1: drop the last logit and the first label (no cross-row target).
        logits, targets = outputs.logits[:, :-1, :], labels[:, 1:]
        if not model.training:
            loss = self._eval_loss(logits, targets)
            return (loss, outputs) if return_outputs else loss

        args = self.args
        if not self.distilling:
            loss = hard_label_ce(logits, targets)
            self._log_loss_part("ce", loss)
        else:
            parts = self._distillation_loss(inputs, labels, logits, targets, topk_values, topk_indices)
            loss = parts["loss"]
            if self._batch_source == "student":
                # The student's own samples: the divergence alone (T^2 * D), as in GKD; no CE on its own tokens.
                loss = parts["soft"]
            # loss_kd is logged as the divergence itself, before the T^2 and alpha factors of the mix.
            self._log_loss_part("kd", parts["soft"] / (args.temperature**2))
            if self._batch_source != "student":
                self._log_loss_part("ce", parts["hard"])
        return (loss, outputs) if return_outputs else loss

    def _distillation_loss(
        self,
        inputs: dict[str, torch.Tensor],
        labels: torch.Tensor,
        logits: torch.Tensor,
        targets: torch.Tensor,
        topk_values: torch.Tensor | None,
        topk_indices: torch.Tensor | None,
    ) -> dict[str, torch.Tensor]:
        """losses.distillation_loss over the label tokens, the teacher from cached top-k or run now (full or top-k).
        `labels` are the batch's unshifted labels (a teacher of another tokenizer re-reads the rows with them);
        `targets` the shifted ones the logits predict."""
        args = self.args
        if topk_values is not None:
            if not self._topk_checked:
                self._check_cached_topk(topk_indices, logits.shape[-1])
            teacher_logits, teacher_indices = topk_values[:, :-1], topk_indices[:, :-1]
        elif self.teacher_model is None:
            raise UserInputError(
                f"this training batch has no {TOPK_VALUES} column and there is no teacher_model: add the cached "
                "top-k columns to every training row, or pass teacher_model."
            )
        elif args.divergence == "uld":
            return self._uld_loss(inputs, labels, logits, targets)
        else:
            teacher_logits = self._teacher_forward(inputs, use_cache=False).logits[:, :-1, :]
            teacher_indices = None
            if args.teacher_topk is not None:
                top = teacher_logits.topk(args.teacher_topk, dim=-1)
                teacher_logits, teacher_indices = top.values, top.indices
        return distillation_loss(
            logits,
            teacher_logits,
            targets,
            alpha=args.alpha,
            temperature=args.temperature,
            mask=targets != -100,  # prompt and padding tokens teach nothing, in either term
            divergence=args.divergence,
            beta=args.jsd_beta,
            teacher_topk_indices=teacher_indices,
            chunk_size=args.loss_chunk_size,
        )

    def _uld_loss(
        self,
        inputs: dict[str, torch.Tensor],
        labels: torch.Tensor,
        logits: torch.Tensor,
        targets: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """A teacher of another tokenizer: it reads the batch's text in its own ids, and the i-th learned token
        of each row is paired with the teacher's i-th (`hfkit.losses.uld_loss`); the same alpha / T^2 mix."""
        args = self.args
        pad = lm_pad_token_id(self.teacher_processing_class, getattr(self.teacher_model, "config", None))
        other = retokenize_batch(
            {k: inputs[k] for k in ("input_ids", "attention_mask")} | {"labels": labels},
            self.processing_class, self.teacher_processing_class, pad,
        )  # fmt: skip
        teacher_inputs = {"input_ids": other["input_ids"], "attention_mask": other["attention_mask"]}
        self.teacher_model.eval()
        with torch.no_grad():
            teacher_logits = self.teacher_model(**teacher_inputs, use_cache=False).logits[:, :-1, :]
        soft = (args.temperature**2) * uld_loss(
            logits, teacher_logits, targets != -100, other["learned"][:, 1:], args.temperature, args.uld_top_k
        )
        return mix_soft_and_hard(soft, logits, targets, args.alpha, mask=targets != -100)

    def _check_cached_topk(self, indices: torch.Tensor, vocab: int) -> None:
        """Once, on the first cached batch: k matches teacher_topk and every token id fits the student's vocab."""
        k = indices.shape[-1]
        if k != self.args.teacher_topk:
            raise UserInputError(
                f"the cached teacher top-k has k={k} per token but teacher_topk={self.args.teacher_topk}: set "
                f"teacher_topk={k}, or recompute the cache with the k you want."
            )
        largest = int(indices.max())
        if largest >= vocab:
            raise UserInputError(
                f"the cached teacher top-k holds token id {largest} but the student's vocabulary has {vocab} entries: "
                "the cache was computed with another tokenizer/teacher; rebuild it for this student."
            )
        self._topk_checked = True

    # ---- evaluation: exact token-level loss and perplexity ------------------------------------------------

    def _eval_loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean CE of this batch; keeps per-row (NLL sum, token count) so the whole set is token-weighted."""
        per_token = F.cross_entropy(
            logits.float().reshape(-1, logits.shape[-1]),
            targets.reshape(-1),
            ignore_index=-100,
            reduction="none",
        ).view(targets.shape)
        row_nll = per_token.sum(dim=-1)
        row_count = (targets != -100).sum(dim=-1)
        self._eval_rows = torch.stack([row_nll.double(), row_count.double()], dim=-1)
        return row_nll.sum() / row_count.sum().clamp_min(1)

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """Trainer's step, plus the batch's per-row NLL sums gathered across processes (padding rows dropped)."""
        self._eval_rows = None
        output = super().prediction_step(model, inputs, prediction_loss_only, ignore_keys)
        if self._eval_rows is not None and self._eval_totals is not None:
            # gather_for_metrics drops the rows that the distributed sampler repeats to even out the last batch.
            rows = self.accelerator.gather_for_metrics(self._eval_rows)
            self._eval_totals += rows.sum(dim=0).cpu()
        return output

    def evaluation_loop(
        self, dataloader, description, prediction_loss_only=None, ignore_keys=None, metric_key_prefix="eval"
    ):
        """Trainer's loop; `<prefix>_loss` becomes the token-weighted CE and `<prefix>_perplexity` its exp."""
        self._eval_totals = torch.zeros(2, dtype=torch.float64)
        try:
            output = super().evaluation_loop(
                dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix
            )
            nll, count = self._eval_totals.tolist()
        finally:
            self._eval_totals = None
        if count > 0:
            # Trainer's own eval_loss averages per-batch means, which weights a token in a short batch more.
            output.metrics[f"{metric_key_prefix}_loss"] = nll / count
            output.metrics[f"{metric_key_prefix}_perplexity"] = perplexity(nll / count)
            output.metrics[f"{metric_key_prefix}_tokens"] = int(count)
        return output


# ---- helpers ---------------------------------------------------------------------------------------------


def _logit_width(model: nn.Module) -> int:
    """Number of logits per token: the output embedding's rows (may exceed the tokenizer when padded)."""
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    weight = getattr(output, "weight", None)
    if weight is not None:
        return int(weight.shape[0])
    return int(model.config.vocab_size)


def check_vocabularies(student: nn.Module, teacher: nn.Module, tokenizer, teacher_tokenizer) -> None:
    """Token-level distillation compares logits id by id: same logit width and (when known) same tokenizer."""
    fix = (
        "Token-level distillation needs teacher and student to share one tokenizer: use a student of the "
        "teacher's family (e.g. hfkit.student_from_teacher(teacher, layers))."
    )
    s_width, t_width = _logit_width(student), _logit_width(teacher)
    if s_width != t_width:
        raise UserInputError(
            f"vocabulary sizes differ: student has {s_width} logits per token, teacher {t_width}. {fix}"
        )
    check_same_vocabulary(student, teacher, tokenizer, teacher_tokenizer, fix)


def _cache_teacher_topk(args: CLMConfig, teacher: nn.Module, train_dataset: Dataset, tokenizer) -> Dataset:
    """The training set with the teacher's top-k columns, from args.teacher_logits_cache or one teacher pass."""
    device = next(teacher.parameters()).device
    teacher.to(args.device)  # a one-off pass, not a training step: the accelerator is not set up yet
    try:
        with args.main_process_first(desc="teacher top-k"):
            return add_teacher_outputs(
                train_dataset,
                [(teacher, tokenizer)],
                args,
                tokenizer,
                batch_size=args.per_device_eval_batch_size,
                topk=args.teacher_topk,
            )
    finally:
        teacher.to(device)


def _wrap_peft(model: nn.Module, peft_config, args: CLMConfig) -> nn.Module:
    """get_peft_model(model, peft_config), as TRL does; only the adapter weights then train and are saved."""
    from peft import PeftModel, get_peft_model

    if isinstance(model, PeftModel):
        raise UserInputError(
            "model is already a PeftModel and peft_config was passed too: pass the base model with peft_config, "
            "or the PeftModel without it."
        )
    if args.gradient_checkpointing:
        # With a frozen embedding, checkpointed blocks would see inputs without grad and train nothing.
        model.enable_input_require_grads()
    return get_peft_model(model, peft_config)
