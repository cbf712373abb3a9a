"""IncrementalTrainer, head growth, label mapping and replay sampling on tiny models; the recipe end to end."""

from __future__ import annotations

import copy
import json
import logging
import random

import numpy as np
import pytest
import torch
from datasets import ClassLabel, Dataset
from transformers import AutoModelForSequenceClassification, BertForSequenceClassification

from hfkit.data import tokenize_dataset
from hfkit.data.incremental import (
    IncrementalArguments,
    encode_labels,
    low_margin_scores,
    replay_sample,
    resolve_new_labels,
    text_windows,
)
from hfkit.errors import UserInputError
from hfkit.evaluation import predict_logits
from hfkit.trainers.incremental_config import IncrementalConfig
from hfkit.trainers.incremental_trainer import (
    IncrementalTrainer,
    align_new_classes,
    grow_classifier_head,
    imprint_new_classes,
    label_names,
)
from tests.conftest import FILLER, REPO, tiny_bert_config, toy_dataset
from tests.recipes.test_classify_recipe import load_recipe


def _tiny(tokenizer, labels=("bad", "good")) -> BertForSequenceClassification:
    torch.manual_seed(0)
    return BertForSequenceClassification(
        tiny_bert_config(tokenizer, num_labels=len(labels), id2label=dict(enumerate(labels)))
    ).eval()


def test_grow_head_keeps_old_logits_exactly(tiny_tokenizer):
    model = _tiny(tiny_tokenizer)
    old_weight, old_bias = model.classifier.weight.clone(), model.classifier.bias.clone()
    batch = tiny_tokenizer(["good w1 w2", "bad w3", "w4 w5 w6 good"], return_tensors="pt", padding=True)
    with torch.no_grad():
        before = model(**batch).logits
    grow_classifier_head(model, ["meh", "wow"], seed=3)
    with torch.no_grad():
        after = model(**batch).logits
    assert after.shape == (3, 4)
    # The old rows are copied bit for bit; the logits then differ only by the GEMM's summation order for a
    # wider output (BLAS blocks a 4-column product differently from a 2-column one), i.e. float rounding.
    assert torch.equal(model.classifier.weight[:2], old_weight) and torch.equal(
        model.classifier.bias[:2], old_bias
    )
    torch.testing.assert_close(after[:, :2], before, rtol=0, atol=1e-6)
    assert label_names(model) == ["bad", "good", "meh", "wow"]
    assert model.config.label2id == {"bad": 0, "good": 1, "meh": 2, "wow": 3}
    assert not torch.equal(after[:, 2], after[:, 3])  # new rows are initialised, not zeros


def test_grow_head_is_seeded_and_rejects_existing_names(tiny_tokenizer):
    a = grow_classifier_head(_tiny(tiny_tokenizer), ["meh"], seed=1)
    b = grow_classifier_head(_tiny(tiny_tokenizer), ["meh"], seed=1)
    assert torch.equal(a.classifier.weight, b.classifier.weight)
    with pytest.raises(UserInputError, match=r"\['good'\] already exist"):
        grow_classifier_head(_tiny(tiny_tokenizer), ["good", "meh"])
    with pytest.raises(UserInputError, match="repeat"):
        grow_classifier_head(_tiny(tiny_tokenizer), ["meh", "meh"])


def _trainer(student, tiny_tokenizer, tmp_path, teacher_width: int, **config) -> IncrementalTrainer:
    data = toy_dataset(tiny_tokenizer, 8)
    data = data.add_column("teacher_logits", [[0.0] * teacher_width] * len(data))
    args = IncrementalConfig(
        output_dir=str(tmp_path), use_cpu=True, report_to="none", eval_strategy="no", **config
    )
    return IncrementalTrainer(model=student, args=args, train_dataset=data, processing_class=tiny_tokenizer)


