"""Side-by-side measurements: metrics from raw text, size on disk, latency and speed-ups."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from datasets import ClassLabel, Dataset
from transformers import BertForSequenceClassification

from hfkit.evaluation import (
    ModelMeasurement,
    comparison_report,
    evaluate_classifier,
    measure_latencies_together,
    measure_latency_ms,
    predict_logits,
    size_on_disk_mb,
)
from hfkit.metrics import classification_metrics
from tests.conftest import tiny_bert_config, toy_texts


def raw_toy(n: int) -> Dataset:
    texts, labels = toy_texts(n, seed=7)
    return Dataset.from_dict({"text": texts, "labels": labels}).cast_column(
        "labels", ClassLabel(names=["bad", "good"])
    )


def test_evaluate_classifier_matches_unpadded_forward(tiny_bert, tiny_tokenizer):
    raw = raw_toy(20)
    tiny_bert.eval()
    with torch.no_grad():
        direct = np.stack(
            [tiny_bert(**tiny_tokenizer(t, return_tensors="pt")).logits[0].numpy() for t in raw["text"]]
        )
    metrics = evaluate_classifier(tiny_bert, tiny_tokenizer, raw, "text", batch_size=8)
    assert metrics == pytest.approx(classification_metrics(direct, np.array(raw["labels"])))


def test_predict_logits_keeps_row_order(tiny_bert, tiny_tokenizer):
    data = raw_toy(10).map(lambda b: tiny_tokenizer(b["text"]), batched=True, remove_columns=["text"])
    full = predict_logits(tiny_bert, tiny_tokenizer, data, batch_size=4)
    reversed_ = predict_logits(tiny_bert, tiny_tokenizer, data.select(range(9, -1, -1)), batch_size=3)
    np.testing.assert_allclose(full, reversed_[::-1], atol=1e-5)


def test_size_on_disk_counts_weights_only(tmp_path, tiny_bert):
    tiny_bert.save_pretrained(tmp_path)
    (tmp_path / "distill_projections.safetensors").write_bytes(b"x" * 1000)
    expected = (tmp_path / "model.safetensors").stat().st_size / 1e6
    assert size_on_disk_mb(str(tmp_path)) == pytest.approx(expected)


def test_latency_is_positive(tiny_bert, tiny_tokenizer):
    assert measure_latency_ms(tiny_bert, tiny_tokenizer, raw_toy(8)["text"], batch_size=8, repeats=3) > 0


def test_speedup_is_relative_to_first_row():
    rows = [
        ModelMeasurement("teacher", 100, 4.0, 0.9, 0.9, 200.0),
        ModelMeasurement("student", 50, 2.0, 0.88, 0.87, 50.0),
    ]
    as_dicts, table = comparison_report(rows)
    assert [r["speedup"] for r in as_dicts] == [1.0, 4.0]
    assert "4.00x" in table and table.splitlines()[0].split()[:2] == ["model", "parameters"]


class _SlowBert(BertForSequenceClassification):
    """A tiny BERT that takes at least 20 ms a forward and counts its calls."""

    calls = 0

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None):
        type(self).calls += 1
        time.sleep(0.02)
        return super().forward(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        )


def test_latencies_measured_together_rank_models_and_run_every_round(tiny_tokenizer):
    fast = BertForSequenceClassification(tiny_bert_config(tiny_tokenizer))
    slow = _SlowBert(tiny_bert_config(tiny_tokenizer))
    texts = ["good w1 w2", "bad w3"] * 4
    ms = measure_latencies_together(
        {"fast": (fast, tiny_tokenizer), "slow": (slow, tiny_tokenizer)}, texts, batch_size=4, rounds=5
    )
    assert set(ms) == {"fast", "slow"}
    assert ms["slow"] >= 20 and ms["slow"] > ms["fast"] + 10
    assert _SlowBert.calls == 2 + 5  # two warm-up passes, then one per round
