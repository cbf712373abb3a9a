"""hfkit.reports (records and their rendering), hfkit.evaluation (metrics from raw text, size on disk, latency)
and the recipes' report builders."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import ClassLabel, Dataset
from transformers import BertForSequenceClassification

from hfkit.evaluation import (
    evaluate_classifier,
    measure_classifiers,
    measure_latencies_together,
    predict_logits,
    size_on_disk_mb,
)
from hfkit.metrics import classification_metrics
from hfkit.recipes.compare import compare_report
from hfkit.recipes.distill import distill_report
from hfkit.reports import (
    ModelMeasurement,
    Report,
    Table,
    classification_report,
    comparison_report,
    format_metric,
    format_table,
    markdown_table,
    percent,
)
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
    (tmp_path / "training_args.bin").write_bytes(b"x" * 100)  # Trainer's settings, not weights
    expected = (tmp_path / "model.safetensors").stat().st_size / 1e6
    assert size_on_disk_mb(str(tmp_path)) == pytest.approx(expected)


def test_percent_everywhere_for_fractions_of_examples():
    assert percent(0.93031) == "93.03%" and format_metric("eval_accuracy", 0.5) == "50.00%"
    assert format_metric("f1_macro", 0.25) == "25.00%" and format_metric("roc_auc", 1.0) == "100.00%"
    assert format_metric("loss", 0.25) == "0.25" and format_metric("perplexity", 12345.6) == "1.235e+04"


def test_tables_align_text_and_escape_markdown():
    text = format_table([["a", 1234567, 0.5], ["longer name", 2, 1e-5]], ["model", "n", "x"])
    lines = text.splitlines()
    assert lines[0].split() == ["model", "n", "x"] and set(lines[1]) <= {"-", " "}
    assert "1,234,567" in lines[2] and "1e-05" in lines[3] and len({len(line) for line in lines}) == 1
    md = markdown_table([["a|b", 0.5]], ["name", "value"])
    assert md.splitlines() == ["| name | value |", "|---|---|", "| a\\|b | 0.5 |"]


def test_classification_report_is_headed_by_the_trained_model_and_data(tmp_path):
    report = classification_report(
        {"eval_loss": 0.31, "eval_accuracy": 0.887, "eval_runtime": 1.2}, [[5, 1], [2, 7]], ["neg", "pos"],
        15, model="outputs/run", base_model="wheel:base", data="data/val.tsv", parameters={"total": 10, "trainable": 4},
    )  # fmt: skip
    text = report.text()
    assert text.splitlines()[0] == (
        "Evaluation report: outputs/run (fine-tuned from wheel:base) on data/val.tsv (15 examples)"
    )
    assert "88.70%" in text and "runtime" not in text and "pred pos" in text
    paths = report.save(str(tmp_path))
    saved = json.loads(Path(paths["json"]).read_text())
    # The JSON keeps fractions, the base model under "model" (what model cards read) and the trained one.
    assert saved["metrics"]["accuracy"] == 0.887 and saved["model"] == "wheel:base"
    assert saved["trained_model"] == "outputs/run" and saved["confusion_matrix"] == [[5, 1], [2, 7]]
    md = Path(paths["md"]).read_text()
    assert md.startswith("# Evaluation report: outputs/run") and "| accuracy | 88.70% |" in md


def test_report_markdown_has_every_table_and_the_appendix_only_there():
    report = Report("r", "Title", [Table(["a"], [[1]], "caption one"), Table(["b"], [[2]])], ["a note"],
                    appendix=["## Settings"])  # fmt: skip
    assert "## Settings" not in report.text() and "## Settings" in report.markdown()
    assert report.markdown().count("|---|") == 2 and "caption one" in report.text()


def test_distill_and_compare_reports_show_percent(tmp_path):
    rows = [ModelMeasurement("teacher", 100, 4.0, 0.9, 0.91, 200.0),
            ModelMeasurement("student", 50, 2.0, 0.88, 0.87, 50.0, 4.0)]  # fmt: skip
    report = distill_report(rows, "out/student", "out/teacher", "val.tsv", 1000, 2.0, 0.5)
    assert report.title == "Distilled student out/student vs teacher out/teacher on val.tsv (1,000 examples)"
    assert "90.00%" in report.text() and "4.00x" in report.text()
    assert report.data["models"][1]["accuracy"] == 0.88 and report.data["teacher"] == "out/teacher"
    rows = [{"name": "a", "accuracy": 0.9, "f1": 0.8}, {"name": "b", "accuracy": 0.91, "f1": 0.81,
            "baseline_only": 3, "model_only": 4, "p_value": 1.0}]  # fmt: skip
    text = compare_report(rows, "val.tsv", 100).text()
    assert "91.00%" in text and "only a right" in text


def test_measure_classifiers_reuses_known_metrics(tmp_path, tiny_bert, tiny_tokenizer, monkeypatch):
    tiny_bert.save_pretrained(tmp_path)
    small = BertForSequenceClassification(tiny_bert_config(tiny_tokenizer, layers=1, hidden=16))
    small.save_pretrained(tmp_path / "small")
    raw = raw_toy(12)
    timed = {}

    def fake_latencies(models, texts, batch_size, rounds, max_length):
        timed.update(names=list(models), texts=texts, batch_size=batch_size, rounds=rounds)
        return {"a": 8.0, "b": 2.0}

    # Patched where measure_classifiers looks it up, so the rows are checked against known latencies.
    monkeypatch.setattr(
        sys.modules[measure_classifiers.__module__], "measure_latencies_together", fake_latencies
    )
    known = {"accuracy": 0.125, "f1": 0.25}
    rows = measure_classifiers(
        {"a": (tiny_bert, tiny_tokenizer, str(tmp_path)), "b": (small, tiny_tokenizer, str(tmp_path / "small"))},
        raw, "text", latency_batch_size=4, rounds=2, known_metrics={"b": known},
    )  # fmt: skip
    assert rows[1].accuracy == 0.125 and rows[1].f1 == 0.25
    assert rows[0].accuracy == evaluate_classifier(tiny_bert, tiny_tokenizer, raw, "text")["accuracy"]
    # Each row's own parameters and weight file, its own latency, and the speed-up over the first row.
    assert [r.parameters for r in rows] == [
        sum(p.numel() for p in m.parameters()) for m in (tiny_bert, small)
    ]
    sizes = [
        (tmp_path / "model.safetensors").stat().st_size,
        (tmp_path / "small" / "model.safetensors").stat().st_size,
    ]
    assert [r.size_mb for r in rows] == pytest.approx([s / 1e6 for s in sizes])
    assert [(r.latency_ms, r.speedup) for r in rows] == [(8.0, 1.0), (2.0, 4.0)]
    assert timed == {"names": ["a", "b"], "texts": raw["text"][:4], "batch_size": 4, "rounds": 2}


def test_speedup_is_relative_to_first_row():
    rows = [
        ModelMeasurement("teacher", 100, 4.0, 0.9, 0.9, 200.0),
        ModelMeasurement("student", 50, 2.0, 0.88, 0.87, 50.0),
    ]
    as_dicts, table = comparison_report(rows)
    assert [r["speedup"] for r in as_dicts] == [1.0, 4.0]
    assert "4.00x" in table and table.splitlines()[0].split()[:2] == ["model", "parameters"]


class _SlowBert(BertForSequenceClassification):
    """A tiny BERT that takes at least 20 ms a forward."""

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None):
        time.sleep(0.02)
        return super().forward(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        )


def record_calls(models: dict, calls: list[str]) -> None:
    """Append a model's name to `calls` on each of its forwards."""
    for name, (model, _) in models.items():
        model.register_forward_pre_hook(lambda module, args, name=name: calls.append(name))