def test_lwf_term_is_zero_when_the_updated_model_matches_the_previous(tiny_tokenizer, tmp_path):
    trainer = _trainer(grow_classifier_head(_tiny(tiny_tokenizer), ["meh"]), tiny_tokenizer, tmp_path, 2)
    torch.manual_seed(0)
    student = torch.randn(5, 3)
    parts = trainer._logit_loss(student, student[:, :2].clone(), torch.tensor([0, 1, 2, 2, -100]))
    assert parts["soft"].item() == pytest.approx(0.0, abs=1e-7)
    # The soft term reads only the old classes: changing the new class's logit leaves it at 0.
    moved = student.clone()
    moved[:, 2] += 5.0
    assert trainer._logit_loss(moved, student[:, :2], None)["soft"].item() == pytest.approx(0.0, abs=1e-7)
    # And it is the T^2-scaled KL on the old classes, not on all three.
    teacher = torch.tensor([[2.0, -1.0]] * 5)
    t = trainer.args.temperature
    p = torch.softmax(teacher / t, -1)
    q = torch.log_softmax(student[:, :2] / t, -1)
    expected = (p * (p.log() - q)).sum(-1).mean() * t**2
    assert trainer._logit_loss(student, teacher, None)["soft"].item() == pytest.approx(
        expected.item(), rel=1e-5
    )


def test_lwf_loss_mixes_soft_and_hard_by_alpha(tiny_tokenizer, tmp_path):
    trainer = _trainer(
        grow_classifier_head(_tiny(tiny_tokenizer), ["meh"]), tiny_tokenizer, tmp_path, 2, alpha=0.25
    )
    student, teacher = torch.randn(4, 3), torch.randn(4, 2)
    labels = torch.tensor([2, 0, 1, 2])
    parts = trainer._logit_loss(student, teacher, labels)
    hard = torch.nn.functional.cross_entropy(student, labels)
    assert parts["hard"].item() == pytest.approx(hard.item(), rel=1e-5)
    assert parts["loss"].item() == pytest.approx(0.25 * parts["soft"].item() + 0.75 * hard.item(), rel=1e-5)


def test_trainer_refuses_a_student_whose_classes_do_not_extend_the_teachers(tiny_tokenizer, tmp_path):
    teacher = _tiny(tiny_tokenizer)
    reordered = _tiny(tiny_tokenizer, labels=("good", "bad", "meh"))
    args = IncrementalConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none", eval_strategy="no")
    with pytest.raises(UserInputError, match="do not start with the previous model's"):
        IncrementalTrainer(
            model=reordered, teacher_model=teacher, args=args, train_dataset=toy_dataset(tiny_tokenizer, 8),
            processing_class=tiny_tokenizer,
        )  # fmt: skip
    with pytest.raises(UserInputError, match="only 3 classes"):
        _trainer(grow_classifier_head(_tiny(tiny_tokenizer), ["meh"]), tiny_tokenizer, tmp_path, 4)


def test_feature_distillation_runs_the_previous_model_and_is_zero_at_the_start(tiny_tokenizer, tmp_path):
    """hidden_loss_weight > 0: the previous model runs online; its hidden states and the grown copy's are
    equal before the first update (loss 0), and the term is logged next to the LwF parts."""
    previous = _tiny(tiny_tokenizer)
    grown = grow_classifier_head(copy.deepcopy(previous), ["meh"])
    args = IncrementalConfig(
        output_dir=str(tmp_path), use_cpu=True, report_to="none", eval_strategy="no", save_strategy="no",
        hidden_loss_weight=1.0, hidden_loss_type="cosine", layer_map="2:2", max_steps=2,
        per_device_train_batch_size=4, disable_tqdm=True,
    )  # fmt: skip
    data = toy_dataset(tiny_tokenizer, 8)
    trainer = IncrementalTrainer(
        model=grown, teacher_model=previous, args=args, train_dataset=data, processing_class=tiny_tokenizer
    )
    assert trainer.num_old_classes == 2 and trainer.hidden_layer_map == [(2, 2)]
    batch = trainer.data_collator([data[i] for i in range(4)])
    trainer.model.train()
    parts = {}
    trainer._log_loss_part = lambda name, value, weight: parts.setdefault(name, float(value.detach()))
    trainer.compute_loss(trainer.model, batch)
    assert parts["hidden"] == pytest.approx(0.0, abs=1e-6)
    assert parts["soft"] == pytest.approx(0.0, abs=1e-6)
    trainer.train()  # two steps end to end with the previous model online
    assert trainer.state.global_step == 2


