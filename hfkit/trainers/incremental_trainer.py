"""`IncrementalTrainer`: update a deployed classifier with new data or new classes without forgetting.

The previous model is a frozen teacher on the classes it knows (Learning without Forgetting); the head of
the updated model grows by the new classes with the old rows kept (`grow_classifier_head`), and a seeded,
stratified sample of the old training data can be mixed in (`hfkit.data.incremental.replay_sample`).
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch import nn
from transformers import DataCollatorWithPadding, PreTrainedModel, TrainerCallback

from ..errors import UserInputError
from ..teacher_cache import TEACHER_LOGITS_COLUMN
from .distill_trainer import DistillTrainer
from .incremental_config import IncrementalConfig

__all__ = [
    "IncrementalTrainer",
    "align_new_classes",
    "grow_classifier_head",
    "imprint_new_classes",
    "label_names",
]

logger = logging.getLogger(__name__)


def label_names(model: PreTrainedModel) -> list[str]:
    """The model's class names in id order."""
    id2label = model.config.id2label
    return [str(id2label[i]) for i in range(model.config.num_labels)]


def _head_linear(model: PreTrainedModel) -> tuple[str, nn.Linear]:
    """The Linear layer that produces the class logits (BERT `classifier`, RoBERTa/MPNet `classifier.out_proj`,
    LLaMA-style `score`)."""
    k = model.config.num_labels
    found = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear)
        and module.out_features == k
        and any(part in name.split(".") for part in ("classifier", "score", "out_proj"))
    ]
    if len(found) != 1:
        raise UserInputError(
            f"cannot find the one output layer of the {type(model).__name__} head (Linear layers with "
            f"{k} outputs under 'classifier'/'score': {[n for n, _ in found]}); incremental training supports "
            "sequence classifiers whose logits come from one Linear layer."
        )
    return found[0]


def grow_classifier_head(model: PreTrainedModel, new_labels: list[str], seed: int = 0) -> PreTrainedModel:
    """Add output rows for `new_labels` to a sequence classifier; old rows (and so old logits) stay exact."""
    old_labels = label_names(model)
    clash = sorted(set(new_labels) & set(old_labels))
    if clash:
        raise UserInputError(
            f"new class name(s) {clash} already exist in the previous model (classes {old_labels}); list only "
            "classes it does not have, or leave new_class_names out to take them from the new data."
        )
    if len(set(new_labels)) != len(new_labels):
        raise UserInputError(f"new class names {new_labels} repeat a name; list each class once.")
    if not new_labels:
        return model
    name, old = _head_linear(model)
    k, total = old.out_features, old.out_features + len(new_labels)
    new = nn.Linear(
        old.in_features, total, bias=old.bias is not None, device=old.weight.device, dtype=old.weight.dtype
    )
    std = getattr(model.config, "initializer_range", 0.02)
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # seeded: the same update run twice starts from the same new rows
        new.weight[:k] = old.weight
        new.weight[k:].normal_(0.0, std)
        if old.bias is not None:
            new.bias[:k] = old.bias
            new.bias[k:] = 0.0
    model.set_submodule(name, new)
    labels = old_labels + list(new_labels)
    model.config.id2label = dict(enumerate(labels))
    model.config.label2id = {label: i for i, label in enumerate(labels)}
    if hasattr(model, "num_labels"):
        model.num_labels = total  # the forward's own loss reads it
    return model


@torch.no_grad()
def imprint_new_classes(
    model: PreTrainedModel, dataset, num_old: int, tokenizer, batch_size: int = 64
) -> None:
    """Start each new class's output row from its training rows' mean head input (weight imprinting, Qi et
    al. 2018), scaled to the old rows' mean norm, bias = the old rows' mean bias. A random row starts near 0
    and, with old classes protected by replay or LwF, a short update barely lifts it; an imprinted row already
    points at the class. `dataset` is tokenized with a `labels` column; old rows are left as they are."""
    name, head = _head_linear(model)
    labels = np.asarray(dataset["labels"])
    features: list[torch.Tensor] = []
    hook = head.register_forward_hook(lambda module, inputs, output: features.append(inputs[0].float()))
    was_training = model.training
    model.eval()
    collate = DataCollatorWithPadding(tokenizer)
    columns = [c for c in ("input_ids", "attention_mask", "token_type_ids") if c in dataset.column_names]
    rows = np.flatnonzero(labels >= num_old)
    try:
        for start in range(0, len(rows), batch_size):
            batch = collate(
                [{c: dataset[int(i)][c] for c in columns} for i in rows[start : start + batch_size]]
            )
            model(**{k: v.to(head.weight.device) for k, v in batch.items()})
    finally:
        hook.remove()
        model.train(was_training)
    feats = torch.cat(features) if features else torch.empty(0, head.in_features)
    old_norm = head.weight[:num_old].float().norm(dim=1).mean()
    for c in range(num_old, head.out_features):
        chosen = feats[torch.as_tensor(labels[rows] == c)]
        if len(chosen) == 0:
            raise UserInputError(
                f"cannot imprint class {model.config.id2label[c]!r}: the training data has no row of it."
            )
        mean = chosen.mean(dim=0)
        head.weight[c] = (mean / mean.norm() * old_norm).to(head.weight.dtype)
        if head.bias is not None:
            head.bias[c] = head.bias[:num_old].mean()


