"""Offline evaluation metrics for classification and language modelling, built on scikit-learn.

Every function is pure and accepts python lists, numpy arrays or torch tensors. The built-in metrics need no
network; `evaluate` modules (Hub ids or local metric scripts) come on top when a config names them
(`extra_metrics`), loaded by ``load_evaluate_metrics``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.special
import torch
from scipy import stats
from sklearn import metrics as skm
from sklearn.exceptions import UndefinedMetricWarning

from .errors import UserInputError

if TYPE_CHECKING:
    from transformers import EvalPrediction

__all__ = [
    "accuracy",
    "classification_metrics",
    "classification_metrics_with",
    "compute_classification_metrics",
    "confusion_matrix",
    "evaluate_module_metrics",
    "load_evaluate_metrics",
    "mcnemar",
    "perplexity",
    "precision_recall_f1",
    "roc_auc",
    "softmax",
]


def _to_numpy(x: Any) -> np.ndarray:
    """Convert a list, numpy array or torch tensor to a numpy array."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        # numpy has no bfloat16, so .numpy() would raise on bf16 logits.
        if x.dtype == torch.bfloat16:
            x = x.float()
        return x.numpy()
    return np.asarray(x)


def _check_pair(
    fn: str, values: Any, labels: Any, noun: str = "predictions", singular: str = "prediction"
) -> tuple[np.ndarray, np.ndarray]:
    """Convert ``values`` and ``labels`` to numpy and check they describe the same non-empty set of examples."""
    values, labels = _to_numpy(values), _to_numpy(labels)
    if values.ndim == 0 or labels.ndim == 0:
        raise ValueError(
            f"{fn}: {noun} and labels must be arrays with one entry per example, "
            f"got shapes {values.shape} and {labels.shape}."
        )
    if labels.ndim != 1:
        raise ValueError(f"{fn}: labels must be a 1-D array of class ids, got shape {labels.shape}.")
    if len(values) != len(labels):
        raise ValueError(
            f"{fn}: got {len(values)} {noun} but {len(labels)} labels; pass one {singular} per example."
        )
    if len(labels) == 0:
        raise ValueError(
            f"{fn}: got 0 {noun} and 0 labels; metrics need at least one example, "
            "check that the evaluation set is not empty."
        )
    return values, labels