def test_replay_sample_is_seeded_and_stratified():
    labels = [0] * 600 + [1] * 300 + [2] * 100
    ds = Dataset.from_dict({"i": list(range(1000)), "labels": labels})
    a, b, c = replay_sample(ds, 100, seed=7), replay_sample(ds, 100, seed=7), replay_sample(ds, 100, seed=8)
    assert a["i"] == b["i"] and a["i"] != c["i"]
    assert np.bincount(a["labels"]).tolist() == [60, 30, 10]
    # Largest remainders: 7 rows of 6:3:1 -> 4.2, 2.1, 0.7 -> 4, 2, 1.
    assert np.bincount(replay_sample(ds, 7, seed=0)["labels"]).tolist() == [4, 2, 1]
    assert len(set(a["i"])) == 100
    assert len(replay_sample(ds, 5000, seed=0)) == 1000


def test_low_margin_replay_fills_each_class_quota_with_its_most_flippable_rows():
    logits = np.array([[3.0, 0.0, 1.0], [0.5, 0.0, 1.0], [2.0, 1.9, 0.0], [0.0, 4.0, 0.0], [1.0, 0.0, 3.0]])
    labels = np.array([0, 0, 0, 1, 1])
    # best other class minus the gold class: a positive score is a row already called another class
    np.testing.assert_allclose(low_margin_scores(logits, labels), [-2.0, 0.5, -0.1, -4.0, 3.0])
    ds = Dataset.from_dict({"i": list(range(8)), "labels": [0, 0, 0, 0, 1, 1, 1, 1]})
    scores = np.array([0.1, 0.9, 0.5, 0.2, -1.0, 3.0, 2.0, 0.0])
    picked = replay_sample(ds, 4, seed=0, scores=scores)
    assert picked["i"] == [1, 2, 5, 6]  # the top two of each class, stratified as random sampling is
    assert replay_sample(ds, 4, seed=3, scores=scores)["i"] == [
        1,
        2,
        5,
        6,
    ]  # no tie: the seed does not matter
    ties = replay_sample(ds, 2, seed=0, scores=np.zeros(8))["i"]
    assert ties == replay_sample(ds, 2, seed=0, scores=np.zeros(8))["i"] and len(ties) == 2  # seeded ties
    with pytest.raises(ValueError, match="3 scores for 8 rows"):
        replay_sample(ds, 2, seed=0, scores=np.zeros(3))
    with pytest.raises(UserInputError, match="replay_selection must be"):
        IncrementalArguments(previous_model="m", replay_selection="herding")


def test_text_windows_split_each_row_into_consecutive_windows_with_its_label(tiny_tokenizer):
    words = FILLER[1:13]
    ds = Dataset.from_dict({"text": [" ".join(words), "good"], "labels": [1, 0]})
    ds = ds.cast_column("labels", ClassLabel(names=["bad", "good"]))
    windows = text_windows(ds, tiny_tokenizer, "text", 6, 2)  # 4 words + [CLS] [SEP] per window
    first = tokenize_dataset(ds, tiny_tokenizer, "text", None, 6)
    assert windows["labels"] == [1, 1, 0] and isinstance(windows.features["labels"], ClassLabel)
    assert windows[0]["input_ids"] == first[0]["input_ids"]  # the first window is the row as read
    assert windows[2]["input_ids"] == first[1]["input_ids"]  # a short row is one window
    body = [tiny_tokenizer.decode(ids, skip_special_tokens=True) for ids in windows["input_ids"][:2]]
    assert " ".join(body).split() == words[:8]  # consecutive, no overlap, capped at 2 windows
    every = text_windows(ds, tiny_tokenizer, "text", 6, 10)
    assert every["labels"] == [1, 1, 1, 0]  # 12 words: 3 windows of 4, then the short row
    assert text_windows(ds, tiny_tokenizer, "text", 6, 1)["input_ids"] == first["input_ids"]
    with pytest.raises(UserInputError, match="replay_windows must be >= 1"):
        IncrementalArguments(previous_model="m", replay_windows=0)


