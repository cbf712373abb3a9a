"""Tests for hfkit.metrics against values worked out by hand (not by calling scikit-learn)."""

import json
import math
import warnings

import numpy as np
import pytest
import torch
from transformers import EvalPrediction

from hfkit import metrics

# Binary example: preds [1,0,1,1] vs labels [1,0,0,1] -> TP=2, FP=1, FN=0, TN=1.
BIN_PREDS = [1, 0, 1, 1]
BIN_LABELS = [1, 0, 0, 1]

# 3-class example: labels [0,0,1,1,2,2], preds [0,1,1,1,2,0].
#   class 0: predicted at idx 0,5 (TP 1) -> P 1/2; true at idx 0,1 -> R 1/2; F1 1/2
#   class 1: predicted at idx 1,2,3 (TP 2) -> P 2/3; true at idx 2,3 -> R 1;   F1 4/5
#   class 2: predicted at idx 4 (TP 1)     -> P 1;   true at idx 4,5 -> R 1/2; F1 2/3
MC_PREDS = [0, 1, 1, 1, 2, 0]
MC_LABELS = [0, 0, 1, 1, 2, 2]

# 3-class probabilities (rows sum to 1) for labels [0,0,1,1,2,2]. One-vs-rest pair counts:
#   class 0: positives .6,.3 vs negatives .45,.1,.2,.5 -> 4 + 2 = 6/8 = 0.75
#   class 1: positives .35,.7 vs negatives .3,.5,.2,.1 -> 3 + 4 = 7/8 = 0.875
#   class 2: positives .6,.4 vs negatives .1,.2,.2,.2  -> 4 + 4 = 8/8 = 1.0
#   macro = (0.75 + 0.875 + 1.0) / 3 = 0.875
MC_PROBS = np.array(
    [
        [0.6, 0.3, 0.1],
        [0.3, 0.5, 0.2],
        [0.45, 0.35, 0.2],
        [0.1, 0.7, 0.2],
        [0.2, 0.2, 0.6],
        [0.5, 0.1, 0.4],
    ]
)

# Binary logits whose argmax is BIN_PREDS; P(class 1) rises with the margins 2, -3, 1, 0.5.
# Against BIN_LABELS the positives (margins 2, 0.5) beat negatives (-3, 1) in 3 of 4 pairs -> AUC 0.75.
BIN_LOGITS = np.array([[0.0, 2.0], [3.0, 0.0], [0.0, 1.0], [0.0, 0.5]])


def test_accuracy_binary():
    assert metrics.accuracy(BIN_PREDS, BIN_LABELS) == pytest.approx(0.75)


def test_precision_recall_f1_binary():
    result = metrics.precision_recall_f1(BIN_PREDS, BIN_LABELS)
    assert result == pytest.approx({"precision": 2 / 3, "recall": 1.0, "f1": 0.8})


def test_precision_recall_f1_pos_label_zero():
    # Treating class 0 as positive: TP=1 (idx 1), FP=0, FN=1 (idx 2) -> P 1, R 1/2, F1 2/3.
    result = metrics.precision_recall_f1(BIN_PREDS, BIN_LABELS, pos_label=0)
    assert result == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3})


def test_precision_recall_f1_macro_three_classes():
    result = metrics.precision_recall_f1(MC_PREDS, MC_LABELS, average="macro")
    assert result["precision"] == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)  # 13/18
    assert result["recall"] == pytest.approx((1 / 2 + 1 + 1 / 2) / 3)  # 2/3
    assert result["f1"] == pytest.approx((1 / 2 + 4 / 5 + 2 / 3) / 3)  # 59/90
    assert metrics.accuracy(MC_PREDS, MC_LABELS) == pytest.approx(4 / 6)


def test_precision_recall_f1_absent_positive_class_is_zero_without_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = metrics.precision_recall_f1([0, 0, 0], [0, 0, 0])
    assert result == {"precision": 0.0, "recall": 0.0, "f1": 0.0}


@pytest.mark.parametrize(
    ("scores", "labels", "expected"),
    [
        # positives .35,.8 vs negatives .1,.4: .35>.1, .8>.1, .8>.4 -> 3/4
        ([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1], 0.75),
        # perfectly ranked
        ([0.1, 0.2, 0.7, 0.9], [0, 0, 1, 1], 1.0),
        # fully inverted
        ([0.9, 0.7, 0.2, 0.1], [0, 0, 1, 1], 0.0),
        # a tie counts half: .5>.2 (1) + .5=.5 (0.5) + .9>.2, .9>.5 (2) -> 3.5/4
        ([0.2, 0.5, 0.5, 0.9], [0, 0, 1, 1], 0.875),
    ],
)
def test_roc_auc_binary_one_dimensional(scores, labels, expected):
    assert metrics.roc_auc(scores, labels) == pytest.approx(expected)


