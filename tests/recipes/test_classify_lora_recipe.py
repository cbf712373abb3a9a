"""recipes/classify.py with use_lora / qlora_bits: trains adapters, saves a merged plain classifier."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from tests.conftest import REPO, toy_texts, write_tiny_model, write_toy_tsv

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def run_recipe(model_dir, train, out, *extra: str) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable, str(REPO / "recipes" / "classify.py"),
        "--model_name_or_path", str(model_dir), "--train_file", str(train),
        "--text_column", "sentence", "--label_column", "sentiment", "--validation_split", "0.2",
        "--output_dir", str(out), "--use_cpu", "true", "--per_device_train_batch_size", "16",
        "--disable_tqdm", "true", "--use_lora", "true",
        "--keep_checkpoints", "true", *extra,
    ]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def accuracy(model, tokenizer, n: int = 200, seed: int = 7) -> float:
    texts, labels = toy_texts(n, seed)
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        predicted = model.eval()(**batch).logits.argmax(-1)
    return (predicted == torch.tensor(labels)).float().mean().item()


def test_lora_run_trains_and_saves_a_merged_plain_model(tmp_path, tiny_tokenizer):
    model_dir = write_tiny_model(tmp_path / "tiny", tiny_tokenizer, hidden=64)
    train = write_toy_tsv(tmp_path / "train.tsv", 500, seed=1)
    out = tmp_path / "run"
    args = ["--lora_r", "2", "--lora_alpha", "4", "--learning_rate", "1e-2", "--num_train_epochs", "4"]
    result = run_recipe(model_dir, train, out, *args)

    # The trainable share is logged (by apply_lora and by the trainer) and recorded in the report.
    logged = re.search(r"LoRA r=2 on 13 layers: ([\d,]+) of ([\d,]+) parameters trainable", result.stderr)
    assert logged, result.stderr[-3000:]
    report = json.loads((out / "eval_report.json").read_text())
    params = report["parameters"]
    assert params["trainable"] == int(logged.group(1).replace(",", ""))
    assert params["total"] == int(logged.group(2).replace(",", ""))
    assert params["trainable"] / params["total"] < 0.1
    # The Markdown report records the counts (the printed report leaves them to the run's log, above).
    assert f"{params['trainable']:,} trainable" in (out / "eval_report.md").read_text()
    assert report["metrics"]["accuracy"] > 0.85

    # output_dir is a plain classifier: no adapter files, loads with AutoModel and keeps what was learned.
    files = {p.name for p in out.iterdir()}
    assert "model.safetensors" in files and not any(name.startswith("adapter") for name in files)
    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert model.config.id2label == {0: "neg", 1: "pos"}
    assert accuracy(model, AutoTokenizer.from_pretrained(out)) > 0.85
    # Checkpoints hold the adapter only (small), and a rerun of the unfinished run resumes from them.
    checkpoints = sorted(out.glob("checkpoint-*"))
    assert checkpoints and (checkpoints[-1] / "adapter_model.safetensors").is_file()
    assert not (checkpoints[-1] / "model.safetensors").exists()
    run_json = out / "run.json"
    run_json.write_text(run_json.read_text().replace('"finished": true', '"finished": false'))  # as if killed
    again = run_recipe(model_dir, train, out, *args)
    assert "resuming from" in again.stderr
    resumed = json.loads((out / "eval_report.json").read_text())["metrics"]
    assert (resumed["accuracy"], resumed["loss"]) == (
        report["metrics"]["accuracy"],
        report["metrics"]["loss"],
    )


def test_qlora_run_merges_into_the_float_base(tmp_path, tiny_tokenizer):
    model_dir = write_tiny_model(tmp_path / "tiny", tiny_tokenizer)
    train = write_toy_tsv(tmp_path / "train.tsv", 120, seed=1)
    out = tmp_path / "run"
    run_recipe(
        model_dir, train, out, "--qlora_bits", "8", "--lora_r", "4", "--learning_rate", "1e-2",
        "--num_train_epochs", "1", "--save_strategy", "no",
    )  # fmt: skip
    assert (out / "adapter" / "adapter_config.json").is_file()  # what was trained, kept beside the merge
    assert not (out / "adapter_config.json").exists()
    merged = AutoModelForSequenceClassification.from_pretrained(out)
    base = AutoModelForSequenceClassification.from_pretrained(model_dir)
    assert "quantization_config" not in json.loads((out / "config.json").read_text())
    assert merged.bert.encoder.layer[0].attention.self.query.weight.dtype == torch.float32
    # The adapter was merged into the encoder and the head was trained.
    assert not torch.equal(
        merged.bert.encoder.layer[0].attention.self.query.weight,
        base.bert.encoder.layer[0].attention.self.query.weight,
    )
    assert not torch.equal(merged.classifier.weight, base.classifier.weight)
    assert torch.equal(
        merged.bert.embeddings.word_embeddings.weight, base.bert.embeddings.word_embeddings.weight
    )
