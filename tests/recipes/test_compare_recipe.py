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
