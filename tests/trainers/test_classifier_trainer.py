"""ClassifierTrainer on tiny random BERTs: it learns, weights/smoothing/freezing/early stopping work."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from transformers import (
    AutoModelForSequenceClassification,
    BertForSequenceClassification,
    DataCollatorWithPadding,
    TrainingArguments,
)

from hfkit import ClassifierConfig, ClassifierTrainer, ModelArguments, load_classifier
from hfkit.modeling import count_parameters
from tests.conftest import tiny_bert_config, toy_dataset


def make_config(tmp_path, **overrides) -> ClassifierConfig:
    base = dict(
        output_dir=str(tmp_path / "out"),
        use_cpu=True,
        report_to="none",
        disable_tqdm=True,
        learning_rate=1e-3,
        per_device_train_batch_size=16,
        num_train_epochs=4,
        logging_steps=10,
        eval_strategy="no",
        save_strategy="no",
        seed=0,
    )
    base.update(overrides)
    return ClassifierConfig(**base)


def test_learns_separable_toy_task_and_writes_report(tmp_path, tiny_bert, tiny_tokenizer, capsys):
    train, val = toy_dataset(tiny_tokenizer, 400, seed=1), toy_dataset(tiny_tokenizer, 100, seed=2)
    trainer = ClassifierTrainer(
        model=tiny_bert,
        args=make_config(tmp_path, eval_strategy="epoch"),
        train_dataset=train,
        eval_dataset=val,
        processing_class=tiny_tokenizer,
    )
    trainer.train()
    report = json.loads((tmp_path / "out" / "eval_report.json").read_text())
    assert report["metrics"]["accuracy"] > 0.9  # chance is ~0.5
    assert report["labels"] == ["bad", "good"]
    assert sum(map(sum, report["confusion_matrix"])) == 100
    assert report["parameters"]["total"] == count_parameters(tiny_bert)[0]
    printed = capsys.readouterr().out
    assert "accuracy" in printed and "pred good" in printed
    assert (
        (tmp_path / "out" / "eval_report.md")
        .read_text()
        .startswith(f"# Evaluation report: {tmp_path / 'out'}")
    )


@pytest.mark.parametrize("eval_strategy", ["epoch", "no"])
def test_report_scores_the_validation_set_once(tmp_path, tiny_bert, tiny_tokenizer, eval_strategy):
    """The final report reuses the evaluation of the final model: no second pass over the validation set."""
    train, val = toy_dataset(tiny_tokenizer, 64, seed=1), toy_dataset(tiny_tokenizer, 32, seed=2)
    trainer = ClassifierTrainer(
        model=tiny_bert,
        args=make_config(tmp_path, eval_strategy=eval_strategy, num_train_epochs=2),
        train_dataset=train,
        eval_dataset=val,
        processing_class=tiny_tokenizer,
        eval_data_name="val.tsv",
    )
    calls = []
    loop = trainer.evaluation_loop
    trainer.evaluation_loop = lambda *a, **k: calls.append(1) or loop(*a, **k)
    trainer.train()
    # One pass per epoch when evaluating every epoch (the report reuses the last), else one for the report.
    assert len(calls) == (2 if eval_strategy == "epoch" else 1)
    assert trainer.report["num_examples"] == 32 and trainer.report["data"] == "val.tsv"
    assert trainer.report["metrics"]["accuracy"] == pytest.approx(trainer.evaluate()["eval_accuracy"])


def test_defaults_follow_fine_tuning_practice(tmp_path):
    config = ClassifierConfig(output_dir=str(tmp_path))
    assert config.lr_scheduler_type == "cosine"
    assert config.warmup_steps == 0.06
    assert config.max_grad_norm == 1.0
    assert config.eval_strategy == "epoch" and config.save_strategy == "epoch"


def test_weight_decay_skips_bias_and_layernorm(tmp_path, tiny_bert, tiny_tokenizer):
    trainer = ClassifierTrainer(model=tiny_bert, args=make_config(tmp_path), processing_class=tiny_tokenizer)
    decay = set(trainer.get_decay_parameter_names(tiny_bert))
    assert "bert.encoder.layer.0.attention.self.query.weight" in decay
    assert not any(name.endswith("bias") or "LayerNorm" in name for name in decay)


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before:UserWarning")
def test_head_learning_rate_gets_its_own_groups_and_schedule(tmp_path, tiny_bert, tiny_tokenizer):
    """The head (classifier.*) trains at head_learning_rate, with and without weight decay as before; the body
    keeps learning_rate; the warmup/decay schedule scales both."""
    train = toy_dataset(tiny_tokenizer, 32, seed=1)
    config = make_config(tmp_path, learning_rate=1e-4, head_learning_rate=1e-2, warmup_steps=2, max_steps=4)
    trainer = ClassifierTrainer(
        model=tiny_bert, args=config, train_dataset=train, processing_class=tiny_tokenizer
    )
    trainer.create_optimizer_and_scheduler(num_training_steps=4)
    names = {id(p): n for n, p in tiny_bert.named_parameters()}
    groups = [
        (g["lr"], g["weight_decay"], sorted(names[id(p)] for p in g["params"]))
        for g in trainer.optimizer.param_groups
    ]
    head = [g for g in groups if any(n.startswith("classifier.") for n in g[2])]
    assert sorted((lr, wd, n) for lr, wd, n in head) == [
        (0.0, 0.0, ["classifier.bias"]),  # warmup step 0: lr = 0 for every group
        (0.0, 0.01, ["classifier.weight"]),
    ]
    assert all(not n.startswith("classifier.") for g in groups if g not in head for n in g[2])
    trainer.lr_scheduler.step()
    by_part = {
        "classifier" if names[id(g["params"][0])].startswith("classifier.") else "body": g["lr"]
        for g in trainer.optimizer.param_groups
    }
    assert by_part == {
        "classifier": pytest.approx(0.5e-2),
        "body": pytest.approx(0.5e-4),
    }  # half-way up the warmup
    trainer.create_optimizer()  # a second call must not split again
    assert len(trainer.optimizer.param_groups) == 4


def test_head_learning_rate_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="head_learning_rate must be > 0"):
        make_config(tmp_path, head_learning_rate=0.0)


def _one_batch(tokenizer, n=8):
    ds = toy_dataset(tokenizer, n, seed=3)
    return tokenizer.pad(
        [{k: ds[i][k] for k in ("input_ids", "attention_mask")} for i in range(n)], return_tensors="pt"
    ), torch.tensor(ds["labels"])


@pytest.mark.parametrize(
    "overrides, weight, smoothing",
    [
        ({}, None, 0.0),
        ({"class_weights": [1.0, 3.0]}, [1.0, 3.0], 0.0),
        ({"label_smoothing_factor": 0.2}, None, 0.2),
    ],
)
def test_loss_matches_weighted_smoothed_cross_entropy(
    tmp_path, tiny_bert, tiny_tokenizer, overrides, weight, smoothing
):
    trainer = ClassifierTrainer(
        model=tiny_bert, args=make_config(tmp_path, **overrides), processing_class=tiny_tokenizer
    )
    batch, labels = _one_batch(tiny_tokenizer)
    loss = trainer.compute_loss(tiny_bert, {**batch, "labels": labels})
    logits = tiny_bert(**batch).logits
    # Hand formula: per-row NLL of the smoothed target, weighted mean over rows.
    logp = logits.log_softmax(-1)
    w = torch.ones(2) if weight is None else torch.tensor(weight)
    target = F.one_hot(labels, 2).float() * (1 - smoothing) + smoothing / 2
    per_row = -(target * logp * w).sum(-1)
    expected = per_row.sum() / w[labels].sum()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_balance_classes_uses_inverse_frequency(tmp_path, tiny_bert, tiny_tokenizer):
    train = toy_dataset(tiny_tokenizer, 50, seed=4)
    counts = torch.bincount(torch.tensor(train["labels"]), minlength=2).float()
    trainer = ClassifierTrainer(
        model=tiny_bert,
        args=make_config(tmp_path, balance_classes=True),
        train_dataset=train,
        processing_class=tiny_tokenizer,
    )
    torch.testing.assert_close(trainer.class_weights, 50 / (2 * counts))


def test_class_weights_length_must_match_labels(tmp_path, tiny_bert, tiny_tokenizer):
    with pytest.raises(ValueError, match="class_weights has 3 values but the model has 2 labels"):
        ClassifierTrainer(
            model=tiny_bert,
            args=make_config(tmp_path, class_weights=[1, 1, 1]),
            processing_class=tiny_tokenizer,
        )


def test_freeze_embeddings_and_first_layer(tmp_path, tiny_bert, tiny_tokenizer):
    before = {n: p.detach().clone() for n, p in tiny_bert.named_parameters()}
    trainer = ClassifierTrainer(
        model=tiny_bert,
        args=make_config(tmp_path, freeze_embeddings=True, freeze_layers=1, max_steps=5),
        train_dataset=toy_dataset(tiny_tokenizer, 80),
        processing_class=tiny_tokenizer,
    )
    assert trainer.param_counts["trainable"] < trainer.param_counts["total"]
    trainer.train()
    for name, p in tiny_bert.named_parameters():
        frozen = name.startswith("bert.embeddings.") or name.startswith("bert.encoder.layer.0.")
        assert p.requires_grad is not frozen, name
        if frozen:
            assert torch.equal(p, before[name]), name
    assert not torch.equal(tiny_bert.classifier.weight, before["classifier.weight"])


def test_gradient_accumulation_matches_large_batch(tmp_path, tiny_tokenizer):
    """2 micro-batches of 4 accumulate to the same update as one batch of 8 (loss scaled per micro-batch)."""
    train = toy_dataset(tiny_tokenizer, 8, seed=5)
    results = []
    for bs, ga in ((8, 1), (4, 2)):
        torch.manual_seed(0)
        model = BertForSequenceClassification(tiny_bert_config(tiny_tokenizer))
        args = make_config(
            tmp_path / f"{bs}",
            per_device_train_batch_size=bs,
            gradient_accumulation_steps=ga,
            max_steps=1,
            train_sampling_strategy="sequential",
            warmup_steps=0,
            lr_scheduler_type="constant",
            weight_decay=0.0,
        )
        ClassifierTrainer(
            model=model, args=args, train_dataset=train, processing_class=tiny_tokenizer
        ).train()
        results.append(model.classifier.weight.detach().clone())
    # Equal-sized micro-batches: the mean of the two means is the mean over all 8 rows.
    torch.testing.assert_close(results[0], results[1], atol=1e-6, rtol=1e-4)


def test_early_stopping_config_wires_best_model(tmp_path):
    config = make_config(tmp_path, early_stopping_patience=1, eval_strategy="epoch")
    assert config.load_best_model_at_end and config.metric_for_best_model == "accuracy"
    with pytest.raises(ValueError, match="eval_strategy"):
        make_config(tmp_path, early_stopping_patience=1, eval_strategy="no")
    with pytest.raises(ValueError, match=">= 1"):
        make_config(tmp_path, early_stopping_patience=0)


def test_early_stopping_stops_training(tmp_path, tiny_bert, tiny_tokenizer):
    # A threshold no evaluation can beat: training stops after 1 + patience evaluations.
    args = make_config(
        tmp_path,
        num_train_epochs=10,
        eval_strategy="epoch",
        early_stopping_patience=2,
        early_stopping_threshold=10.0,
        save_total_limit=1,
    )
    trainer = ClassifierTrainer(
        model=tiny_bert,
        args=args,
        train_dataset=toy_dataset(tiny_tokenizer, 32),
        eval_dataset=toy_dataset(tiny_tokenizer, 16, seed=9),
        processing_class=tiny_tokenizer,
    )
    trainer.train()
    assert trainer.state.epoch == 3
    assert trainer.state.best_model_checkpoint is not None


def test_nan_loss_stops_with_clear_error(tmp_path, tiny_bert, tiny_tokenizer):
    trainer = ClassifierTrainer(
        model=tiny_bert,
        args=make_config(tmp_path, max_steps=3),
        train_dataset=toy_dataset(tiny_tokenizer, 32),
        processing_class=tiny_tokenizer,
    )
    with torch.no_grad():
        tiny_bert.classifier.weight.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="diverged.*learning_rate"):
        trainer.train()


def test_rejects_plain_training_arguments(tmp_path, tiny_bert):
    with pytest.raises(TypeError, match="ClassifierConfig"):
        ClassifierTrainer(model=tiny_bert, args=TrainingArguments(output_dir=str(tmp_path)))


def test_start_from_checkpoint_with_other_label_set(tmp_path, tiny_tokenizer):
    """Transfer: a 3-class checkpoint becomes a 2-class model; the encoder is kept, the head replaced."""
    three = BertForSequenceClassification(
        tiny_bert_config(
            tiny_tokenizer, num_labels=3, id2label={0: "a", 1: "b", 2: "c"}, label2id={"a": 0, "b": 1, "c": 2}
        )
    )
    three.save_pretrained(tmp_path / "ckpt")
    args = ModelArguments(model_name_or_path=str(tmp_path / "ckpt"))

    two = load_classifier(args, ["neg", "pos"])
    assert two.config.num_labels == 2 and two.config.id2label == {0: "neg", 1: "pos"}
    torch.testing.assert_close(
        two.bert.encoder.layer[1].output.dense.weight, three.bert.encoder.layer[1].output.dense.weight
    )

    same_size = load_classifier(args, ["x", "y", "z"])
    assert not torch.equal(same_size.classifier.weight, three.classifier.weight)  # other labels: head reset

    same_labels = load_classifier(args, ["a", "b", "c"])
    torch.testing.assert_close(same_labels.classifier.weight, three.classifier.weight)  # continue training


def test_saved_model_reloads_with_auto_class(tmp_path, tiny_bert, tiny_tokenizer):
    trainer = ClassifierTrainer(
        model=tiny_bert,
        args=make_config(tmp_path, max_steps=2),
        train_dataset=toy_dataset(tiny_tokenizer, 32),
        processing_class=tiny_tokenizer,
    )
    trainer.train()
    trainer.save_model()
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "out")
    batch, _ = _one_batch(tiny_tokenizer)
    tiny_bert.eval()
    torch.testing.assert_close(reloaded(**batch).logits, tiny_bert(**batch).logits)
    assert (tmp_path / "out" / "model.safetensors").exists()


def test_bf16_mixed_precision_on_cpu_trains(tmp_path, tiny_bert, tiny_tokenizer):
    """Precision is Trainer's own switch: bf16 autocast runs, the loss stays finite, weights stay float32."""
    trainer = ClassifierTrainer(
        model=tiny_bert,
        args=make_config(tmp_path, bf16=True, max_steps=4),
        train_dataset=toy_dataset(tiny_tokenizer, 64),
        processing_class=tiny_tokenizer,
    )
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h] + [
        trainer.state.log_history[-1]["train_loss"]
    ]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert tiny_bert.classifier.weight.dtype == torch.float32


