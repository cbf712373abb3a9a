"""Offline evaluation metrics for classification and language modelling, built on scikit-learn.

Every function is pure and accepts python lists, numpy arrays or torch tensors. The built-in metrics need no
network; `evaluate` modules (Hub ids or local metric scripts) come on top when a config names them
(`extra_metrics`), loaded by ``load_evaluate_metrics``.
"""

from __future__ import annotations

import math
import os
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
    "paired_bootstrap",
    "paired_comparison",
    "paired_t_test",
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


def paired_t_test(values_a: Sequence[float], values_b: Sequence[float]) -> dict[str, float]:
    """Paired t-test of ``values_b - values_a`` (e.g. one accuracy per seed for two recipes, same seeds).

    The unit is the seed, not the row: this is the test that sees seed-to-seed spread. Returns the mean
    difference, t, the degrees of freedom (pairs - 1) and the two-sided p-value (NaN with fewer than 2 pairs;
    1.0 when every difference is 0, ``0.0`` when they are all equal and non-zero).
    """
    a, b = np.asarray(values_a, dtype=float), np.asarray(values_b, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(
            f"paired_t_test: needs two 1-D sequences of the same length (one value per pair), got shapes "
            f"{a.shape} and {b.shape}."
        )
    difference = b - a
    n = len(difference)
    mean = float(difference.mean()) if n else float("nan")
    if n < 2:
        return {"mean_difference": mean, "t": float("nan"), "df": max(n - 1, 0), "p_value": float("nan")}
    sd = float(difference.std(ddof=1))
    if sd == 0.0:  # every pair moved by the same amount: no spread to test against
        return {"mean_difference": mean, "t": float("nan"), "df": n - 1, "p_value": 1.0 if mean == 0 else 0.0}
    t = mean / (sd / math.sqrt(n))
    p_value = float(2 * stats.t.sf(abs(t), df=n - 1))
    return {"mean_difference": mean, "t": float(t), "df": n - 1, "p_value": p_value}


def paired_bootstrap(
    correct_a: Any, correct_b: Any, resamples: int = 10_000, seed: int = 0, confidence: float = 0.95
) -> dict[str, float]:
    """Paired bootstrap over rows of the accuracy difference ``b - a``.

    ``correct_a`` / ``correct_b``: 1 where the model got a row right, shape (rows,) or (seeds, rows); with
    several seeds each row's correctness is first averaged over the seeds, so a row counts once however many
    seeds were run (pooling seeds as separate rows would count each sentence several times). Rows are
    resampled with replacement; returns the observed difference, the percentile interval and the two-sided
    p-value ``2 * min(P(d* <= 0), P(d* >= 0))`` (with the +1 correction, so never exactly 0).
    """
    a, b = np.asarray(correct_a, dtype=float), np.asarray(correct_b, dtype=float)
    if a.shape != b.shape or a.ndim not in (1, 2) or a.shape[-1] == 0:
        raise ValueError(
            f"paired_bootstrap: needs two arrays of the same shape, (rows,) or (seeds, rows), with rows > 0; "
            f"got shapes {a.shape} and {b.shape}."
        )
    if resamples < 1 or not 0 < confidence < 1:
        raise ValueError(
            f"paired_bootstrap: resamples must be >= 1 and 0 < confidence < 1, got {resamples}, {confidence}."
        )
    per_row = (b.mean(axis=0) if b.ndim == 2 else b) - (a.mean(axis=0) if a.ndim == 2 else a)
    rng = np.random.default_rng(seed)
    rows = len(per_row)
    draws = per_row[rng.integers(0, rows, size=(resamples, rows))].mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(draws, [tail, 1 - tail])
    p_value = min(1.0, 2 * min((np.sum(draws <= 0) + 1), (np.sum(draws >= 0) + 1)) / (resamples + 1))
    return {
        "difference": float(per_row.mean()),
        "ci_low": float(low),
        "ci_high": float(high),
        "p_value": p_value,
    }


def paired_comparison(
    predictions_a: Sequence[Any], predictions_b: Sequence[Any], labels: Any, resamples: int = 10_000
) -> dict[str, Any]:
    """Model b against model a when each was trained once per seed and every seed scores the same rows.

    ``predictions_a[i]`` and ``predictions_b[i]`` are class ids of seed i (paired by position). Returns the
    accuracy difference b - a (mean over seeds, a fraction), McNemar's exact test per seed (``mcnemar``), a
    paired t-test over the seeds' accuracies and a paired bootstrap over rows of the seed-averaged correctness:
    tests that respect the design (a row is one row, not one row per seed; the seeds' spread is the t-test's).
    """
    if len(predictions_a) != len(predictions_b) or not predictions_a:
        raise ValueError(
            f"paired_comparison: needs one prediction array per seed for each model, paired by position; got "
            f"{len(predictions_a)} and {len(predictions_b)}."
        )
    labels = _to_numpy(labels)
    per_seed = [mcnemar(a, b, labels) for a, b in zip(predictions_a, predictions_b, strict=True)]
    right_a = np.stack([_to_numpy(a) == labels for a in predictions_a])
    right_b = np.stack([_to_numpy(b) == labels for b in predictions_b])
    return {
        "difference": float(right_b.mean() - right_a.mean()),
        "mcnemar": per_seed,
        "t_test": paired_t_test(right_a.mean(axis=1), right_b.mean(axis=1)),
        "bootstrap": paired_bootstrap(right_a, right_b, resamples=resamples),
    }


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


def _is_local_path(name: str) -> bool:
    """A metric named by a path (the user chose that file), not by a Hub id."""
    return (
        os.path.exists(name)
        or name.startswith((".", "~", "/"))
        or name.endswith(".py")
        or name.count("/") > 1
    )


def load_evaluate_metrics(names: Sequence[str], trust_remote_code: bool = False) -> list:
    """`evaluate` metric modules by Hub id (e.g. 'matthews_correlation') or local path (a metric script or its
    folder). Loading runs the module's code: a Hub id (code downloaded from the Hub) needs `trust_remote_code`."""
    remote = [name for name in names if not _is_local_path(name)]
    if remote and not trust_remote_code:
        raise UserInputError(
            f"extra_metrics {remote}: evaluate would download each of these metrics' code from the Hub and run it. "
            "If you trust them, set trust_remote_metrics: true (in Python: load_evaluate_metrics' trust_remote_code); "
            "otherwise give the path of a local metric script or its folder."
        )
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