def test_labels_map_onto_old_then_new_classes():
    ds = Dataset.from_dict({"text": ["a", "b", "c"], "label": ["good ", "meh", "bad"]})
    assert resolve_new_labels(ds["label"], ["bad", "good"], None) == ["meh"]
    encoded = encode_labels(ds, "label", ["bad", "good", "meh"], "train_file")
    assert encoded["labels"] == [1, 2, 0]
    assert isinstance(encoded.features["labels"], ClassLabel)
    ids = encode_labels(Dataset.from_dict({"label": [0.0, 2.0]}), "label", ["bad", "good", "meh"], "x")
    assert ids["labels"] == [0, 2]
    with pytest.raises(UserInputError, match="already exist"):
        resolve_new_labels(ds["label"], ["bad", "good"], ["good"])
    with pytest.raises(UserInputError, match=r"\['meh'\] that are neither"):
        resolve_new_labels(ds["label"], ["bad", "good"], ["wow"])
    with pytest.raises(UserInputError, match="outside the classes"):
        encode_labels(ds, "label", ["bad", "good"], "old_train_file")
    with pytest.raises(UserInputError, match="not both"):
        IncrementalArguments(previous_model="m", replay_examples=5, replay_fraction=0.1, old_train_file="f")
    with pytest.raises(UserInputError, match="old_train_file"):
        IncrementalArguments(previous_model="m", replay_fraction=0.1)


def _write_three_class_csv(path, n: int, seed: int, classes=("bad", "good", "meh")) -> None:
    """Toy task: the class is the one keyword in the sentence ('w0' stands for 'meh')."""
    keyword = {"bad": "bad", "good": "good", "meh": "w0"}
    rng = random.Random(seed)
    rows = ["text,label"]
    for _ in range(n):
        label = rng.choice(classes)
        words = rng.choices(FILLER[1:], k=rng.randint(3, 8))
        words.insert(rng.randint(0, len(words)), keyword[label])
        rows.append(f"{' '.join(words)},{label}")
    path.write_text("\n".join(rows) + "\n")


def _deployed_bad_good_and_new_meh(tokenizer, tmp_path):
    """A saved 2-class model (bad, good), its old training rows, new rows of class 'meh', validation of all 3."""
    previous = tmp_path / "previous"
    model = _tiny(tokenizer)
    model.save_pretrained(previous)
    tokenizer.save_pretrained(previous)
    old_train, new_train, validation = tmp_path / "old.csv", tmp_path / "new.csv", tmp_path / "val.csv"
    _write_three_class_csv(old_train, 200, 1, classes=("bad", "good"))
    _write_three_class_csv(new_train, 120, 2, classes=("meh",))
    _write_three_class_csv(validation, 90, 3)
    return model, previous, old_train, new_train, validation


def test_recipe_adds_a_class_and_reports_before_and_after(tiny_tokenizer, tmp_path, monkeypatch):
    model, previous, old_train, new_train, validation = _deployed_bad_good_and_new_meh(
        tiny_tokenizer, tmp_path
    )
    monkeypatch.chdir(REPO)
    out = tmp_path / "run"
    recipe = load_recipe("incremental")
    trainer = recipe.main(
        ["--previous_model", str(previous), "--train_file", str(new_train), "--validation_file", str(validation),
         "--old_train_file", str(old_train), "--replay_fraction", "0.1", "--output_dir", str(out),
         "--use_cpu", "true", "--max_steps", "6", "--per_device_train_batch_size", "16", "--learning_rate", "1e-3",
         "--eval_strategy", "no", "--save_strategy", "no", "--disable_tqdm", "true", "--report_to", "none",
         "--teacher_logits_cache", str(tmp_path / "cache")]
    )  # fmt: skip
    assert isinstance(trainer, IncrementalTrainer)
    report = json.loads((out / "incremental_report.json").read_text())
    assert report["old_classes"] == ["bad", "good"] and report["new_classes"] == ["meh"]
    assert report["train_rows"] == {"new": 120, "replay": 20, "replay_windows": 20}
    assert report["before"]["new_classes"] == 0.0  # the previous model cannot predict a class it lacks
    assert report["forgetting"] == pytest.approx(
        report["before"]["old_classes"] - report["after"]["old_classes"]
    )
    # The after figures (taken from the trainer's final report, one scoring pass) are the updated model's.
    scored = trainer.predict(trainer.eval_dataset)
    direct = recipe.group_accuracy(scored.predictions.argmax(-1), scored.label_ids, 2)
    assert report["after"] == pytest.approx(direct)
    markdown = (out / "incremental_report.md").read_text()
    assert "| after |" in markdown and "1 new ['meh']" in markdown
    assert (out / "README.md").is_file() and json.loads((out / "run.json").read_text())["finished"] is True
    saved = AutoModelForSequenceClassification.from_pretrained(out)
    assert label_names(saved) == ["bad", "good", "meh"]
    # The previous model on disk is untouched (the recipe grows a copy).
    reloaded = AutoModelForSequenceClassification.from_pretrained(previous)
    assert reloaded.config.num_labels == 2
    assert torch.equal(reloaded.classifier.weight, copy.deepcopy(model.classifier.weight))


