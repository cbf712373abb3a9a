"""`evaluate` metric modules next to hfkit's own metrics (`extra_metrics`), with a local metric script."""

from __future__ import annotations

import numpy as np
import pytest
from transformers import EvalPrediction

from hfkit import ClassifierConfig, ClassifierTrainer
from hfkit.errors import UserInputError
from hfkit.metrics import classification_metrics, classification_metrics_with, load_evaluate_metrics
from tests.conftest import toy_dataset

SCRIPT = """
import datasets
import evaluate


class {cls}(evaluate.Metric):
    def _info(self):
        features = datasets.Features({{"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}})
        return evaluate.MetricInfo(description="test metric", citation="", features=features)

    def _compute(self, predictions, references):
        classes = sorted(set(references))
        recalls = [
            sum(p == r == c for p, r in zip(predictions, references)) / sum(r == c for r in references)
            for c in classes
        ]
        return {{"{key}": 1 - sum(recalls) / len(recalls), "note": "not a number"}}
"""


def write_metric(root, name: str, key: str):
    folder = root / name
    folder.mkdir()
    (folder / f"{name}.py").write_text(SCRIPT.format(cls=name.title().replace("_", ""), key=key))
    return str(folder)


def test_a_local_evaluate_module_is_computed_next_to_the_built_in_metrics(tmp_path):
    modules = load_evaluate_metrics([write_metric(tmp_path, "balanced_error", "balanced_error")])
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [0.0, 3.0], [1.0, 0.0]])  # predicts 0, 1, 1, 0
    labels = np.array([0, 1, 0, 0])
    result = classification_metrics_with(modules)(EvalPrediction(predictions=logits, label_ids=labels))
    assert result["balanced_error"] == pytest.approx(1 - (2 / 3 + 1) / 2)
    assert {k: result[k] for k in classification_metrics(logits, labels)} == classification_metrics(
        logits, labels
    )
    assert "note" not in result  # only numbers become metrics


def test_a_name_hfkit_already_reports_is_prefixed_not_replaced(tmp_path):
    modules = load_evaluate_metrics([write_metric(tmp_path, "my_accuracy", "accuracy")])
    logits, labels = np.array([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0]]), np.array([0, 1, 1])
    result = classification_metrics_with(modules)((logits, labels))
    # hfkit's accuracy 2/3; the module's "accuracy" is its balanced error, 1 - (1 + 1/2) / 2 = 1/4
    assert result["accuracy"] == pytest.approx(2 / 3) and result["evaluate_accuracy"] == pytest.approx(0.25)


def test_a_metric_that_cannot_be_loaded_names_the_fix(tmp_path):
    with pytest.raises(UserInputError, match="could not load the evaluate metric .*local metric script"):
        load_evaluate_metrics([str(tmp_path / "no_such_metric")])


def test_a_hub_metric_runs_downloaded_code_only_when_trusted(monkeypatch):
    import evaluate

    loaded = []
    monkeypatch.setattr(evaluate, "load", lambda name: loaded.append(name) or name)
    with pytest.raises(UserInputError, match=r"\['matthews_correlation'\]: .*set trust_remote_metrics: true"):
        load_evaluate_metrics(["matthews_correlation"])
    with pytest.raises(UserInputError, match="trust_remote_metrics"):
        load_evaluate_metrics(["evaluate-metric/f1"])
    assert loaded == []  # refused before evaluate fetched anything
    assert load_evaluate_metrics(["matthews_correlation"], trust_remote_code=True) == ["matthews_correlation"]


def test_classifier_config_opts_in_to_hub_metrics(tmp_path, tiny_bert, tiny_tokenizer, monkeypatch):
    import evaluate

    monkeypatch.setattr(evaluate, "load", lambda name: pytest.fail(f"{name} loaded without the opt-in"))

    def trainer(**config):
        args = ClassifierConfig(
            output_dir=str(tmp_path / "out"),
            extra_metrics=["matthews_correlation"],
            report_to=[],
            eval_strategy="no",
            **config,
        )
        return ClassifierTrainer(model=tiny_bert, args=args, processing_class=tiny_tokenizer)

    with pytest.raises(UserInputError, match="trust_remote_metrics"):
        trainer()
    monkeypatch.setattr(evaluate, "load", lambda name: write_metric)  # stands for the downloaded module
    trainer(trust_remote_metrics=True)


def test_classifier_trainer_reports_extra_metrics_at_every_evaluation(tmp_path, tiny_bert, tiny_tokenizer):
    args = ClassifierConfig(
        output_dir=str(tmp_path / "out"), extra_metrics=[write_metric(tmp_path, "balanced_error", "balanced_error")],
        report_to=[], plot_curves=False,
    )  # fmt: skip
    trainer = ClassifierTrainer(
        model=tiny_bert,
        args=args,
        eval_dataset=toy_dataset(tiny_tokenizer, 40),
        processing_class=tiny_tokenizer,
    )
    metrics = trainer.evaluate()
    assert 0.0 <= metrics["eval_balanced_error"] <= 1.0 and "eval_accuracy" in metrics