def test_roc_auc_binary_two_columns_uses_column_one():
    probs = [[0.9, 0.1], [0.6, 0.4], [0.65, 0.35], [0.2, 0.8]]
    assert metrics.roc_auc(probs, [0, 0, 1, 1], num_labels=2) == pytest.approx(0.75)


def test_roc_auc_multiclass_ovr_macro():
    assert metrics.roc_auc(MC_PROBS, MC_LABELS, num_labels=3) == pytest.approx(0.875)


def test_roc_auc_multiclass_missing_class_averages_present_classes():
    # Only the first four rows: labels [0,0,1,1], class 2 absent.
    #   class 0: positives .6,.3 vs negatives .45,.1 -> 2 + 1 = 3/4
    #   class 1: positives .35,.7 vs negatives .3,.5 -> 1 + 2 = 3/4
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = metrics.roc_auc(MC_PROBS[:4], [0, 0, 1, 1], num_labels=3)
    assert result == pytest.approx(0.75)


@pytest.mark.parametrize("scores", [[0.2, 0.7, 0.4], [[0.8, 0.2], [0.3, 0.7], [0.6, 0.4]], MC_PROBS[:3]])
def test_roc_auc_single_class_is_nan_without_warning(scores):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = metrics.roc_auc(scores, [1, 1, 1])
    assert math.isnan(result)


def test_roc_auc_num_labels_mismatch_raises():
    with pytest.raises(ValueError, match="num_labels=4 but scores have 3 classes"):
        metrics.roc_auc(MC_PROBS, MC_LABELS, num_labels=4)


def test_confusion_matrix_three_classes_is_json_ints():
    # rows = true label: true 0 -> preds [0,1]; true 1 -> [1,1]; true 2 -> [2,0]
    matrix = metrics.confusion_matrix(MC_PREDS, MC_LABELS, num_labels=3)
    assert matrix == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert all(type(v) is int for row in matrix for v in row)
    json.dumps(matrix)


def test_confusion_matrix_includes_unseen_classes_and_rejects_out_of_range():
    assert metrics.confusion_matrix([0, 0], [0, 1], num_labels=3) == [[1, 0, 0], [1, 0, 0], [0, 0, 0]]
    with pytest.raises(ValueError, match=r"outside \[0, 2\)"):
        metrics.confusion_matrix([0, 2], [0, 1], num_labels=2)


def test_perplexity():
    assert metrics.perplexity(math.log(20)) == pytest.approx(20.0)
    assert metrics.perplexity(0.0) == 1.0
    assert metrics.perplexity(1e6) == float("inf")


def test_softmax_is_stable_and_normalised():
    probs = metrics.softmax([[1000.0, 1001.0], [-1000.0, -1000.0], [0.0, math.log(3.0)]])
    assert probs.dtype == np.float64
    assert np.all(np.isfinite(probs))
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0)
    e = math.e
    np.testing.assert_allclose(probs, [[1 / (1 + e), e / (1 + e)], [0.5, 0.5], [0.25, 0.75]])


def test_softmax_one_dimensional_and_bfloat16_tensor():
    np.testing.assert_allclose(metrics.softmax(torch.tensor([0.0, 0.0, 0.0, 0.0])), [0.25] * 4)
    np.testing.assert_allclose(metrics.softmax(torch.zeros(2, 2, dtype=torch.bfloat16)), [[0.5, 0.5]] * 2)


def test_classification_metrics_binary():
    result = metrics.classification_metrics(BIN_LOGITS, BIN_LABELS)
    # macro: class 0 -> P 1, R 1/2, F1 2/3; class 1 -> P 2/3, R 1, F1 4/5
    expected = {
        "accuracy": 0.75,
        "precision": 2 / 3,
        "recall": 1.0,
        "f1": 0.8,
        "precision_macro": (1 + 2 / 3) / 2,
        "recall_macro": (1 / 2 + 1) / 2,
        "f1_macro": (2 / 3 + 4 / 5) / 2,
        "roc_auc": 0.75,
    }
    assert result == pytest.approx(expected)
    assert all(type(v) is float for v in result.values())


