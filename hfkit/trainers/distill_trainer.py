"""`DistillTrainer`: distil a sequence-classification teacher into a smaller student (DistilBERT/TinyBERT/MiniLM)."""

from __future__ import annotations

import logging
import os

import safetensors.torch
import torch
from datasets import Dataset
from torch import nn
from transformers import PreTrainedModel

from ..data.token_alignment import check_same_pieces, texts_of_rows, token_id_map
from ..errors import UserInputError
from ..losses import (
    attention_loss,
    distillation_loss,
    hidden_state_loss,
    hidden_to_attention_map,
    make_projections,
    soft_label_kl,
    uniform_layer_map,
)
from ..modeling import same_vocabulary
from ..teacher_cache import TEACHER_LOGITS_COLUMN, add_teacher_outputs
from .base_trainer import check_same_vocabulary, has_columns
from .classifier_trainer import ClassifierTrainer
from .distill_config import DistillConfig

logger = logging.getLogger(__name__)

__all__ = ["PROJECTIONS_FILE", "PROJECTIONS_NAME", "TEACHER_LOGITS", "DistillTrainer"]

# The old name of the column constant, kept for imports; the one definition is hfkit.teacher_cache's.
TEACHER_LOGITS = TEACHER_LOGITS_COLUMN
# Submodule name of the learned hidden-state projections on the student, and the file they are saved to.
PROJECTIONS_NAME = "distill_projections"
PROJECTIONS_FILE = f"{PROJECTIONS_NAME}.safetensors"