def test_latencies_measured_together_rank_models_and_run_every_round(tiny_tokenizer):
    models = {
        "fast": (BertForSequenceClassification(tiny_bert_config(tiny_tokenizer)), tiny_tokenizer),
        "slow": (_SlowBert(tiny_bert_config(tiny_tokenizer)), tiny_tokenizer),
    }
    calls: list[str] = []
    record_calls(models, calls)
    texts = ["good w1 w2", "bad w3"] * 4
    ms = measure_latencies_together(models, texts, batch_size=4, rounds=5)
    assert set(ms) == {"fast", "slow"}
    assert ms["slow"] >= 20 and ms["slow"] > ms["fast"] + 10
    # Round-robin: each round runs fast's forwards, then slow's (warm-ups and the timed one together), so the
    # runs of one model alternate once per round; timing one model after the other would give [fast, slow].
    runs = [name for i, name in enumerate(calls) if i == 0 or calls[i - 1] != name]
    assert runs == ["fast", "slow"] * 5, runs
    # Every round times each model once, after torch.utils.benchmark.Timer's two warm-up calls.
    assert calls.count("fast") == calls.count("slow") == 3 * 5


def test_latencies_of_three_models_interleave_in_their_given_order(tiny_tokenizer):
    models = {
        name: (BertForSequenceClassification(tiny_bert_config(tiny_tokenizer, layers=1)), tiny_tokenizer)
        for name in ("c", "a", "b")
    }
    calls: list[str] = []
    record_calls(models, calls)
    measure_latencies_together(models, ["good w1", "bad w2"], batch_size=2, rounds=3)
    runs = [name for i, name in enumerate(calls) if i == 0 or calls[i - 1] != name]
    assert runs == ["c", "a", "b"] * 3, runs
