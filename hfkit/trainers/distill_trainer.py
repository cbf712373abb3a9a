"""`DistillTrainer`: distil a sequence-classification teacher into a smaller student (DistilBERT/TinyBERT/MiniLM)."""

from __future__ import annotations

import logging
import os

import safetensors.torch
import torch
from torch import nn
from transformers import PreTrainedModel

from ..errors import UserInputError
from ..losses import (
    attention_loss,
    distillation_loss,
    hard_label_ce,
    hidden_state_loss,
    hidden_to_attention_map,
    make_projections,
    uniform_layer_map,
)
from .base_trainer import check_same_vocabulary, has_columns
from .classifier_trainer import ClassifierTrainer
from .distill_config import DistillConfig

logger = logging.getLogger(__name__)

__all__ = ["PROJECTIONS_FILE", "PROJECTIONS_NAME", "TEACHER_LOGITS", "DistillTrainer"]

TEACHER_LOGITS = "teacher_logits"
# Submodule name of the learned hidden-state projections on the student, and the file they are saved to.
PROJECTIONS_NAME = "distill_projections"
PROJECTIONS_FILE = f"{PROJECTIONS_NAME}.safetensors"


class DistillTrainer(ClassifierTrainer):
    """A `ClassifierTrainer` whose training loss distils a frozen teacher into the student.

    Training loss: ``alpha * soft KL(T) + (1 - alpha) * hard CE`` (losses.distillation_loss; rows labelled
    -100 get the soft term only), plus optional hidden-state and attention-map losses over a layer map.
    The teacher is either a model (or a path to one) run under ``torch.no_grad`` in every step, or absent
    when the training set carries a ``teacher_logits`` column of precomputed logits. Evaluation loss and
    metrics are the student's own, exactly as in `ClassifierTrainer`. Checkpoints hold the student only;
    learned projections (student and teacher widths differ) go to ``distill_projections.safetensors``.

    Side effects on the models passed in: the teacher is put in eval mode with ``requires_grad_(False)``;
    with the attention loss on, both switch to eager attention (SDPA returns no attention maps); with the
    hidden loss on and different widths, the student gets a ``distill_projections`` submodule. Precision is
    decided in one place: the accelerator wraps both forwards in its mixed-precision autocast.
    """

    config_class = DistillConfig
    default_output_dir = "distill_output"
    cached_teacher_hint = "train from a cached 'teacher_logits' column with teacher_model=None"
    kept_columns = (TEACHER_LOGITS,)

    def __init__(
        self,
        model: PreTrainedModel | None = None,
        teacher_model: PreTrainedModel | str | None = None,
        args: DistillConfig | None = None,
        train_dataset=None,
        eval_dataset=None,
        processing_class=None,
        teacher_processing_class=None,
        **kwargs,
    ):
        args = self.check_args(args)
        if model is None:
            raise UserInputError("DistillTrainer needs the student: pass model=<PreTrainedModel>.")
        teacher_model, teacher_processing_class = self.load_teacher(
            teacher_model, model, teacher_processing_class
        )
        self.use_hidden_loss = args.hidden_loss_weight > 0
        self.use_attention_loss = args.attention_loss_weight > 0

        has_cached = has_columns(train_dataset, (TEACHER_LOGITS,))
        self._check_teacher_source(teacher_model, has_cached)
        self._check_labels(model, teacher_model, train_dataset if has_cached else None)
        # The teacher sees the student's input_ids whenever it runs, so the vocabularies must agree then.
        if teacher_model is not None and (self.use_hidden_loss or self.use_attention_loss or not has_cached):
            _check_tokenizers(model, teacher_model, processing_class, teacher_processing_class)
        self.hidden_layer_map: list[tuple[int, int]] = []
        self.attention_layer_map: list[tuple[int, int]] = []
        if self.use_hidden_loss or self.use_attention_loss:
            self._resolve_layer_maps(model, teacher_model, args)
        if self.use_attention_loss:
            for m in (model, teacher_model):
                _use_eager_attention(m)
        if self.use_hidden_loss:
            self._attach_projections(model, teacher_model, args.seed)

        super().__init__(
            model=model,
            args=args,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            teacher_model=teacher_model,
            teacher_processing_class=teacher_processing_class,
            **kwargs,
        )

    # ---- setup checks ----------------------------------------------------------------------------------

    def _check_teacher_source(self, teacher: PreTrainedModel | None, has_cached: bool | None) -> None:
        """Need a teacher model or cached logits; hidden/attention losses need the model itself."""
        if teacher is None and has_cached is False:
            raise UserInputError(
                "no teacher: pass teacher_model=<model or path>, or add a 'teacher_logits' column "
                "(one row of num_labels floats per example, e.g. from teacher_logits_cache) to train_dataset."
            )
        if teacher is None and (self.use_hidden_loss or self.use_attention_loss):
            raise UserInputError(
                "hidden_loss_weight / attention_loss_weight need the teacher's hidden states, which cached "
                "teacher_logits do not hold: pass teacher_model, or set hidden_loss_weight=0 and "
                "attention_loss_weight=0 for logit-only distillation from the cache."
            )

    def _check_labels(
        self, student: PreTrainedModel, teacher: PreTrainedModel | None, cached_dataset
    ) -> None:
        """Teacher and student heads must predict the same classes in the same order."""
        s_config = student.config
        if teacher is not None:
            t_config = teacher.config
            s_names, t_names = _label_names(s_config), _label_names(t_config)
            # Generic LABEL_i names carry no meaning, so only two sets of real names can disagree in order.
            named_both = not (_generic_names(s_names) or _generic_names(t_names))
            if s_config.num_labels != t_config.num_labels or (named_both and s_names != t_names):
                raise UserInputError(
                    f"label sets differ: teacher has {t_config.num_labels} labels {t_names}, student has "
                    f"{s_config.num_labels} labels {s_names}. Fine-tune the teacher on the same labels (same "
                    "order) as the student, or build the student with the teacher's id2label/label2id."
                )
        if cached_dataset is not None and hasattr(cached_dataset, "__getitem__"):
            try:
                width = len(cached_dataset[0][TEACHER_LOGITS])
            except (TypeError, KeyError, IndexError):
                return
            if width != s_config.num_labels:
                raise UserInputError(
                    f"label sets differ: the teacher_logits column has {width} values per row but the student "
                    f"has {s_config.num_labels} labels. Cache logits of a teacher fine-tuned on the same labels."
                )

    def _resolve_layer_maps(
        self, student: PreTrainedModel, teacher: PreTrainedModel, args: DistillConfig
    ) -> None:
        """Turn args.layer_pairs (or 'uniform') into validated hidden-state and attention layer maps."""
        n_teacher, n_student = teacher.config.num_hidden_layers, student.config.num_hidden_layers
        pairs = args.layer_pairs or uniform_layer_map(n_teacher, n_student)
        bad = [(t, s) for t, s in pairs if not (0 <= t <= n_teacher and 0 <= s <= n_student)]
        if bad:
            raise UserInputError(
                f"layer_map {args.layer_map!r}: pairs {bad} are out of range; in hidden-state indexing the teacher "
                f"has indices 0..{n_teacher} and the student 0..{n_student} (0 = embeddings). Fix layer_map or "
                "use layer_map='uniform'."
            )
        self.hidden_layer_map = list(pairs)
        if self.use_attention_loss:
            try:
                attention_pairs = hidden_to_attention_map(pairs)
            except ValueError as err:
                raise UserInputError(
                    f"layer_map {args.layer_map!r} cannot be used for the attention loss: {err}. Pair the "
                    "embeddings only with each other (0:0) or use layer_map='uniform'."
                ) from err
            if not attention_pairs:
                raise UserInputError(
                    f"layer_map {args.layer_map!r} has no transformer-layer pair for the attention loss "
                    "(only 0:0); add pairs such as '4:2' or use layer_map='uniform'."
                )
            self.attention_layer_map = attention_pairs
            s_heads = student.config.num_attention_heads
            t_heads = teacher.config.num_attention_heads
            if s_heads != t_heads:
                # losses.attention_loss has no head-to-head pairing for unequal counts: it averages each side.
                logger.info(
                    "attention loss: teacher has %d heads, student %d; both maps are averaged over heads.",
                    t_heads,
                    s_heads,
                )

    def _attach_projections(self, student: PreTrainedModel, teacher: PreTrainedModel, seed: int) -> None:
        """Add learned student->teacher width projections to the student (only if the widths differ)."""
        s_width, t_width = student.config.hidden_size, teacher.config.hidden_size
        existing = getattr(student, PROJECTIONS_NAME, None)
        if existing is not None:
            # A student reused across trainers already carries projections: keep (and keep training) them.
            if len(existing) != len(self.hidden_layer_map):
                raise UserInputError(
                    f"the student already has {len(existing)} {PROJECTIONS_NAME} but the layer map has "
                    f"{len(self.hidden_layer_map)} pairs; delete them (del student.{PROJECTIONS_NAME})."
                )
            return
        # Seeded so two runs with the same args.seed start from the same projections.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            projections = make_projections(s_width, t_width, len(self.hidden_layer_map))
        if len(projections) == 0:
            return
        param = next(student.parameters())
        # A submodule of the student: the optimizer trains it, DDP syncs it, Trainer moves it with the model.
        student.add_module(PROJECTIONS_NAME, projections.to(param.device))

    # ---- loss ------------------------------------------------------------------------------------------

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, torch.Tensor],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ):
        """Training: distillation loss (soft + hard [+ hidden + attention]). Evaluation: student cross-entropy."""
        inputs = dict(inputs)
        cached = inputs.pop(TEACHER_LOGITS, None)
        if not model.training:
            # Same loss as ClassifierTrainer, so eval_loss compares with a student fine-tuned without a teacher.
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

        args = self.args
        labels = inputs.pop("labels", None)
        extra = {}
        if self.use_hidden_loss:
            extra["output_hidden_states"] = True
        if self.use_attention_loss:
            extra["output_attentions"] = True
        outputs = model(**inputs, **extra)
        student_logits = outputs.logits

        teacher_outputs = None
        if cached is not None and not extra:
            teacher_logits = cached
            self._check_teacher_logits(teacher_logits, student_logits)
        elif self.teacher_model is not None:
            teacher_outputs = self._teacher_forward(inputs, **extra)
            teacher_logits = teacher_outputs.logits
        else:
            raise UserInputError(
                f"the training batch has no '{TEACHER_LOGITS}' and there is no teacher_model: add the column to "
                "every training example or pass teacher_model."
            )

        parts = self._logit_loss(student_logits, teacher_logits, labels)
        loss = parts["loss"]
        metrics = {"soft": (parts["soft"], 1.0)}
        if "hard" in parts:
            # The hard term of a batch without any gold label is a placeholder 0: give it no weight in the mean.
            metrics["hard"] = (parts["hard"], (labels != -100).any().float())
        mask = inputs.get("attention_mask")
        if self.use_hidden_loss:
            projections = getattr(self.accelerator.unwrap_model(model), PROJECTIONS_NAME, None)
            hidden = hidden_state_loss(
                outputs.hidden_states,
                teacher_outputs.hidden_states,
                self.hidden_layer_map,
                attention_mask=mask,
                projections=projections,
                kind=args.hidden_loss_type,
            )
            loss = loss + args.hidden_loss_weight * hidden
            metrics["hidden"] = (hidden, 1.0)
        if self.use_attention_loss:
            attention = attention_loss(
                outputs.attentions,
                teacher_outputs.attentions,
                self.attention_layer_map,
                attention_mask=mask,
                kind=args.attention_loss_type,
            )
            loss = loss + args.attention_loss_weight * attention
            metrics["attention"] = (attention, 1.0)
        for name, (value, weight) in metrics.items():
            self._log_loss_part(name, value, weight)
        return (loss, outputs) if return_outputs else loss

    def _check_teacher_logits(self, teacher_logits: torch.Tensor, student_logits: torch.Tensor) -> None:
        """Cached teacher logits must have the student's shape: one row of num_labels floats per example."""
        if teacher_logits.shape != student_logits.shape:
            raise UserInputError(
                f"teacher_logits batch has shape {tuple(teacher_logits.shape)} but the student's logits have "
                f"{tuple(student_logits.shape)}: the column needs num_labels floats per row."
            )

    def _logit_loss(
        self, student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor | None
    ) -> dict[str, torch.Tensor]:
        """losses.distillation_loss, with the hard term re-weighted when class weights / label smoothing are set."""
        args = self.args
        parts = distillation_loss(
            student_logits, teacher_logits, labels, alpha=args.alpha, temperature=args.temperature
        )
        if labels is None or (self.class_weights is None and args.label_smoothing_factor == 0):
            return parts
        # distillation_loss takes neither class weights nor label smoothing: redo its hard term and mix with them,
        # keeping its rule that a batch without gold labels gets the soft term alone.
        hard = hard_label_ce(
            student_logits,
            labels,
            class_weights=self.class_weights,
            label_smoothing=args.label_smoothing_factor,
        )
        mixed = args.alpha * parts["soft"] + (1.0 - args.alpha) * hard
        loss = torch.where((labels != -100).any(), mixed, parts["soft"])
        return {"loss": loss, "soft": parts["soft"], "hard": hard}

    # ---- saving and loading ----------------------------------------------------------------------------

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """Save the student without its projections (reloadable as-is) and the projections to their own file."""
        student = self.accelerator.unwrap_model(self.model, keep_torch_compile=False)
        if getattr(student, PROJECTIONS_NAME, None) is None:
            return super()._save(output_dir, state_dict)
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if state_dict is None:
            state_dict = student.state_dict()
        prefix = PROJECTIONS_NAME + "."
        projections = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
        student_state = {k: v for k, v in state_dict.items() if not k.startswith(prefix)}
        super()._save(output_dir, state_dict=student_state)
        if self.args.should_save and projections:
            tensors = {k: v.detach().cpu().contiguous() for k, v in projections.items()}
            safetensors.torch.save_file(
                tensors, os.path.join(output_dir, PROJECTIONS_FILE), metadata={"format": "pt"}
            )

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: nn.Module | None = None) -> None:
        """Resume the student as Trainer does, then its projections from distill_projections.safetensors."""
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        self._load_projections(resume_from_checkpoint, model)

    def _load_best_model(self) -> None:
        """Reload the best student as Trainer does, and its projections with it."""
        super()._load_best_model()
        self._load_projections(self.state.best_model_checkpoint)

    def _load_projections(self, folder: str, model: nn.Module | None = None) -> None:
        """Load distill_projections.safetensors from `folder` into the student's projections, if it has any."""
        student = self.accelerator.unwrap_model(model if model is not None else self.model)
        projections = getattr(student, PROJECTIONS_NAME, None)
        if projections is None:
            return
        path = os.path.join(folder, PROJECTIONS_FILE)
        if not os.path.isfile(path):
            logger.warning(
                "%s has no %s: the hidden-state projections restart from scratch.", folder, PROJECTIONS_FILE
            )
            return
        state = safetensors.torch.load_file(path, device="cpu")
        projections.load_state_dict(state, strict=True)

    def _issue_warnings_after_load(self, load_result) -> None:
        """Trainer's missing/unexpected-key warnings, minus the projection keys."""
        # The projections are saved apart from model.safetensors, so their absence there is expected.
        missing = [k for k in load_result.missing_keys if not k.startswith(PROJECTIONS_NAME + ".")]
        super()._issue_warnings_after_load(type(load_result)(missing, load_result.unexpected_keys))


# ---- helpers ---------------------------------------------------------------------------------------------


def _label_names(config) -> list[str]:
    return [str(config.id2label[i]) for i in range(config.num_labels)]


def _generic_names(names: list[str]) -> bool:
    return names == [f"LABEL_{i}" for i in range(len(names))]


def _check_tokenizers(student, teacher, tokenizer, teacher_tokenizer) -> None:
    """The teacher runs on the student's token ids: both must use the same vocabulary and special tokens."""
    check_same_vocabulary(
        student,
        teacher,
        tokenizer,
        teacher_tokenizer,
        "Use logit-only distillation for different tokenizers: hidden_loss_weight=0, attention_loss_weight=0, "
        "and a 'teacher_logits' column computed with the teacher's own tokenizer (teacher_logits_cache).",
    )


def _use_eager_attention(model: PreTrainedModel) -> None:
    """Switch to eager attention: SDPA/flash kernels never materialise the maps output_attentions returns."""
    if model.config._attn_implementation != "eager":
        model.set_attn_implementation("eager")
    if model.config._attn_implementation != "eager":
        raise UserInputError(
            f"{type(model).__name__} cannot switch to attn_implementation='eager', which the attention loss needs "
            "(other kernels return no attention maps); set attention_loss_weight=0."
        )