def align_new_classes(model: PreTrainedModel, num_old: int) -> float | None:
    """Scale the output rows (and biases) of classes num_old.. so their mean weight norm equals that of the old
    classes (Weight Aligning); returns the factor, or None when there is no new class. Old logits stay exact."""
    _, head = _head_linear(model)
    if not 0 < num_old < head.out_features:
        return None
    with torch.no_grad():
        norms = head.weight.float().norm(dim=1)
        gamma = norms[:num_old].mean() / norms[num_old:].mean()
        head.weight[num_old:] *= gamma.to(head.weight.dtype)
        if head.bias is not None:
            head.bias[num_old:] *= gamma.to(head.bias.dtype)
    return float(gamma)


class _AlignAtTrainEnd(TrainerCallback):
    """Weight Aligning once training is over (after a best-model reload), before the final report."""

    def __init__(self, trainer: IncrementalTrainer):
        self.trainer = trainer

    def on_train_end(self, args, state, control, **kwargs):
        self.trainer.align_new_classes()


class IncrementalTrainer(DistillTrainer):
    """A `DistillTrainer` whose teacher (the previous model) knows only the first classes of the student.

    Training loss: ``alpha * T^2 * KL`` between the previous model's and the updated model's softened
    distributions over the old classes, plus ``(1 - alpha) * CE`` over all classes on the gold labels
    (rows without a gold label get the soft term only, as in `DistillTrainer`): the same
    `hfkit.losses.distillation_loss`, whose soft term covers the teacher's (fewer) classes. With no new classes it is
    distillation from the previous model while learning the new data. Evaluation is the plain classifier's.
    """

    # BaseTrainer.check_args refuses any other config (a DistillConfig too) with the fix.
    config_class = IncrementalConfig
    default_output_dir = "incremental_output"

    def __init__(self, *args, **kwargs):
        self.num_old_classes: int | None = None  # set by _check_labels: the previous model's classes
        super().__init__(*args, **kwargs)
        if self.args.align_new_classes:
            self.add_callback(_AlignAtTrainEnd(self))

    def align_new_classes(self) -> float | None:
        """Weight Aligning on the model being trained (see `align_new_classes`); logs the factor."""
        if self.num_old_classes is None:
            return None
        gamma = align_new_classes(self.accelerator.unwrap_model(self.model), self.num_old_classes)
        if gamma is not None:
            self._last_eval = None  # the model changed: the final report must score it again
            logger.info("aligned the new classes' output rows to the old ones' norm (x%.3f)", gamma)
        return gamma

    def _check_labels(
        self, student: PreTrainedModel, teacher: PreTrainedModel | None, cached_dataset
    ) -> None:
        """The previous model's classes must be the first classes of the updated model, in the same order."""
        student_names = label_names(student)
        if teacher is not None:
            teacher_names = label_names(teacher)
            self.num_old_classes = len(teacher_names)
            if student_names[: len(teacher_names)] != teacher_names:
                raise UserInputError(
                    f"the updated model's classes {student_names} do not start with the previous model's "
                    f"{teacher_names}: grow the previous model's head (grow_classifier_head) instead of "
                    "building a new one, so old class i keeps id i."
                )
        if cached_dataset is not None and hasattr(cached_dataset, "__getitem__") and len(cached_dataset):
            width = len(cached_dataset[0][TEACHER_LOGITS_COLUMN])
            self.num_old_classes = width
            if width > len(student_names):
                raise UserInputError(
                    f"the teacher_logits column has {width} values per row but the updated model has only "
                    f"{len(student_names)} classes: cache the logits of the previous model of this update."
                )

    def _check_teacher_logits(self, teacher_logits: torch.Tensor, student_logits: torch.Tensor) -> None:
        """Teacher logits cover the old classes: as many rows as the batch, at most the student's width."""
        if (
            teacher_logits.shape[0] != student_logits.shape[0]
            or teacher_logits.shape[-1] > student_logits.shape[-1]
        ):
            raise UserInputError(
                f"teacher_logits batch has shape {tuple(teacher_logits.shape)} for student logits of shape "
                f"{tuple(student_logits.shape)}: the column needs one value per old class and row."
            )