def _check_class_ids(fn: str, predictions: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """Like ``_check_pair`` but also require predictions to be 1-D class ids rather than logits."""
    predictions, labels = _check_pair(fn, predictions, labels)
    if predictions.ndim != 1:
        raise ValueError(
            f"{fn}: predictions must be a 1-D array of class ids, got shape {predictions.shape}; "
            "for logits take argmax(-1) first or call classification_metrics."
        )
    return predictions, labels


def accuracy(predictions: Any, labels: Any) -> float:
    """Fraction of examples whose predicted class id equals the label."""
    predictions, labels = _check_class_ids("accuracy", predictions, labels)
    return float(skm.accuracy_score(labels, predictions))


def precision_recall_f1(
    predictions: Any, labels: Any, average: str = "binary", pos_label: int = 1
) -> dict[str, float]:
    """Precision, recall and F1 (scikit-learn ``average`` semantics); undefined ratios count as 0."""
    predictions, labels = _check_class_ids("precision_recall_f1", predictions, labels)
    # sklearn warns when pos_label is set but unused, so only pass it where it means something.
    extra = {"pos_label": pos_label} if average == "binary" else {}
    precision, recall, f1, _ = skm.precision_recall_fscore_support(
        labels, predictions, average=average, zero_division=0, **extra
    )
    return {"precision": float(precision), "recall": float(recall), "f1": float(f1)}


def roc_auc(scores: Any, labels: Any, num_labels: int | None = None) -> float:
    """Binary or one-vs-rest macro ROC-AUC; returns ``nan`` (no warning) when fewer than two classes are present.

    ``scores`` is either 1-D (probability of class 1), 2-D with two columns (column 1 is used), or 2-D
    class probabilities of shape (n, num_labels) whose rows sum to 1. For more than two classes, the
    macro average is taken over the classes present in ``labels``: a class missing from a small eval
    batch has no defined one-vs-rest AUC and is left out instead of turning the whole result into nan.
    """
    scores, labels = _check_pair("roc_auc", scores, labels, noun="scores", singular="score row")
    if scores.ndim not in (1, 2):
        raise ValueError(f"roc_auc: scores must be 1-D or 2-D, got shape {scores.shape}.")
    k = 2 if scores.ndim == 1 else scores.shape[1]
    if num_labels is not None and num_labels != k:
        raise ValueError(
            f"roc_auc: num_labels={num_labels} but scores have {k} classes (shape {scores.shape}); "
            "pass one score column per class."
        )
    present = np.unique(labels)
    if present.size < 2:
        return float("nan")
    if k == 2:
        return float(skm.roc_auc_score(labels, scores if scores.ndim == 1 else scores[:, 1]))
    with warnings.catch_warnings():
        # Absent classes get nan plus an UndefinedMetricWarning from sklearn; they are dropped below.
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        per_class = skm.roc_auc_score(labels, scores, multi_class="ovr", average=None, labels=list(range(k)))
    return float(np.mean(per_class[present.astype(int)]))


def confusion_matrix(predictions: Any, labels: Any, num_labels: int) -> list[list[int]]:
    """Confusion matrix as nested python ints; rows are true labels, columns are predicted labels."""
    predictions, labels = _check_class_ids("confusion_matrix", predictions, labels)
    for name, values in (("predictions", predictions), ("labels", labels)):
        # sklearn silently drops ids outside `labels`, which would hide a num_labels mistake.
        if values.min() < 0 or values.max() >= num_labels:
            raise ValueError(
                f"confusion_matrix: {name} contain class ids outside [0, {num_labels}) "
                f"(min {values.min()}, max {values.max()}); pass the model's num_labels."
            )
    matrix = skm.confusion_matrix(labels, predictions, labels=list(range(num_labels)))
    return matrix.tolist()


def mcnemar(predictions_a: Any, predictions_b: Any, labels: Any) -> dict[str, float]:
    """McNemar's exact test: are two classifiers' accuracies on the *same* rows really different?

    Only the rows where exactly one model is right carry information: ``a_only`` (a right, b wrong) and
    ``b_only``. Under "equally good" each such row is a fair coin, so the two-sided p-value is the exact
    binomial test of ``a_only`` out of ``a_only + b_only`` at 0.5 (1.0 when the models never disagree on
    correctness). Paired, so it is far more sensitive than comparing two accuracies' confidence intervals.
    """
    predictions_a, labels = _check_class_ids("mcnemar", predictions_a, labels)
    predictions_b, _ = _check_class_ids("mcnemar", predictions_b, labels)
    right_a, right_b = predictions_a == labels, predictions_b == labels
    a_only, b_only = int((right_a & ~right_b).sum()), int((right_b & ~right_a).sum())
    p_value = 1.0 if a_only + b_only == 0 else float(stats.binomtest(a_only, a_only + b_only, 0.5).pvalue)
    return {"a_only": a_only, "b_only": b_only, "p_value": p_value}


def perplexity(mean_nll: float) -> float:
    """Perplexity ``exp(mean_nll)`` from the mean per-token negative log-likelihood; ``inf`` on overflow."""
    try:
        return math.exp(mean_nll)
    except OverflowError:
        return float("inf")


def softmax(logits: Any) -> np.ndarray:
    """Float64 softmax over the last axis (scipy's, numerically stable)."""
    return scipy.special.softmax(_to_numpy(logits).astype(np.float64), axis=-1)


def classification_metrics(logits: Any, labels: Any) -> dict[str, float]:
    """Accuracy, precision/recall/F1 (binary when k == 2, always macro) and ROC-AUC from (n, k) logits."""
    logits, labels = _check_pair(
        "classification_metrics", logits, labels, noun="logits", singular="row of logits"
    )
    if logits.ndim != 2 or logits.shape[1] < 2:
        raise ValueError(
            f"classification_metrics: logits must have shape (n, num_labels) with num_labels >= 2, "
            f"got shape {logits.shape}; for a regression head compute an error metric instead."
        )
    num_labels = logits.shape[1]
    predictions = logits.argmax(axis=-1)
    result = {"accuracy": accuracy(predictions, labels)}
    if num_labels == 2:
        result.update(precision_recall_f1(predictions, labels, average="binary", pos_label=1))
    macro = precision_recall_f1(predictions, labels, average="macro")
    result.update({f"{name}_macro": value for name, value in macro.items()})
    result["roc_auc"] = roc_auc(softmax(logits), labels, num_labels=num_labels)
    return result


def _logits_and_labels(eval_pred: EvalPrediction | tuple[Any, Any]) -> tuple[Any, Any]:
    if hasattr(eval_pred, "predictions"):
        predictions, labels = eval_pred.predictions, eval_pred.label_ids
    else:
        predictions, labels = eval_pred[0], eval_pred[1]
    # Models that also return hidden states or attentions hand the Trainer a tuple; logits come first.
    if isinstance(predictions, tuple):
        predictions = predictions[0]
    return predictions, labels


def compute_classification_metrics(eval_pred: EvalPrediction | tuple[Any, Any]) -> dict[str, float]:
    """``Trainer(compute_metrics=...)`` adapter: classification_metrics on an EvalPrediction or (logits, labels)."""
    return classification_metrics(*_logits_and_labels(eval_pred))


def load_evaluate_metrics(names: Sequence[str]) -> list:
    """`evaluate` metric modules by Hub id (e.g. 'matthews_correlation') or local path (a metric script or its
    folder). Loading runs the module's code: name only modules you trust."""
    import evaluate  # imported here: it pulls in datasets' download machinery, needed only when asked for

    modules = []
    for name in names:
        try:
            modules.append(evaluate.load(name))
        except Exception as err:  # evaluate raises FileNotFoundError, ConnectionError, ImportError, ...
            raise UserInputError(
                f"extra_metrics: could not load the evaluate metric {name!r} ({type(err).__name__}: {err}). "
                "Give the path of a local metric script or its folder, or a Hub id this machine can reach "
                "(offline, Hub metrics are only found in the local evaluate cache)."
            ) from err
    return modules


def evaluate_module_metrics(
    modules: Sequence, predictions: Any, labels: Any, taken: Iterable[str] = ()
) -> dict:
    """Every numeric value the `evaluate` modules return for class-id predictions; a name already in `taken`
    (hfkit's own metrics) gets an ``evaluate_`` prefix instead of replacing hfkit's value."""
    taken, result = set(taken), {}
    for module in modules:
        values = module.compute(
            predictions=_to_numpy(predictions).tolist(), references=_to_numpy(labels).tolist()
        )
        for key, value in (values or {}).items():
            if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
                name = f"evaluate_{key}" if key in taken or key in result else key
                result[name] = float(value)
    return result


def classification_metrics_with(modules: Sequence) -> Callable[[EvalPrediction], dict[str, float]]:
    """A ``compute_metrics`` giving hfkit's classification metrics plus those of `evaluate` modules."""

    def compute(eval_pred: EvalPrediction | tuple[Any, Any]) -> dict[str, float]:
        logits, labels = _logits_and_labels(eval_pred)
        result = classification_metrics(logits, labels)
        predictions = _to_numpy(logits).argmax(axis=-1)
        result.update(evaluate_module_metrics(modules, predictions, labels, taken=result))
        return result

    return compute