def test_recipe_low_margin_replay_takes_the_rows_the_grown_model_scores_closest_to_another_class(
    tiny_tokenizer, tmp_path, monkeypatch
):
    model, previous, old_train, new_train, validation = _deployed_bad_good_and_new_meh(
        tiny_tokenizer, tmp_path
    )
    monkeypatch.chdir(REPO)
    trainer = load_recipe("incremental").main(
        ["--previous_model", str(previous), "--train_file", str(new_train), "--validation_file", str(validation),
         "--old_train_file", str(old_train), "--replay_examples", "20", "--replay_selection", "low_margin",
         "--new_class_init", "imprint", "--output_dir", str(tmp_path / "run"), "--use_cpu", "true",
         "--max_steps", "2", "--per_device_train_batch_size", "16", "--eval_strategy", "no",
         "--save_strategy", "no", "--disable_tqdm", "true", "--report_to", "none", "--seed", "5",
         "--teacher_logits_cache", str(tmp_path / "cache")]
    )  # fmt: skip
    replayed = trainer.train_dataset.select(range(120, 140))  # the new rows, then the replayed ones

    # The same selection by hand: the grown, imprinted head scores every old row; each class keeps its top rows.
    new_rows = trainer.train_dataset.select(range(120))
    grown = grow_classifier_head(copy.deepcopy(model), ["meh"], seed=5)
    imprint_new_classes(grown, new_rows, 2, tiny_tokenizer)
    old = encode_labels(Dataset.from_csv(str(old_train)), "label", ["bad", "good", "meh"], "old")
    old = tokenize_dataset(old.select_columns(["text", "labels"]), tiny_tokenizer, "text", None, None)
    scores = low_margin_scores(predict_logits(grown, tiny_tokenizer, old, 64), np.asarray(old["labels"]))
    expected = replay_sample(old, 20, 0, scores)
    assert replayed["input_ids"] == expected["input_ids"]
    assert sorted(expected["input_ids"]) != sorted(
        replay_sample(old, 20, 0)["input_ids"]
    )  # not the random pick
    labels = np.asarray(old["labels"])
    for c in (0, 1):  # every replayed row of a class scores at least as high as every row left out
        chosen = set(
            map(tuple, np.asarray(expected["input_ids"], dtype=object)[np.asarray(expected["labels"]) == c])
        )
        kept = [s for s, ids in zip(scores, old["input_ids"]) if tuple(ids) in chosen]
        left = [
            s for s, ids, y in zip(scores, old["input_ids"], labels) if y == c and tuple(ids) not in chosen
        ]
        assert min(kept) >= max(left) - 1e-6