def test_bf16_training_reports_the_model_as_saved(tmp_path, tiny_bert, tiny_tokenizer):
    """One accuracy per model: the evaluation report of a bf16-trained model scores the float32 weights as they
    are saved, not the training's autocast, so it agrees with every later scoring of the folder."""
    val = toy_dataset(tiny_tokenizer, 64, seed=2)
    torch.manual_seed(0)
    with torch.no_grad():  # large logits, so that bf16 rounding shows in the loss
        tiny_bert.classifier.weight.normal_(0, 30.0)
    trainer = ClassifierTrainer(
        model=tiny_bert,
        args=make_config(tmp_path, bf16=True, max_steps=4, eval_strategy="steps", eval_steps=4),
        train_dataset=toy_dataset(tiny_tokenizer, 64),
        eval_dataset=val,
        processing_class=tiny_tokenizer,
    )
    trainer.train()
    trainer.save_model()
    saved = AutoModelForSequenceClassification.from_pretrained(tmp_path / "out").eval()
    batch = DataCollatorWithPadding(tiny_tokenizer)([val[i] for i in range(len(val))])
    with torch.no_grad():
        out = saved(**batch)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            autocast_loss = saved(**batch).loss.item()
    assert abs(autocast_loss - out.loss.item()) > 1e-3  # bf16 scoring really gives another figure here
    report = trainer.report
    assert report["metrics"]["loss"] == pytest.approx(out.loss.item(), abs=1e-5)
    assert report["metrics"]["accuracy"] == pytest.approx(
        (out.logits.argmax(-1) == batch["labels"]).float().mean().item()
    )
    assert report["precision"] == "float32" and report["title"].endswith("scored in float32 as saved")