def test_classification_metrics_three_classes():
    # argmax of MC_PROBS rows: [0,1,0,1,2,0] vs labels [0,0,1,1,2,2] -> 3 correct of 6.
    #   class 0: predicted idx 0,2,5 (TP 1) -> P 1/3; R 1/2; F1 2/5
    #   class 1: predicted idx 1,3 (TP 1)   -> P 1/2; R 1/2; F1 1/2
    #   class 2: predicted idx 4 (TP 1)     -> P 1;   R 1/2; F1 2/3
    result = metrics.classification_metrics(np.log(MC_PROBS), MC_LABELS)
    assert set(result) == {"accuracy", "precision_macro", "recall_macro", "f1_macro", "roc_auc"}
    assert result["accuracy"] == pytest.approx(0.5)
    assert result["precision_macro"] == pytest.approx((1 / 3 + 1 / 2 + 1) / 3)
    assert result["recall_macro"] == pytest.approx(0.5)
    assert result["f1_macro"] == pytest.approx((2 / 5 + 1 / 2 + 2 / 3) / 3)
    assert result["roc_auc"] == pytest.approx(0.875)


def test_classification_metrics_rejects_single_column_logits():
    with pytest.raises(ValueError, match=r"shape \(2, 1\)"):
        metrics.classification_metrics([[0.3], [0.1]], [0, 1])


def test_compute_classification_metrics_accepts_eval_prediction_and_tuples():
    hidden = np.zeros((4, 3, 8))
    expected = metrics.classification_metrics(BIN_LOGITS, BIN_LABELS)
    assert expected["f1"] == pytest.approx(0.8)
    inputs = [
        EvalPrediction(predictions=BIN_LOGITS, label_ids=np.array(BIN_LABELS)),
        EvalPrediction(predictions=(BIN_LOGITS, hidden), label_ids=np.array(BIN_LABELS)),
        (BIN_LOGITS, np.array(BIN_LABELS)),
        ((BIN_LOGITS, hidden), np.array(BIN_LABELS)),
    ]
    for eval_pred in inputs:
        assert metrics.compute_classification_metrics(eval_pred) == pytest.approx(expected)


def test_torch_tensor_inputs():
    preds, labels = torch.tensor(BIN_PREDS), torch.tensor(BIN_LABELS)
    assert metrics.accuracy(preds, labels) == pytest.approx(0.75)
    assert metrics.precision_recall_f1(preds, labels)["f1"] == pytest.approx(0.8)
    assert metrics.confusion_matrix(preds, labels, num_labels=2) == [[1, 1], [0, 2]]
    logits = torch.tensor(BIN_LOGITS, dtype=torch.float32, requires_grad=True)
    assert metrics.classification_metrics(logits, labels)["roc_auc"] == pytest.approx(0.75)


@pytest.mark.parametrize(
    "call",
    [
        lambda p, y: metrics.accuracy(p, y),
        lambda p, y: metrics.precision_recall_f1(p, y),
        lambda p, y: metrics.confusion_matrix(p, y, num_labels=2),
        lambda p, y: metrics.roc_auc(p, y),
    ],
)
def test_length_mismatch_raises_with_counts(call):
    with pytest.raises(ValueError, match=r"got 3 (predictions|scores) but 4 labels"):
        call([1, 0, 1], [1, 0, 0, 1])


def test_classification_metrics_length_mismatch_raises_with_counts():
    with pytest.raises(ValueError, match="got 4 logits but 3 labels"):
        metrics.classification_metrics(BIN_LOGITS, [1, 0, 0])


def test_empty_inputs_raise():
    with pytest.raises(ValueError, match="got 0 predictions and 0 labels"):
        metrics.accuracy([], [])
    with pytest.raises(ValueError, match="got 0 logits and 0 labels"):
        metrics.classification_metrics(np.zeros((0, 2)), np.zeros(0, dtype=int))


def test_logits_passed_as_predictions_raise_helpful_error():
    with pytest.raises(ValueError, match="argmax"):
        metrics.accuracy(BIN_LOGITS, BIN_LABELS)


def test_mcnemar_counts_discordant_rows_and_matches_the_exact_binomial_by_hand():
    labels = [0] * 10
    # a right on rows 0-8, b right on rows 0-1 and 9: a_only = 7 (rows 2-8), b_only = 1 (row 9).
    a = [0] * 9 + [1]
    b = [0, 0] + [1] * 7 + [0]
    result = metrics.mcnemar(a, b, labels)
    assert result["a_only"] == 7 and result["b_only"] == 1
    # Two-sided exact: 2 * P(X <= 1), X ~ Binomial(8, 0.5) = 2 * (1 + 8) / 256.
    assert result["p_value"] == pytest.approx(2 * 9 / 256)
    swapped = metrics.mcnemar(b, a, labels)
    assert (swapped["a_only"], swapped["b_only"]) == (1, 7) and swapped["p_value"] == pytest.approx(
        2 * 9 / 256
    )


