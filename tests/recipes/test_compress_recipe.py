"""recipes/compress.py end to end with tiny models: chains share prefixes, every stage reloads and is measured."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import bitsandbytes as bnb
import pytest
import torch
from safetensors import safe_open
from torch import nn
from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertTokenizerFast

from hfkit.compress.lowrank import load_lowrank
from hfkit.io import load_model
from hfkit.modeling import count_parameters
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
    rows = {row["name"]: row for row in report["models"]}
    student_row = rows["student"]
    texts = [line.split("\t")[0] for line in train.read_text().splitlines()[1:41]]
    logits = {}
    for row in report["models"]:
        # Every folder reloads the way a user would load it, and the row's figures are those of that folder:
        # its weight file, the memory and parameters of the model it reloads to.
        model, tokenizer = load_model(row["folder"])
        assert row["size_mb"] == pytest.approx(os.path.getsize(f"{row['folder']}/model.safetensors") / 1e6)
        assert row["memory_mb"] == pytest.approx(model.get_memory_footprint() / 1e6), row["name"]
        assert row["parameters"] == count_parameters(model)[0], row["name"]
        if not is_quantized(model):  # quantized stages report their float parent's counts
            assert row["nonzero_parameters"] == nonzero(model), row["name"]
        # Speed-up, size ratio and accuracy change are relative to the student row.
        assert row["speedup"] == pytest.approx(student_row["latency_ms"] / row["latency_ms"])
        assert row["size_ratio"] == pytest.approx(row["size_mb"] / student_row["size_mb"])
        assert row["accuracy_delta_points"] == pytest.approx(
            100 * (row["accuracy"] - student_row["accuracy"])
        )
        with torch.no_grad():
            logits[row["name"]] = model(**tokenizer(texts, padding=True, return_tensors="pt")).logits

    int8 = rows["int8"]
    assert int8["memory_mb"] < student_row["memory_mb"]
    assert int8["parameters"] == student_row["parameters"]  # the float model's count, not bnb's packing
    # Quantized, and close to the float parent: each quantized Linear's output is off by about the rounding of
    # its weights and inputs (int8 ~1%, NF4 ~10% measured); a float layer would be off by nothing, wrong scales
    # by far more. The task head and pooler stay float.
    trim = "trim_vocab_trim_corpus=train"
    for quantized, parent, low, high in [
        ("int8", "student", 1e-3, 0.03),
        (f"{trim}-int8", trim, 1e-3, 0.03),
        ("lowrank_rank=4-nf4", "lowrank_rank=4", 0.02, 0.2),
    ]:
        errors, kept_float = layer_errors(rows[quantized]["folder"], rows[parent]["folder"])
        assert errors and all(low < e < high for e in errors.values()), (quantized, errors)
        assert kept_float == {"bert.pooler.dense", "classifier"}, kept_float
    scale = logits["student"].abs().max().item()
    torch.testing.assert_close(logits["int8"], logits["student"], rtol=0, atol=0.01 * scale)
    assert not torch.equal(logits["int8"], logits["student"])
    # Trimming that keeps the whole vocabulary changes nothing: the same logits, before and after int8.
    assert torch.equal(logits[trim], logits["student"])
    assert torch.equal(logits[f"{trim}-int8"], logits["int8"])

    float_student = AutoModelForSequenceClassification.from_pretrained(student)
    blocks = [
        n for n, m in float_student.named_modules() if n.startswith("bert.encoder.layer.") and type(m) is nn.Linear
    ]  # fmt: skip

    # Global magnitude pruning zeroed half of the blocks' Linear weights, the smallest in |w| of the student's;
    # recovery trained the others and kept exactly those zeros.
    recovered = rows[f"{pruned}-recover"]
    student_w, pruned_w, recovered_w = (
        torch.cat([AutoModelForSequenceClassification.from_pretrained(folder).get_submodule(n).weight.flatten()
                   for n in blocks]) for folder in (student, rows[pruned]["folder"], recovered["folder"])
    )  # fmt: skip
    zeros = pruned_w == 0
    assert int(zeros.sum()) == round(0.5 * zeros.numel())
    assert student_w.abs()[zeros].max() <= student_w.abs()[~zeros].min()
    assert torch.equal(pruned_w[~zeros], student_w[~zeros])
    assert torch.equal(recovered_w == 0, zeros) and not torch.equal(recovered_w, pruned_w)
    with safe_open(os.path.join(recovered["folder"], "model.safetensors"), "pt") as f:
        assert not any(k.endswith(("weight_orig", "weight_mask")) for k in f.keys())  # noqa: SIM118 (safe_open is not iterable)

    # Rank 4 factorizes every Linear of the blocks (r * (in + out) < in * out): each in*out weight becomes
    # 4 * (in + out), and the row counts exactly that.
    lowrank = load_lowrank(rows["lowrank_rank=4"]["folder"])
    assert lowrank.config.lowrank_ranks == dict.fromkeys(blocks, 4)
    shapes = [float_student.get_submodule(n).weight.shape for n in blocks]
    saved = sum(out * inp - 4 * (inp + out) for out, inp in shapes)
    assert rows["lowrank_rank=4"]["parameters"] == student_row["parameters"] - saved

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

    markdown = (out / "compression_report.md").read_text()
    for row in report["models"]:  # one table line per row, with its own figures
        assert f"\n| {row['name']} | {row['chain'] or '-'} | {row['parameters']:,} |" in markdown
    assert (out / "compression_report.png").read_bytes()[:4] == b"\x89PNG"
    # The printed report is headed by the compressed model and the data it was scored on.
    assert f"Compression report: {student} on 40 validation examples" in result.stdout, result.stdout[-2000:]
    # Recovery distilled from the teacher's logits, scored once in the precision asked for.
    (cache_file,) = (tmp_path / "cache").glob("teacher-logits-*.safetensors")
    with safe_open(str(cache_file), "pt") as f:
        assert f.metadata()["autocast_dtype"] == "bfloat16"


def is_quantized(model: nn.Module) -> bool:
    return any(isinstance(m, (bnb.nn.Linear8bitLt, bnb.nn.Linear4bit)) for m in model.modules())


def nonzero(model: nn.Module) -> int:
    """Non-zero float weights, counted as the report counts them (quantized storage is not float)."""
    return sum(int(torch.count_nonzero(p)) for p in model.parameters() if p.dtype.is_floating_point)


def layer_errors(quantized_folder: str, float_folder: str) -> tuple[dict[str, float], set[str]]:
    """Relative error of each bitsandbytes Linear against the float parent's on random inputs, and the
    names of the Linear layers that stayed float."""
    quantized, _ = load_model(quantized_folder)
    parent = dict(load_model(float_folder)[0].named_modules())
    torch.manual_seed(0)
    errors, kept_float = {}, set()
    for name, module in quantized.named_modules():
        if isinstance(module, (bnb.nn.Linear8bitLt, bnb.nn.Linear4bit)):
            x = torch.randn(16, module.in_features)
            with torch.no_grad():
                expected, got = parent[name](x), module(x)
            errors[name] = float((got - expected).norm() / expected.norm())
        elif type(module) is nn.Linear:
            kept_float.add(name)
    return errors, kept_float


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