class DistillTrainer(ClassifierTrainer):
    """A `ClassifierTrainer` whose training loss distils a frozen teacher into the student.

    Training loss: ``alpha * soft KL(T) + (1 - alpha) * hard CE`` (losses.distillation_loss; rows labelled
    -100 get the soft term only), plus optional hidden-state and attention-map losses over a layer map.
    The teacher is either a model (or a path to one) run under ``torch.no_grad`` in every step, or absent
    when the training set carries a ``teacher_logits`` column of precomputed logits. With
    ``args.teacher_logits_cache`` set, one teacher model and only its logits needed (no hidden/attention loss),
    the trainer fills that column itself at set-up (`hfkit.teacher_cache.add_teacher_outputs`: computed once at
    ``teacher_logits_dtype``, or loaded from the folder) and trains without running the teacher. Evaluation loss and
    metrics are the student's own, exactly as in `ClassifierTrainer`. Checkpoints hold the student only;
    learned projections (student and teacher widths differ) go to ``distill_projections.safetensors``.

    Several teachers: pass ``teacher_model`` as a list, each entry a model, a path, or None for a teacher whose
    logits are cached; the ``teacher_logits`` column then holds one row of num_labels logits per None entry,
    in teacher order (shape (n_cached, num_labels) per example), or one per teacher (then no teacher runs).
    Their softened probabilities are combined by ``args.teacher_combination`` into the one KL target; each
    teacher's own KL to the student is logged as ``loss_soft_teacher<i>`` (a diagnostic, no gradient).
    Every teacher gets the label-set check, and the vocabulary check when it runs on the student's tokens.
    Hidden-state and attention transfer take one teacher. ``teacher_model=None`` with a (K, num_labels)
    column is K cached teachers.

    Side effects on the models passed in: the teacher is put in eval mode with ``requires_grad_(False)``;
    with the attention loss on, both switch to eager attention (SDPA returns no attention maps); with the
    hidden loss on and different widths, the student gets a ``distill_projections`` submodule. Precision is
    decided in one place: the accelerator wraps both forwards in its mixed-precision autocast.
    """

    config_class = DistillConfig
    default_output_dir = "distill_output"
    cached_teacher_hint = "train from a cached 'teacher_logits' column with teacher_model=None"
    kept_columns = (TEACHER_LOGITS_COLUMN,)

    def __init__(
        self,
        model: PreTrainedModel | None = None,
        teacher_model: PreTrainedModel | str | list[PreTrainedModel | str | None] | None = None,
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
        self.use_hidden_loss = args.hidden_loss_weight > 0
        self.use_attention_loss = args.attention_loss_weight > 0
        has_cached = has_columns(train_dataset, (TEACHER_LOGITS_COLUMN,))
        column_shape = _column_shape(train_dataset) if has_cached else None
        # (teacher index -> online model, its forward's argument names), and where each teacher's logits come
        # from: ("online", k) or ("cached", row of the column). None: one teacher, the code path of old.
        self._online_teachers: dict[int, tuple[nn.Module, set[str]]] = {}
        self.teacher_plan: list[tuple[str, int]] | None = None
        teachers = None
        if isinstance(teacher_model, (list, tuple)) and len(teacher_model) == 1:
            teacher_model = teacher_model[0]
            if isinstance(teacher_processing_class, (list, tuple)):
                teacher_processing_class = teacher_processing_class[0]
        if isinstance(teacher_model, (list, tuple)) or (column_shape is not None and len(column_shape) == 2):
            teachers, teacher_tokenizers = self._load_teachers(
                teacher_model, model, teacher_processing_class, column_shape
            )
            self._plan_teachers(
                args, model, teachers, teacher_tokenizers, processing_class, has_cached, column_shape
            )
            teacher_model, teacher_processing_class = None, None  # the base trainer holds no single teacher
        else:
            teacher_model, teacher_processing_class = self.load_teacher(
                teacher_model, model, teacher_processing_class
            )
            if has_cached is False and self._caches_teacher(args, teacher_model, train_dataset):
                train_dataset = self._cache_teacher_logits(
                    args, model, teacher_model, train_dataset, processing_class, teacher_processing_class
                )
                if train_dataset is not None and TEACHER_LOGITS_COLUMN in train_dataset.column_names:
                    teacher_model, has_cached = None, True  # trained from the cache: the teacher never runs
            args.check_teacher_count(1)
            self._check_teacher_source(teacher_model, has_cached)
            self._check_labels(model, teacher_model, train_dataset if has_cached else None)
        if teachers is not None:
            self._check_labels(model, None, train_dataset if has_cached else None)
        # The teacher sees the student's batch whenever it runs: the same vocabulary, or (layer transfer across
        # tokenizers) the same pieces under other ids, translated piece by piece (teacher_token_map).
        if (
            teachers is None
            and teacher_model is not None
            and (self.use_hidden_loss or self.use_attention_loss or not has_cached)
        ):
            self.teacher_token_map = _teacher_token_map(
                model, teacher_model, processing_class, teacher_processing_class, train_dataset
            )
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
        for k, (source, _) in enumerate(self.teacher_plan or []):
            if source == "online":
                prepared = self._prepare_teacher(teachers[k])
                self._online_teachers[k] = (prepared, self._teacher_arg_names)
        # The teachers in teacher order as they run (None: logits from the column); [] with one teacher.
        self.teacher_models = [
            self._online_teachers.get(k, (None,))[0] for k in range(len(self.teacher_plan or []))
        ]

    # ---- the teacher-logit cache (args.teacher_logits_cache) --------------------------------------------

    def _caches_teacher(self, args: DistillConfig, teacher: PreTrainedModel | None, train_dataset) -> bool:
        """Whether to fill the cache here: a folder set, one teacher model, only its logits needed, a Dataset."""
        return (
            args.teacher_logits_cache is not None
            and teacher is not None
            and not (self.use_hidden_loss or self.use_attention_loss)  # those need the teacher in every step
            and isinstance(train_dataset, Dataset)
            and "input_ids" in train_dataset.column_names
        )

    def _cache_teacher_logits(
        self, args: DistillConfig, student, teacher, train_dataset: Dataset, tokenizer, teacher_tokenizer
    ) -> Dataset:
        """The training set with the teacher's logits (computed once, or loaded from args.teacher_logits_cache).

        The teacher scores the student's token ids, so it must share the student's vocabulary; a teacher that
        cuts text alike under other ids keeps running in every step (the recipe caches it from the raw text).
        """
        if (
            hasattr(tokenizer, "get_vocab")
            and hasattr(teacher_tokenizer, "get_vocab")
            and not same_vocabulary(tokenizer, teacher_tokenizer)
        ) or (tokenizer is None and teacher_tokenizer is None):
            logger.info(
                "teacher_logits_cache is set but the teacher cannot score the student's token ids as they are "
                "(another vocabulary, or no tokenizer given): it runs in every training step instead."
            )
            return train_dataset
        self._check_labels(student, teacher, None)
        check_same_vocabulary(
            student,
            teacher,
            tokenizer,
            teacher_tokenizer,
            "Cache its logits from the raw text with its own tokenizer instead (hfkit.teacher_cache."
            "add_teacher_outputs with TeacherText), and pass teacher_model=None.",
        )
        device = next(teacher.parameters()).device
        teacher.to(args.device)  # a one-off pass, not a training step: the accelerator is not set up yet
        try:
            with args.main_process_first(desc="teacher logits"):
                cached = add_teacher_outputs(
                    train_dataset,
                    [(teacher, teacher_tokenizer)],
                    args,
                    tokenizer,
                    batch_size=args.per_device_eval_batch_size,
                )
        finally:
            teacher.to(device)
        logger.info(
            "training from the teacher's cached logits over %s rows (%s): the teacher does not run per step",
            f"{len(cached):,}",
            args.teacher_logits_cache,
        )
        return cached

    # ---- several teachers ------------------------------------------------------------------------------

    def _load_teachers(
        self, teacher_model, student: PreTrainedModel, tokenizers, column_shape: tuple[int, ...] | None
    ) -> tuple[list[PreTrainedModel | None], list]:
        """The teacher list with paths loaded (None entries kept), and one tokenizer (or None) per teacher."""
        if teacher_model is None:  # K cached teachers, from a (K, num_labels) column; no tokenizer needed
            teacher_model, tokenizers = [None] * column_shape[0], None
        elif not isinstance(teacher_model, (list, tuple)):  # one teacher model next to a (K, C) column
            teacher_model, tokenizers = [teacher_model], [tokenizers]
        if tokenizers is None:
            tokenizers = [None] * len(teacher_model)
        if not isinstance(tokenizers, (list, tuple)) or len(tokenizers) != len(teacher_model):
            raise UserInputError(
                f"teacher_processing_class must be a list of one tokenizer (or None) per teacher when teacher_model "
                f"lists {len(teacher_model)} teachers; got {type(tokenizers).__name__}"
                f"{f' of {len(tokenizers)}' if isinstance(tokenizers, (list, tuple)) else ''}."
            )
        loaded = [
            self.load_teacher(t, student, tok) for t, tok in zip(teacher_model, tokenizers, strict=True)
        ]
        return [t for t, _ in loaded], [tok for _, tok in loaded]

    def _plan_teachers(
        self,
        args: DistillConfig,
        student: PreTrainedModel,
        teachers: list[PreTrainedModel | None],
        tokenizers: list,
        tokenizer,
        has_cached: bool | None,
        column_shape: tuple[int, ...] | None,
    ) -> None:
        """Check every teacher (labels, vocabulary when online) and decide where each one's logits come from."""
        args.check_teacher_count(len(teachers))
        cached_slots = sum(t is None for t in teachers)
        if self.use_hidden_loss or self.use_attention_loss:
            # Only one teacher gets here (more are refused above): a cached one, which holds no hidden states.
            self._check_teacher_source(None, has_cached)
        if has_cached is False and cached_slots:
            raise UserInputError(
                f"teacher_model lists {cached_slots} teacher(s) as None, whose logits come from a '{TEACHER_LOGITS_COLUMN}' "
                "column, but train_dataset has none: add the column (one row of num_labels logits per None entry, "
                "e.g. from hfkit.teacher_cache.teacher_logits_for_texts), or pass those teachers' models."
            )
        rows = None if column_shape is None else (1 if len(column_shape) == 1 else column_shape[0])
        if rows is not None and rows == len(teachers) and rows != cached_slots:
            # One cached row per teacher: like one teacher with a cached column, no teacher runs.
            self.teacher_plan = [("cached", k) for k in range(len(teachers))]
        elif rows is not None and rows != cached_slots:
            raise UserInputError(
                f"the '{TEACHER_LOGITS_COLUMN}' column holds {rows} teacher(s) per example but teacher_model lists "
                f"{len(teachers)} teachers, {cached_slots} of them None: the column needs one row of logits per None "
                f"entry (in teacher order), or one per teacher."
            )
        else:
            slots = iter(range(cached_slots))
            self.teacher_plan = [
                ("cached", next(slots)) if t is None else ("online", k) for k, t in enumerate(teachers)
            ]
        for k, teacher in enumerate(teachers):
            if teacher is None:
                continue
            self._check_labels(student, teacher, None)
            if self.teacher_plan[k][0] == "online":
                check_same_vocabulary(
                    student,
                    teacher,
                    tokenizer,
                    tokenizers[k],
                    f"(teacher {k} runs on the student's token ids.) Cache its logits instead: compute them with "
                    "its own tokenizer (hfkit.teacher_cache.teacher_logits_for_texts), put them in the "
                    f"'{TEACHER_LOGITS_COLUMN}' column and pass None in its place in teacher_model.",
                )

    def _teachers_logits(
        self, cached: torch.Tensor | None, inputs: dict[str, torch.Tensor], student_logits: torch.Tensor
    ) -> torch.Tensor:
        """(B, K, C) logits of the K teachers in teacher order: cached rows from the column, online ones run now."""
        num_cached = sum(source == "cached" for source, _ in self.teacher_plan)
        if num_cached:
            if cached is None:
                raise UserInputError(
                    f"the training batch has no '{TEACHER_LOGITS_COLUMN}', which {num_cached} teacher(s) read their logits "
                    "from: add the column to every training example."
                )
            if cached.dim() == student_logits.dim():  # (B, C): one cached teacher in the one-teacher layout
                cached = cached.unsqueeze(1)
            expected = (student_logits.shape[0], num_cached, student_logits.shape[-1])
            if tuple(cached.shape) != expected:
                raise UserInputError(
                    f"teacher_logits batch has shape {tuple(cached.shape)}, expected {expected}: one row of "
                    f"num_labels logits per cached teacher ({num_cached}), in teacher order."
                )
        logits = []
        for source, index in self.teacher_plan:
            if source == "cached":
                logits.append(cached[:, index].float())
                continue
            teacher, names = self._online_teachers[index]
            teacher.eval()
            with torch.no_grad():
                logits.append(teacher(**{k: v for k, v in inputs.items() if k in names}).logits.float())
        # float32: teachers under a half-precision autocast and float32 cached rows stack into one tensor.
        return torch.stack(logits, dim=1)

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
        shape = _column_shape(cached_dataset) if cached_dataset is not None else None
        if shape is not None:
            width = shape[-1]
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
        cached = inputs.pop(TEACHER_LOGITS_COLUMN, None)
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
        if self.teacher_plan is not None:
            teacher_logits = self._teachers_logits(cached, inputs, student_logits)
            if teacher_logits.shape[1] == 1:  # one teacher (a (1, C) column): exactly the one-teacher loss
                teacher_logits = teacher_logits[:, 0]
        elif cached is not None and not extra:
            teacher_logits = cached
            self._check_teacher_logits(teacher_logits, student_logits)
        elif self.teacher_model is not None:
            teacher_outputs = self._teacher_forward(inputs, **extra)
            teacher_logits = teacher_outputs.logits
        else:
            raise UserInputError(
                f"the training batch has no '{TEACHER_LOGITS_COLUMN}' and there is no teacher_model: add the column to "
                "every training example or pass teacher_model."
            )

        parts = self._logit_loss(student_logits, teacher_logits, labels)
        loss = parts["loss"]
        metrics = {"soft": (parts["soft"], 1.0)}
        if teacher_logits.dim() > student_logits.dim():
            # Each teacher's own KL to the student: what it alone would teach (logged, no gradient).
            with torch.no_grad():
                for k in range(teacher_logits.shape[1]):
                    kl = soft_label_kl(
                        student_logits.detach(), teacher_logits[:, k], temperature=args.temperature
                    )
                    metrics[f"soft_teacher{k}"] = (kl, 1.0)
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
                f"{tuple(student_logits.shape)}: the column needs num_labels floats per row (for K cached "
                "teachers, (K, num_labels) per row with teacher_model=[None] * K)."
            )

    def _logit_loss(
        self, student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor | None
    ) -> dict[str, torch.Tensor]:
        """losses.distillation_loss with this run's temperature, alpha, teacher combination and hard-term settings."""
        args = self.args
        return distillation_loss(
            student_logits,
            teacher_logits,
            labels,
            alpha=args.alpha,
            temperature=args.temperature,
            combination=args.teacher_combination,
            weights=args.teacher_weights,
            class_weights=self.class_weights,
            label_smoothing=args.label_smoothing_factor,
        )

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


