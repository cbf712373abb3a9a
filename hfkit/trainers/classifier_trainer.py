"""`ClassifierTrainer`: fine-tune a BERT-style encoder for sequence classification."""

from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F
from transformers import AutoModelForSequenceClassification

from ..errors import UserInputError
from ..metrics import classification_metrics_with, confusion_matrix, load_evaluate_metrics
from ..modeling import display_name, freeze, head_parameter_names
from ..reports import Report, classification_report, report_stem
from .base_trainer import BaseTrainer
from .classifier_config import ClassifierConfig

logger = logging.getLogger(__name__)


def _check_label_ids(model, dataset, name: str) -> None:
    """Every gold label id must name one of the model's classes (-100: a row without a gold label)."""
    if isinstance(dataset, dict):
        for key, value in dataset.items():
            _check_label_ids(model, value, f"{name}[{key!r}]")
        return
    if "labels" not in (getattr(dataset, "column_names", None) or []) or not hasattr(dataset, "unique"):
        return
    num_labels = model.config.num_labels
    feature = dataset.features.get("labels")
    classes = getattr(feature, "names", None)
    ids = [i for i in dataset.unique("labels") if i is not None and i != -100]
    bad = sorted(i for i in ids if not (isinstance(i, int) and 0 <= i < num_labels))
    if not bad and (classes is None or len(classes) <= num_labels):
        return
    wanted = len(classes) if classes is not None else max(max(bad) + 1, num_labels) if bad else num_labels
    found = f"label ids {bad[:5]}" if bad else f"{len(classes)} classes"
    named = f" ({classes})" if classes is not None else ""
    raise UserInputError(
        f"{name} has {found}{named} but the model has num_labels={num_labels} (ids 0..{num_labels - 1}; -100 marks "
        f"a row without a gold label). Load the model with the data's label set, e.g. "
        f"AutoModelForSequenceClassification.from_pretrained(path, num_labels={wanted}) or "
        "hfkit.load_classifier(model_args, labels), or map the labels to the model's ids."
    )


