"""recipes/compare.py with tiny models: the same rows for every model, McNemar counts checked by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from hfkit.data import DataArguments, load_classification_data
from tests.conftest import write_tiny_model, write_toy_tsv
from tests.recipes.test_classify_recipe import load_recipe

compare = load_recipe("compare")


def data_args(train) -> list[str]:
    return ["--train_file", str(train), "--text_column", "sentence", "--label_column", "sentiment",
            "--validation_split", "0.3", "--split_seed", "7"]  # fmt: skip


def own_predictions(folder, texts) -> np.ndarray:
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    with torch.no_grad():
        return np.array([model(**tokenizer(t, return_tensors="pt")).logits.argmax(-1).item() for t in texts])


def test_compare_counts_rows_only_one_model_gets_right(tmp_path, tiny_tokenizer, capsys):
    train = write_toy_tsv(tmp_path / "train.tsv", 120, seed=3)
    a = write_tiny_model(tmp_path / "a", tiny_tokenizer, layers=1)
    b = write_tiny_model(tmp_path / "b", tiny_tokenizer, layers=2, hidden=16)
    model_b = AutoModelForSequenceClassification.from_pretrained(b)
    torch.manual_seed(1)
    with torch.no_grad():  # a random tiny model predicts one class for everything: give b a head that varies
        model_b.classifier.weight.normal_(0, 20.0)
    model_b.save_pretrained(b)
    out = tmp_path / "cmp" / "report.json"
    rows = compare.main(["--models", str(a), str(a), str(b), "--names", "base", "same", "other",
                         "--output_file", str(out), *data_args(train)])  # fmt: skip

    raw, _ = load_classification_data(DataArguments(train_file=str(train), text_column="sentence",
                                                    label_column="sentiment", validation_split=0.3, split_seed=7))  # fmt: skip
    texts, gold = raw["validation"]["sentence"], np.asarray(raw["validation"]["labels"])
    right_a, right_b = own_predictions(a, texts) == gold, own_predictions(b, texts) == gold
    assert (right_a != right_b).sum() >= 3  # the two tiny models really differ on these rows
    assert rows[0]["accuracy"] == pytest.approx(right_a.mean()) and "p_value" not in rows[0]
    assert (rows[1]["baseline_only"], rows[1]["model_only"], rows[1]["p_value"]) == (0, 0, 1.0)
    assert rows[2]["accuracy"] == pytest.approx(right_b.mean())
    assert rows[2]["baseline_only"] == int((right_a & ~right_b).sum())
    assert rows[2]["model_only"] == int((right_b & ~right_a).sum())
    assert 0.0 < rows[2]["p_value"] <= 1.0
    assert json.loads(out.read_text())["models"] == rows
    printed = capsys.readouterr().out
    assert f"{len(gold)} examples); baseline: base" in printed and "p (McNemar)" in printed


def test_compare_rejects_one_model_and_a_model_of_other_labels(tmp_path, tiny_tokenizer):
    train = write_toy_tsv(tmp_path / "train.tsv", 60, seed=3)
    a = write_tiny_model(tmp_path / "a", tiny_tokenizer)
    with pytest.raises(ValueError, match="at least two models"):
        compare.main(["--models", str(a), *data_args(train)])
    other = write_tiny_model(tmp_path / "other", tiny_tokenizer, id2label={0: "bad", 1: "good"},
                             label2id={"bad": 0, "good": 1})  # fmt: skip
    with pytest.raises(
        ValueError, match=r"predicts labels \['bad', 'good'\] but the data has \['neg', 'pos'\]"
    ):
        compare.main(["--models", str(a), str(other), *data_args(train)])


def test_compare_groups_pair_seeds_by_position_and_test_the_design(tmp_path, tiny_tokenizer, capsys):
    train = write_toy_tsv(tmp_path / "train.tsv", 120, seed=3)
    folders = []
    for i, scale in enumerate([0.0, 0.0, 20.0, 20.0]):  # group "a": two copies of a random tiny model
        folder = write_tiny_model(tmp_path / f"m{i}", tiny_tokenizer, layers=1 if i < 2 else 2, hidden=16)
        if scale:  # group "b": two models whose heads vary with their seed
            model = AutoModelForSequenceClassification.from_pretrained(folder)
            torch.manual_seed(i)
            with torch.no_grad():
                model.classifier.weight.normal_(0, scale)
            model.save_pretrained(folder)
        folders.append(str(folder))
    out = tmp_path / "cmp" / "report.json"
    rows = compare.main(["--models", *folders, "--groups", "a", "a", "b", "b", "--output_file", str(out),
                         *data_args(train)])  # fmt: skip

    raw, _ = load_classification_data(DataArguments(train_file=str(train), text_column="sentence",
                                                    label_column="sentiment", validation_split=0.3, split_seed=7))  # fmt: skip
    texts, gold = raw["validation"]["sentence"], np.asarray(raw["validation"]["labels"])
    right = [own_predictions(f, texts) == gold for f in folders]
    # Model 3 (b's second seed) is tested against model 1 (a's second seed), not against model 0.
    assert rows[3]["baseline_only"] == int((right[1] & ~right[3]).sum())
    assert rows[3]["model_only"] == int((right[3] & ~right[1]).sum())
    assert "p_value" not in rows[0] and "p_value" not in rows[1]  # the first group is the baseline
    saved = json.loads(out.read_text())["groups"]
    assert [g["group"] for g in saved] == ["a", "b"] and "tests" not in saved[0]
    tests = saved[1]["tests"]
    expected = np.mean([right[2].mean() - right[0].mean(), right[3].mean() - right[1].mean()])
    assert tests["difference"] == pytest.approx(expected)
    assert [(m["b_only"], m["a_only"]) for m in tests["mcnemar"]] == [
        (int((right[k + 2] & ~right[k]).sum()), int((right[k] & ~right[k + 2]).sum())) for k in (0, 1)
    ]
    assert tests["t_test"]["df"] == 1
    assert tests["bootstrap"]["difference"] == pytest.approx(expected)
    assert "bootstrap 95% CI, p" in capsys.readouterr().out
    with pytest.raises(ValueError, match="as many models \\(seeds\\) in each group"):
        compare.main(["--models", *folders[:3], "--groups", "a", "a", "b", *data_args(train)])