def _column_shape(dataset) -> tuple[int, ...] | None:
    """Shape of the first row's teacher_logits: (C,) for one teacher, (K, C) for K; None if unknown."""
    if dataset is None or not hasattr(dataset, "__getitem__"):
        return None
    try:
        row = dataset[0][TEACHER_LOGITS_COLUMN]
    except (TypeError, KeyError, IndexError):
        return None
    # A list of lists (or a 2-D tensor/array, with a torch/numpy format): several teachers.
    if len(row) and (isinstance(row[0], (list, tuple)) or getattr(row[0], "ndim", 0) >= 1):
        return (len(row), len(row[0]))
    return (len(row),)


def _label_names(config) -> list[str]:
    return [str(config.id2label[i]) for i in range(config.num_labels)]


def _generic_names(names: list[str]) -> bool:
    return names == [f"LABEL_{i}" for i in range(len(names))]


def _teacher_token_map(student, teacher, tokenizer, teacher_tokenizer, train_dataset) -> torch.Tensor | None:
    """None when the teacher can read the student's ids as they are (same vocabulary). When the two tokenizers
    are given and differ, the student-id -> teacher-id map, after checking on every training row that the
    teacher's tokenizer cuts its text into the same pieces (so position i is the same piece for both)."""
    if (
        hasattr(tokenizer, "get_vocab")
        and hasattr(teacher_tokenizer, "get_vocab")
        and not same_vocabulary(tokenizer, teacher_tokenizer)
    ):
        if not isinstance(train_dataset, Dataset) or "input_ids" not in train_dataset.column_names:
            raise UserInputError(
                "a teacher with another vocabulary reads the student's batch translated piece by piece, after a "
                "check that it cuts every training row into the same pieces: pass train_dataset as a tokenized "
                "datasets.Dataset (an 'input_ids' column)."
            )
        check_same_pieces(
            tokenizer,
            teacher_tokenizer,
            texts_of_rows(tokenizer, train_dataset["input_ids"]),
            what="training rows",
        )
        logger.info(
            "teacher tokenizer (%d pieces) cuts all %s training rows into the student's pieces: it reads them "
            "translated to its own ids",
            len(teacher_tokenizer),
            f"{len(train_dataset):,}",
        )
        return token_id_map(tokenizer, teacher_tokenizer)
    check_same_vocabulary(
        student,
        teacher,
        tokenizer,
        teacher_tokenizer,
        "Pass both tokenizers (processing_class, teacher_processing_class): a teacher that cuts the text into "
        "the same pieces under other ids (MPNet and MiniLM do) reads the student's batch translated. Otherwise "
        "use logit-only distillation: hidden_loss_weight=0, attention_loss_weight=0, and a 'teacher_logits' "
        "column computed with the teacher's own tokenizer (teacher_logits_cache).",
    )
    return None


def _use_eager_attention(model: PreTrainedModel) -> None:
    """Switch to eager attention: SDPA/flash kernels never materialise the maps output_attentions returns."""
    if model.config._attn_implementation != "eager":
        model.set_attn_implementation("eager")
    if model.config._attn_implementation != "eager":
        raise UserInputError(
            f"{type(model).__name__} cannot switch to attn_implementation='eager', which the attention loss needs "
            "(other kernels return no attention maps); set attention_loss_weight=0."
        )