def test_mcnemar_same_correctness_is_p_one_and_bad_input_is_named():
    assert metrics.mcnemar([1, 0, 1], [1, 0, 1], [1, 1, 1]) == {"a_only": 0, "b_only": 0, "p_value": 1.0}
    assert metrics.mcnemar([1, 1], [0, 0], [1, 0])["p_value"] == 1.0  # one each way: no evidence
    assert metrics.mcnemar([1, 0], [0, 1], [1, 0])["p_value"] == pytest.approx(0.5)  # 2 of 2: 2 * 0.25
    with pytest.raises(ValueError, match="mcnemar: got 2 predictions but 3 labels"):
        metrics.mcnemar([1, 0], [1, 0, 1], [1, 0, 1])
    with pytest.raises(ValueError, match="mcnemar: predictions must be a 1-D array of class ids"):
        metrics.mcnemar(np.zeros((3, 2)), [1, 0, 1], [1, 0, 1])


def test_paired_t_test_matches_the_hand_computed_case():
    # differences 1, 2, 2: mean 5/3, sd sqrt(1/3), se 1/3, t = 5 with 2 df; for 2 df the two-sided p-value is
    # 1 - t / sqrt(t^2 + 2) = 1 - 5 / sqrt(27).
    result = metrics.paired_t_test([1, 2, 3], [2, 4, 5])
    assert result["mean_difference"] == pytest.approx(5 / 3)
    assert result["t"] == pytest.approx(5.0)
    assert result["df"] == 2
    assert result["p_value"] == pytest.approx(1 - 5 / math.sqrt(27))
    flipped = metrics.paired_t_test([2, 4, 5], [1, 2, 3])
    assert flipped["t"] == pytest.approx(-5.0) and flipped["p_value"] == pytest.approx(result["p_value"])


def test_paired_t_test_edge_cases_and_bad_input():
    assert metrics.paired_t_test([1, 2], [1, 2])["p_value"] == 1.0  # no difference at all
    assert metrics.paired_t_test([1, 2], [2, 3])["p_value"] == 0.0  # the same shift on every pair
    assert math.isnan(metrics.paired_t_test([1], [2])["p_value"])  # one pair: nothing to test
    with pytest.raises(ValueError, match="paired_t_test: needs two 1-D sequences of the same length"):
        metrics.paired_t_test([1, 2, 3], [1, 2])


def test_paired_bootstrap_hand_cases():
    # The same rows right: difference 0, an interval of [0, 0], p = 1.
    same = metrics.paired_bootstrap([1, 0, 1, 1], [1, 0, 1, 1], resamples=99)
    assert (same["difference"], same["ci_low"], same["ci_high"], same["p_value"]) == (0.0, 0.0, 0.0, 1.0)
    # b right on every row, a on none: every resample gives +1, so p = 2 * (0 + 1) / (99 + 1).
    better = metrics.paired_bootstrap([0, 0, 0], [1, 1, 1], resamples=99)
    assert (better["difference"], better["ci_low"], better["ci_high"]) == (1.0, 1.0, 1.0)
    assert better["p_value"] == pytest.approx(0.02)


def test_paired_bootstrap_counts_a_row_once_however_many_seeds():
    rng = np.random.default_rng(0)
    a = (rng.random(200) < 0.8).astype(int)
    b = a.copy()
    b[:12] = 1 - b[:12]  # 12 rows change, some for the better, some for the worse
    single = metrics.paired_bootstrap(a, b, resamples=2000, seed=1)
    # Three seeds that agree row for row carry no more evidence than one: the same difference and p-value
    # (pooling the 3 x 200 rows as independent would shrink the p-value).
    tripled = metrics.paired_bootstrap(np.stack([a] * 3), np.stack([b] * 3), resamples=2000, seed=1)
    assert tripled == single
    assert single["difference"] == pytest.approx(b.mean() - a.mean())
    # Seeds that disagree: each row's correctness is averaged over the seeds first.
    seeds_a, seeds_b = np.array([[1, 0], [0, 0]]), np.array([[1, 1], [1, 0]])
    assert metrics.paired_bootstrap(seeds_a, seeds_b, resamples=9)["difference"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="paired_bootstrap: needs two arrays of the same shape"):
        metrics.paired_bootstrap([1, 0], [1, 0, 1])