class ClassifierTrainer(BaseTrainer):
    """A `transformers.Trainer` for single-label sequence classification.

    On top of `BaseTrainer` (config check, early stopping from the config, the stop with a clear message
    when the loss turns NaN/inf) it adds: class-weighted / label-smoothed cross-entropy, freezing of
    embeddings and lower layers, parameter counts at start, and the evaluation report (`eval_report.json`
    + `.md`, and a printed table) at the end, headed by output_dir and `eval_data_name` (e.g. the validation
    file). The report reuses the last evaluation of the final model when training ended with one, so the
    validation set is not scored twice. Everything else (devices, mixed precision, accumulation,
    checkpoints, resume) is `Trainer`'s own.
    """

    config_class = ClassifierConfig
    default_output_dir = "classifier_output"
    teacher_auto_class = AutoModelForSequenceClassification

    def __init__(
        self,
        model=None,
        args: ClassifierConfig | None = None,
        compute_metrics=None,
        callbacks=None,
        eval_data_name: str | None = None,
        **kwargs,
    ):
        args = self.check_args(args)
        if model is not None:
            for name in ("train_dataset", "eval_dataset"):
                _check_label_ids(model, kwargs.get(name), name)
            freeze(model, embeddings=args.freeze_embeddings, num_layers=args.freeze_layers)
        super().__init__(
            model=model,
            args=args,
            compute_metrics=compute_metrics
            or classification_metrics_with(
                load_evaluate_metrics(args.extra_metrics or [], trust_remote_code=args.trust_remote_metrics)
            ),
            callbacks=callbacks,
            **kwargs,
        )
        self.class_weights = self._class_weights()
        self.report: dict | None = None
        self.eval_data_name = eval_data_name  # what the report calls the evaluation data
        # (global step, EvalLoopOutput) of the last evaluation of eval_dataset, reused by the report
        self._last_eval = None
        self._scoring_eval_dataset = False

    def _class_weights(self) -> torch.Tensor | None:
        num_labels = self.model.config.num_labels
        if self.args.class_weights is not None:
            if len(self.args.class_weights) != num_labels:
                raise UserInputError(
                    f"class_weights has {len(self.args.class_weights)} values but the model has {num_labels} labels."
                )
            return torch.tensor(self.args.class_weights, dtype=torch.float32)
        if not self.args.balance_classes:
            return None
        if self.train_dataset is None or "labels" not in getattr(self.train_dataset, "column_names", []):
            raise UserInputError(
                "balance_classes needs a train_dataset with a 'labels' column to count classes."
            )
        labels = np.asarray(self.train_dataset["labels"])
        # Rows labelled -100 (augmented, no gold label) have no class to count.
        counts = np.bincount(labels[labels >= 0], minlength=num_labels)
        if (counts == 0).any():
            raise UserInputError(
                f"balance_classes: label ids {np.flatnonzero(counts == 0).tolist()} never occur in training."
            )
        return torch.tensor(counts.sum() / (num_labels * counts), dtype=torch.float32)

    def create_optimizer(self, model=None):
        """Trainer's optimizer; with `head_learning_rate` the head's parameters move to groups of their own
        (same weight decay) with that peak rate. The scheduler scales every group by the same factor."""
        optimizer = super().create_optimizer(model)
        if self.args.head_learning_rate is None:
            return optimizer
        opt_model = self.model if model is None else model
        names = set(head_parameter_names(opt_model))
        head = {id(p) for n, p in opt_model.named_parameters() if n in names and p.requires_grad}
        if not head:
            raise UserInputError(
                f"head_learning_rate is set but {type(opt_model).__name__} has no trainable head parameter "
                "outside its base model; leave head_learning_rate out."
            )
        for group in list(optimizer.param_groups):
            moved = [p for p in group["params"] if id(p) in head]
            if not moved or len(moved) == len(group["params"]):  # no head here, or a head group already
                continue
            group["params"] = [p for p in group["params"] if id(p) not in head]
            settings = {k: v for k, v in group.items() if k != "params"}
            optimizer.add_param_group({**settings, "params": moved, "lr": self.args.head_learning_rate})
        logger.info("task head: %d tensors at learning rate %g", len(head), self.args.head_learning_rate)
        return optimizer

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """Cross-entropy with optional class weights and label smoothing, computed in float32."""
        labels = inputs["labels"]
        outputs = model(**{k: v for k, v in inputs.items() if k != "labels"})
        weight = None if self.class_weights is None else self.class_weights.to(outputs.logits.device)
        loss = F.cross_entropy(
            outputs.logits.float(), labels, weight=weight, label_smoothing=self.args.label_smoothing_factor
        )
        return (loss, outputs) if return_outputs else loss

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval"):
        """`Trainer.evaluate`, remembering the predictions on eval_dataset for the final report."""
        self._scoring_eval_dataset = eval_dataset is None and not isinstance(self.eval_dataset, dict)
        try:
            return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        finally:
            self._scoring_eval_dataset = False

    def evaluation_loop(self, *args, **kwargs):
        """`Trainer.evaluation_loop`; keeps the output when it scored eval_dataset (see `evaluate`)."""
        output = super().evaluation_loop(*args, **kwargs)
        if self._scoring_eval_dataset and output.predictions is not None:
            self._last_eval = (self.state.global_step, output)
        return output

    def _final_evaluation(self):
        """The last evaluation of eval_dataset if it scored the model as it is now, else None."""
        if self._last_eval is None or self._last_eval[0] != self.state.global_step:
            return None
        best = self.state.best_model_checkpoint
        if (
            self.args.load_best_model_at_end
            and best
            and not best.rstrip("/").endswith(f"checkpoint-{self.state.global_step}")
        ):
            return None  # an earlier checkpoint was reloaded: its predictions were not kept
        return self._last_eval[1]

    def train(self, *args, **kwargs):
        """Train as `Trainer.train`, then write and print the evaluation report on eval_dataset."""
        output = super().train(*args, **kwargs)
        if self.eval_dataset is not None and not isinstance(self.eval_dataset, dict):
            self.report = self.evaluation_report()
        return output

    def evaluation_report(self, eval_dataset=None) -> dict:
        """Evaluate, write the report (JSON + Markdown) to output_dir, print it; returns the JSON payload."""
        # One accuracy per model: the report scores the model as it is saved and loaded (its own dtype), never
        # under the training's bf16/fp16 autocast, which gives another figure than every later load of the
        # folder (the distill report and `hfkit compare` score it as loaded).
        mixed = self.args.bf16 or self.args.fp16
        prediction = None if eval_dataset is not None or mixed else self._final_evaluation()
        if prediction is None:
            if mixed:
                self.unwrapped()  # drops accelerate's autocast forward wrapper, in place
            dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
            prediction = self.predict(dataset, metric_key_prefix="eval")
        logits = (
            prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        )
        config = self.model.config
        labels = [config.id2label[i] for i in range(config.num_labels)]
        report: Report = classification_report(
            metrics=prediction.metrics,
            confusion_matrix=confusion_matrix(np.argmax(logits, axis=-1), prediction.label_ids, len(labels)),
            labels=labels,
            num_examples=len(prediction.label_ids),
            model=self.args.output_dir,
            base_model=display_name(getattr(config, "_name_or_path", "")) or None,
            data=self.eval_data_name,
            parameters=self.param_counts,
            name=report_stem(self.args.report_file),
            precision=str(next(self.model.parameters()).dtype).removeprefix("torch."),
        )
        if self.is_world_process_zero():
            report.save(self.args.output_dir)
            print(report.text())
        return {"title": report.title, **report.data}