def test_recipe_replays_several_windows_of_each_sampled_row(tiny_tokenizer, tmp_path, monkeypatch, caplog):
    model, previous, old_train, new_train, validation = _deployed_bad_good_and_new_meh(
        tiny_tokenizer, tmp_path
    )
    monkeypatch.chdir(REPO)

    def run(windows: int, name: str):
        return load_recipe("incremental").main(
            ["--previous_model", str(previous), "--train_file", str(new_train), "--validation_file",
             str(validation), "--old_train_file", str(old_train), "--replay_examples", "20", "--replay_windows",
             str(windows), "--max_length", "6", "--output_dir", str(tmp_path / name), "--use_cpu", "true",
             "--max_steps", "1", "--per_device_train_batch_size", "16", "--eval_strategy", "no",
             "--save_strategy", "no", "--disable_tqdm", "true", "--report_to", "none",
             "--teacher_logits_cache", str(tmp_path / "cache")]
        )  # fmt: skip

    with caplog.at_level(logging.INFO, logger="hfkit"):
        one = run(1, "one")
    assert "replayed rows are cut at max_length 6; replay_windows N" in caplog.text  # the hint
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="hfkit"):
        three = run(3, "three")
    assert "are cut at max_length" not in caplog.text and "20 old rows ->" in caplog.text
    replayed_one = one.train_dataset.select(range(120, len(one.train_dataset)))
    replayed_three = three.train_dataset.select(range(120, len(three.train_dataset)))
    assert len(replayed_one) == 20 and 20 < len(replayed_three) <= 60
    # The same 20 old rows: their first windows are the one-window replay, in the same order.
    old = encode_labels(Dataset.from_csv(str(old_train)), "label", ["bad", "good", "meh"], "old")
    sampled = replay_sample(old.select_columns(["text", "labels"]), 20, 0)
    assert replayed_three["input_ids"] == text_windows(sampled, tiny_tokenizer, "text", 6, 3)["input_ids"]
    assert replayed_one["input_ids"] == text_windows(sampled, tiny_tokenizer, "text", 6, 1)["input_ids"]
    report = json.loads((tmp_path / "three" / "incremental_report.json").read_text())
    assert report["train_rows"] == {"new": 120, "replay": 20, "replay_windows": len(replayed_three)}
    assert (
        f"20 replayed ({len(replayed_three)} windows)"
        in (tmp_path / "three" / "incremental_report.md").read_text()
    )


def _row_norms(model) -> torch.Tensor:
    return model.classifier.weight.detach().norm(dim=1)


def test_align_new_classes_equalises_mean_norms_and_keeps_old_logits(tiny_tokenizer):
    model = grow_classifier_head(_tiny(tiny_tokenizer), ["meh", "ok"])
    with torch.no_grad():
        model.classifier.weight[2:] *= 7.0  # what a recency-biased update does to the new rows
        model.classifier.bias[2:] = 0.5
    ids = torch.tensor([tiny_tokenizer("good bad film").input_ids])
    before = model(input_ids=ids).logits.detach()
    gamma = align_new_classes(model, num_old=2)
    after = model(input_ids=ids).logits.detach()
    norms = _row_norms(model)
    assert norms[2:].mean().item() == pytest.approx(norms[:2].mean().item(), rel=1e-5)
    assert torch.equal(after[:, :2], before[:, :2])  # old classes untouched
    assert torch.allclose(after[:, 2:], gamma * before[:, 2:], atol=1e-5)  # new logits scaled by gamma
    assert align_new_classes(_tiny(tiny_tokenizer), num_old=2) is None  # no new class: nothing to align


def test_trainer_aligns_when_training_ends(tiny_tokenizer, tmp_path):
    student = grow_classifier_head(_tiny(tiny_tokenizer), ["meh"])
    trainer = _trainer(
        student, tiny_tokenizer, tmp_path, 2, align_new_classes=True, max_steps=2, save_strategy="no"
    )
    with torch.no_grad():
        student.classifier.weight[2:] *= 5.0
    trainer.train()
    norms = _row_norms(trainer.model)
    assert trainer.num_old_classes == 2
    assert norms[2:].mean().item() == pytest.approx(norms[:2].mean().item(), rel=1e-4)


def test_replay_zero_means_no_replay_and_negative_is_refused():
    assert not IncrementalArguments(previous_model="m", replay_fraction=0.0).uses_replay
    assert not IncrementalArguments(previous_model="m", replay_examples=0).uses_replay
    assert IncrementalArguments(previous_model="m", replay_fraction=0.1, old_train_file="old.csv").uses_replay
    with pytest.raises(UserInputError, match=r"replay_fraction must be in \[0, 1\]"):
        IncrementalArguments(previous_model="m", replay_fraction=-0.1)


