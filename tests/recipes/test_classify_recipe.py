"""`hfkit classify` (hfkit/recipes/classify.py) as users run it: every shipped config parses, a subprocess run
through recipes/classify.py, the real MiniLM."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys

import pytest
import torch
from huggingface_hub import ModelCard
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from hfkit.data import load_data_file
from hfkit.parsing import SHIPPED_CONFIGS, parse_args, valid_keys
from tests.conftest import REPO, SHARED_DATA, write_tiny_model, write_toy_tsv

CONFIGS = sorted(SHIPPED_CONFIGS.rglob("*.yaml"))


def load_recipe(name: str):
    """The recipe module behind `hfkit <name>` (hfkit/recipes/<name>.py)."""
    return importlib.import_module(f"hfkit.recipes.{name}")


def test_configs_exist():
    assert any(p.parent.name == "classify" for p in CONFIGS)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: str(p.relative_to(SHIPPED_CONFIGS)))
def test_every_shipped_config_parses(config, tmp_path, monkeypatch):
    """Each YAML is valid for its command (hfkit <folder>): no unknown keys, values pass validation."""
    monkeypatch.chdir(REPO)  # configs use paths relative to the repo root
    recipe = load_recipe(config.parent.name)
    out = ["--output_dir", str(tmp_path)] if "output_dir" in valid_keys(recipe.ARG_TYPES) else []
    parsed = parse_args(recipe.ARG_TYPES, ["--config", str(config), *out])
    assert len(parsed) == len(recipe.ARG_TYPES)
    for value in parsed:
        for key in ("train_file", "validation_file"):
            path = getattr(value, key, None)
            # Files under outputs/ are written by a documented script (e.g. incremental_study.py --prepare).
            if path is not None and not path.startswith("outputs/"):
                assert os.path.isfile(path), f"{config.name}: {key} {path} does not exist"


def test_recipe_subprocess_trains_saves_and_resumes(tmp_path, tiny_tokenizer):
    model_dir = write_tiny_model(tmp_path / "tiny", tiny_tokenizer)
    train = write_toy_tsv(tmp_path / "train.tsv", 500, seed=1)
    out = tmp_path / "run"
    cmd = [
        sys.executable, str(REPO / "recipes" / "classify.py"),
        "--model_name_or_path", str(model_dir), "--train_file", str(train),
        "--text_column", "sentence", "--label_column", "sentiment", "--validation_split", "0.2",
        "--output_dir", str(out), "--use_cpu", "true", "--learning_rate", "1e-3",
        "--num_train_epochs", "4", "--per_device_train_batch_size", "16", "--disable_tqdm", "true",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Evaluation report" in result.stdout and "pred pos" in result.stdout
    # Quiet by default: hfkit's phase lines, no library INFO, no dict per logging step; the report comes last.
    output = result.stdout + result.stderr
    for noise in ("loading configuration file", "Model config BertConfig", "Running training", "{'loss'",
                  "Writing model shards", "pin_memory"):  # fmt: skip
        assert noise not in output, noise
    assert result.stdout.rstrip().splitlines()[-1].startswith("true pos")
    assert len(result.stderr.splitlines()) <= 6, result.stderr

    report = json.loads((out / "eval_report.json").read_text())
    assert report["labels"] == ["neg", "pos"] and report["num_examples"] == 100
    assert report["metrics"]["accuracy"] > 0.85
    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert model.config.id2label == {0: "neg", 1: "pos"}
    # A finished run ends with a model card (parsed back: valid metadata, the measured accuracy) and without
    # its checkpoints: they exist to resume, and a finished run is never resumed (keep_checkpoints keeps them).
    assert not list(out.glob("checkpoint-*")) and "deleted checkpoint-" in result.stderr
    card = ModelCard.load(out / "README.md")
    assert card.data.pipeline_tag == "text-classification" and card.data.library_name == "transformers"
    accuracy = next(r.metric_value for r in card.data.eval_results if r.metric_type == "accuracy")
    assert accuracy == pytest.approx(report["metrics"]["accuracy"], abs=1e-4)

    # Run the same command again: the run is finished, and it says so instead of training 0 steps.
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "finished with the same settings: nothing to train" in again.stdout


def test_recipe_rejects_unknown_key_with_suggestion(tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO / "recipes" / "classify.py"), "--model_name_or_path", "x",
         "--train_file", "x.csv", "--output_dir", str(tmp_path), "--learning_rat", "1e-4"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode != 0
    assert "learning_rat" in result.stderr and "learning_rate" in result.stderr


@pytest.mark.slow
def test_real_minilm_on_sst2_subset(tmp_path, monkeypatch):
    """The shipped demo config, shrunk: real all-MiniLM-L6-v2 on 3,000 SST-2 rows gets > 75% accuracy on the
    1,000 leak-free whole validation sentences (78.5% measured; a phrase-level random split would show ~88%)."""
    sst2 = SHARED_DATA / "sst2" / "sentence_split" / "train.tsv"
    assert sst2.exists(), f"SST-2 not found at {sst2}: the shared data folder must sit beside the repo"
    monkeypatch.chdir(REPO)
    recipe = load_recipe("classify")
    trainer = recipe.main(
        ["--config", "recipes/configs/classify/minilm_sst2_demo.yaml", "--output_dir", str(tmp_path),
         "--max_train_samples", "3000", "--max_eval_samples", "1000", "--num_train_epochs", "1",
         "--save_strategy", "no", "--eval_strategy", "no", "--disable_tqdm", "true"]
    )  # fmt: skip
    assert trainer.report["metrics"]["accuracy"] > 0.75
    assert len(load_data_file(str(sst2))) == 58023

    model = AutoModelForSequenceClassification.from_pretrained(tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    batch = tokenizer(
        ["a gorgeous , witty , seductive movie .", "a dull , lifeless mess ."],
        return_tensors="pt",
        padding=True,
    )
    with torch.no_grad():
        predicted = model(**batch).logits.argmax(-1).tolist()
    assert [model.config.id2label[i] for i in predicted] == ["positive", "negative"]


def test_keep_layers_fine_tunes_a_layer_subset(tmp_path, tiny_tokenizer, monkeypatch):
    """--keep_layers trains the sliced model without a teacher (the CE baseline of a distilled student)."""
    model_dir = write_tiny_model(tmp_path / "tiny", tiny_tokenizer, num_hidden_layers=3)
    train = write_toy_tsv(tmp_path / "train.tsv", 200, seed=1)
    recipe = load_recipe("classify")
    trainer = recipe.main(
        ["--model_name_or_path", str(model_dir), "--keep_layers", "0", "2", "--train_file", str(train),
         "--text_column", "sentence", "--label_column", "sentiment", "--output_dir", str(tmp_path / "run"),
         "--use_cpu", "true", "--max_steps", "2", "--save_strategy", "no", "--eval_strategy", "no",
         "--disable_tqdm", "true"]
    )  # fmt: skip
    assert trainer.model.config.num_hidden_layers == 2
    saved = AutoModelForSequenceClassification.from_pretrained(tmp_path / "run")
    assert saved.config.num_hidden_layers == 2
