"""recipes/compress.py end to end with tiny models: chains share prefixes, every stage reloads and is measured."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch
from safetensors import safe_open
from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertTokenizerFast

from hfkit.compress.lowrank import load_lowrank
from hfkit.compress.quantize import load_quantized
from tests.conftest import REPO, SPECIAL, WORDS, write_tiny_model, write_toy_tsv

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def test_compress_recipe_runs_chains_and_writes_report(tmp_path, tiny_tokenizer):
    teacher = write_tiny_model(tmp_path / "teacher", tiny_tokenizer, layers=4, hidden=64)
    student = write_tiny_model(tmp_path / "student", tiny_tokenizer, layers=2, hidden=64)
    train = write_toy_tsv(tmp_path / "train.tsv", 200, seed=1)
    out = tmp_path / "compressed"
    cmd = [
        sys.executable, str(REPO / "recipes" / "compress.py"),
        "--model_name_or_path", str(student), "--teacher_name_or_path", str(teacher),
        "--train_file", str(train), "--text_column", "sentence", "--label_column", "sentiment",
        "--validation_split", "0.2", "--output_dir", str(out),
        "--chains", "int8", "prune:method=magnitude,sparsity=0.5>recover",
        "prune:method=magnitude,sparsity=0.5>recover>lowrank:rank=4", "lowrank:rank=4>nf4",
        "trim_vocab:trim_corpus=train>int8", "trim_vocab:trim_corpus=train,trim_min_frequency=40>recover",
        "--max_steps", "3", "--per_device_train_batch_size", "16", "--learning_rate", "1e-3",
        "--eval_strategy", "no", "--save_strategy", "no", "--disable_tqdm", "true",
        "--latency_repeats", "2", "--latency_batch_size", "4",
        "--teacher_logits_cache", str(tmp_path / "cache"), "--teacher_logits_dtype", "bfloat16",
    ]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]

    report = json.loads((out / "compression_report.json").read_text())
    names = [row["name"] for row in report["models"]]
    # The shared prefix prune>recover ran once; each stage of each chain is one row.
    pruned = "prune_method=magnitude_sparsity=0.5"
    assert names == [
        "teacher", "student", "int8", pruned, f"{pruned}-recover", f"{pruned}-recover-lowrank_rank=4",
        "lowrank_rank=4", "lowrank_rank=4-nf4", "trim_vocab_trim_corpus=train", "trim_vocab_trim_corpus=train-int8",
        "trim_vocab_trim_corpus=train_trim_min_frequency=40", "trim_vocab_trim_corpus=train_trim_min_frequency=40-recover",
    ]  # fmt: skip
    assert report["validation_examples"] == 40
    for row in report["models"]:
        assert 0.0 <= row["accuracy"] <= 1.0 and row["latency_ms"] > 0 and row["size_mb"] > 0

    int8 = next(r for r in report["models"] if r["chain"] == "int8")
    student_row = next(r for r in report["models"] if r["name"] == "student")
    assert int8["memory_mb"] < student_row["memory_mb"]
    assert int8["parameters"] == student_row["parameters"]  # the float model's count, not bnb's packing

    # Recovery kept the magnitude-pruned zeros: the recovered weights are still 50% sparse.
    recovered = next(r for r in report["models"] if r["chain"].endswith("sparsity=0.5>recover"))
    model = AutoModelForSequenceClassification.from_pretrained(recovered["folder"])
    weight = model.bert.encoder.layer[0].intermediate.dense.weight
    assert 0.3 < float((weight == 0).float().mean()) < 0.7
    with safe_open(os.path.join(recovered["folder"], "model.safetensors"), "pt") as f:
        assert not any(k.endswith(("weight_orig", "weight_mask")) for k in f.keys())  # noqa: SIM118 (safe_open is not iterable)

    # Every folder reloads the way a user would load it.
    lowrank_row = next(r for r in report["models"] if r["chain"] == "lowrank:rank=4")
    assert load_lowrank(lowrank_row["folder"]).config.lowrank_ranks
    assert lowrank_row["parameters"] < student_row["parameters"]
    nf4 = next(r for r in report["models"] if r["chain"] == "lowrank:rank=4>nf4")
    assert getattr(load_quantized(nf4["folder"]), "is_loaded_in_4bit", False)

    # The toy text uses every word of the 47-token vocabulary: trimming keeps all of it, and says so.
    trimmed = next(r for r in report["models"] if r["chain"] == "trim_vocab:trim_corpus=train")
    assert trimmed["extra"]["vocab_size"] == 47 and trimmed["extra"]["oov_tokens"] == 0

    # Recovery after a lossy trim trains the trimmed model on text re-tokenized with the trimmed tokenizer (the
    # full vocabulary's ids would index past its embedding table) and keeps the trimmed vocabulary.
    lossy = next(
        r for r in report["models"] if r["chain"] == "trim_vocab:trim_corpus=train,trim_min_frequency=40"
    )
    assert 0 < lossy["extra"]["vocab_size"] < 47 and lossy["extra"]["oov_tokens"] > 0
    lossy_recovered = next(
        r for r in report["models"] if r["chain"].endswith("trim_min_frequency=40>recover")
    )
    before = AutoModelForSequenceClassification.from_pretrained(lossy["folder"])
    after = AutoModelForSequenceClassification.from_pretrained(lossy_recovered["folder"])
    assert after.config.vocab_size == before.config.vocab_size == lossy["extra"]["vocab_size"]
    assert len(AutoTokenizer.from_pretrained(lossy_recovered["folder"])) == lossy["extra"]["vocab_size"]
    assert not torch.equal(
        before.bert.embeddings.word_embeddings.weight, after.bert.embeddings.word_embeddings.weight
    )  # trained
    assert lossy_recovered["parameters"] == lossy["parameters"] < student_row["parameters"]

    assert (out / "compression_report.md").read_text().count("|") > 10
    assert (out / "compression_report.png").read_bytes()[:4] == b"\x89PNG"
    # The printed report is headed by the compressed model and the data it was scored on.
    assert f"Compression report: {student} on 40 validation examples" in result.stdout, result.stdout[-2000:]
    # Recovery distilled from the teacher's logits, scored once in the precision asked for.
    (cache_file,) = (tmp_path / "cache").glob("teacher-logits-*.safetensors")
    with safe_open(str(cache_file), "pt") as f:
        assert f.metadata()["autocast_dtype"] == "bfloat16"


def test_recover_scores_a_teacher_of_another_vocabulary_on_its_own_tokens(tmp_path, tiny_tokenizer):
    """A teacher with another vocabulary (MPNet teaching a MiniLM student) reads the text with its own
    tokenizer: fed the student's ids it would score other words, and recovery would distil noise."""
    other = BertTokenizerFast(vocab={t: i for i, t in enumerate(SPECIAL + list(reversed(WORDS)) + ["extra"])})
    teacher = write_tiny_model(tmp_path / "teacher", tiny_tokenizer, layers=2, hidden=64)
    student = write_tiny_model(tmp_path / "student", other, layers=1, hidden=64)
    train = write_toy_tsv(tmp_path / "train.tsv", 60, seed=1)
    validation = write_toy_tsv(tmp_path / "validation.tsv", 20, seed=2)
    cmd = [
        sys.executable, str(REPO / "recipes" / "compress.py"),
        "--model_name_or_path", str(student), "--teacher_name_or_path", str(teacher),
        "--train_file", str(train), "--validation_file", str(validation), "--text_column", "sentence",
        "--label_column", "sentiment", "--output_dir", str(tmp_path / "out"), "--chains", "recover",
        "--max_steps", "1", "--per_device_train_batch_size", "8", "--eval_strategy", "no", "--save_strategy", "no",
        "--disable_tqdm", "true", "--latency_repeats", "1", "--latency_batch_size", "4",
        "--teacher_logits_cache", str(tmp_path / "cache"), "--teacher_logits_dtype", "float32",
    ]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    (cache_file,) = (tmp_path / "cache").glob("teacher-logits-*.safetensors")
    with safe_open(str(cache_file), "pt") as f:
        cached = f.get_tensor(f.keys()[0])
    texts = [line.split("\t")[0] for line in train.read_text().splitlines()[1:]]
    model = AutoModelForSequenceClassification.from_pretrained(teacher).eval()
    with torch.no_grad():
        own = model(**tiny_tokenizer(texts, padding=True, return_tensors="pt")).logits
        wrong = model(**other(texts, padding=True, return_tensors="pt")).logits
    # A random tiny teacher's logits barely depend on its input: compare against the gap the wrong ids make.
    gap = float((own - wrong).abs().max())
    assert float((cached - own).abs().max()) < gap / 20, (gap, float((cached - own).abs().max()))