def test_imprint_points_each_new_row_at_its_class_mean_feature(tiny_tokenizer):
    model = grow_classifier_head(_tiny(tiny_tokenizer), ["meh"])
    old_weight, old_bias = model.classifier.weight[:2].clone(), model.classifier.bias[:2].clone()
    data = toy_dataset(tiny_tokenizer, 12).cast_column("labels", ClassLabel(names=["bad", "good", "meh"]))
    data = data.map(lambda row, i: {"labels": 2 if i % 3 == 0 else row["labels"]}, with_indices=True)
    imprint_new_classes(model, data, num_old=2, tokenizer=tiny_tokenizer, batch_size=5)
    # The head's input for the "meh" rows, taken independently of the function under test.
    seen = []
    hook = model.classifier.register_forward_hook(lambda m, inputs, out: seen.append(inputs[0]))
    with torch.no_grad():
        for i in range(0, len(data), 3):
            model(input_ids=torch.tensor([data[i]["input_ids"]]))
    hook.remove()
    mean = torch.cat(seen).mean(0)
    row = model.classifier.weight[2].detach()
    assert torch.allclose(row / row.norm(), mean / mean.norm(), atol=1e-5)
    assert row.norm().item() == pytest.approx(old_weight.norm(dim=1).mean().item(), rel=1e-5)
    assert model.classifier.bias[2].item() == pytest.approx(old_bias.mean().item(), abs=1e-7)
    assert torch.equal(model.classifier.weight[:2], old_weight) and torch.equal(
        model.classifier.bias[:2], old_bias
    )


def test_imprint_needs_a_row_of_every_new_class(tiny_tokenizer):
    model = grow_classifier_head(_tiny(tiny_tokenizer), ["meh", "ok"])
    data = toy_dataset(tiny_tokenizer, 6).cast_column(
        "labels", ClassLabel(names=["bad", "good", "meh", "ok"])
    )
    data = data.map(lambda row: {"labels": 2})
    with pytest.raises(UserInputError, match="cannot imprint class 'ok'"):
        imprint_new_classes(model, data, num_old=2, tokenizer=tiny_tokenizer)


def _incremental_argv(previous, new_train, validation, out, *extra) -> list[str]:
    return ["--previous_model", str(previous), "--train_file", str(new_train), "--validation_file", str(validation),
            "--output_dir", str(out), "--use_cpu", "true", "--max_steps", "1", "--eval_strategy", "no",
            "--save_strategy", "no", "--disable_tqdm", "true", "--report_to", "none", *extra]  # fmt: skip


def test_recipe_refuses_data_that_shares_no_class_with_the_previous_model(
    tiny_tokenizer, tmp_path, monkeypatch
):
    """Without replay, nothing would keep or measure the old classes: the wrong model, or the wrong data."""
    _, previous, old_train, new_train, _ = _deployed_bad_good_and_new_meh(tiny_tokenizer, tmp_path)
    only_new = tmp_path / "val_meh.csv"
    _write_three_class_csv(only_new, 30, 4, classes=("meh",))
    monkeypatch.chdir(REPO)
    with pytest.raises(UserInputError, match=r"classes \['bad', 'good'\] share nothing .*\['meh'\]"):
        load_recipe("incremental").main(
            _incremental_argv(previous, new_train, only_new, tmp_path / "run", "--replay_fraction", "0")
        )
    assert not (tmp_path / "run" / "model.safetensors").exists()
    # Old-class rows in the validation data (forgetting measured) or replayed: an update of this model.
    load_recipe("incremental").main(
        _incremental_argv(previous, new_train, only_new, tmp_path / "replayed", "--old_train_file", str(old_train),
                          "--replay_examples", "10", "--teacher_logits_cache", str(tmp_path / "cache"))
    )  # fmt: skip
    assert (tmp_path / "replayed" / "model.safetensors").is_file()


@pytest.mark.parametrize("overwrite", ["false", "true"])
def test_recipe_refuses_to_write_over_the_previous_model(overwrite, tiny_tokenizer, tmp_path, monkeypatch):
    _, previous, _, new_train, validation = _deployed_bad_good_and_new_meh(tiny_tokenizer, tmp_path)
    before = {p.name: p.read_bytes() for p in previous.iterdir()}
    monkeypatch.chdir(tmp_path)
    for out in (previous, "previous/", tmp_path / "link"):  # the same folder, however it is spelled
        if out == tmp_path / "link":
            out.symlink_to(previous)
        with pytest.raises(UserInputError, match="is the previous model's folder: the update would replace"):
            load_recipe("incremental").main(
                _incremental_argv(previous, new_train, validation, out, "--overwrite_output_dir", overwrite)
            )
    assert {p.name: p.read_bytes() for p in previous.iterdir()} == before  # not even a run.json
