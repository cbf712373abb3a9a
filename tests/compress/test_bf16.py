"""bf16 stage: a bfloat16 torch folder that reloads in bfloat16 to the in-memory model's logits, at half the size."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from transformers import BertForSequenceClassification

from hfkit.compress.bf16 import export_bf16
from hfkit.compress.lowrank import LowRankArguments
from hfkit.compress.pipeline import CompressArguments, measure_variant, parse_chain, run_chains
from hfkit.compress.prune import PruneArguments
from hfkit.compress.quantize import QuantizeArguments
from hfkit.errors import UserInputError
from hfkit.io import load_model
from tests.conftest import write_tiny_student

TEXTS = [
    "the plot is a gripping thriller.",
    "neither funny nor moving, and the jokes fall flat.",
    "thin",
    "an unforgettable performance by the lead actress!",
]
LABELS = [1, 0, 0, 1]


@pytest.fixture(scope="module")
def stage(tmp_path_factory):
    """(float student, its tokenizer, the bf16 stage's result) of the chain 'bf16'."""
    root = tmp_path_factory.mktemp("bf16")
    student, tokenizer = write_tiny_student(root / "student")
    raw = Dataset.from_dict({"text": TEXTS, "labels": LABELS})
    args = CompressArguments(model_name_or_path=str(root / "student"), chains=["bf16"])

    def measure(name, chain, model, folder, parameters, model_tokenizer):
        return measure_variant(
            name, chain, model, model_tokenizer, folder, raw, "text", None, 64, args, parameters
        )

    (bf16,) = run_chains(
        args, tokenizer, str(root / "out"), measure, PruneArguments(), LowRankArguments(), QuantizeArguments()
    )
    return student, tokenizer, bf16


def _logits(model, tokenizer) -> torch.Tensor:
    with torch.no_grad():
        return model(**tokenizer(TEXTS, padding=True, return_tensors="pt")).logits


def test_folder_reloads_in_bf16_to_the_in_memory_bf16_logits(stage):
    student, tokenizer, bf16 = stage
    model, reloaded_tokenizer = load_model(bf16.folder)
    assert model.dtype == torch.bfloat16 and not model.training
    assert json.loads(Path(bf16.folder, "config.json").read_text())["dtype"] == "bfloat16"
    in_memory = BertForSequenceClassification(student.config).eval()
    in_memory.load_state_dict(student.state_dict())
    in_memory = in_memory.to(torch.bfloat16)
    # Same weights, same kernels: bit for bit (a rounding done twice or a float32 reload would differ).
    torch.testing.assert_close(
        _logits(model, reloaded_tokenizer), _logits(in_memory, tokenizer), rtol=0, atol=0
    )
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())


def test_weights_file_is_half_the_float32_size(stage, tmp_path):
    student, _, bf16 = stage
    student.save_pretrained(tmp_path / "float")
    float_bytes = (tmp_path / "float" / "model.safetensors").stat().st_size
    bf16_bytes = Path(bf16.folder, "model.safetensors").stat().st_size
    assert bf16_bytes == pytest.approx(float_bytes / 2, rel=0.02)
    assert bf16.parameters == student.num_parameters()  # the report counts every weight once


def test_logits_are_close_to_float32_but_rounded(stage):
    student, tokenizer, bf16 = stage
    model, _ = load_model(bf16.folder)
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        got, expected = model(**batch).logits.float(), student(**batch).logits
        unmasked = student(input_ids=batch["input_ids"]).logits  # the padding read as text
    # Measured against how much the logits move between inputs (the spread: what a prediction reads), not their
    # size: a random tiny BERT's logits share a large input-independent part. bfloat16 keeps 8 bits of mantissa;
    # on this model its error is ~3% of the spread (0.0013 of 0.037). Tolerance 20%: ignoring the padding mask
    # misses by 140% here (checked below), and a missing, transposed or misread weight by more.
    spread = (expected - expected.mean(0)).abs().max().item()
    torch.testing.assert_close(got, expected, rtol=0, atol=0.2 * spread)
    assert (unmasked - expected).abs().max().item() > 0.2 * spread  # the tolerance can see a wrong graph
    assert not torch.equal(got, expected)  # really rounded to bfloat16
    assert bf16.accuracy == pytest.approx(
        (got.argmax(-1) == torch.tensor(LABELS)).float().mean().item()
    )  # measured as reloaded


def test_bf16_is_a_final_stage_and_refuses_exported_folders(stage, tmp_path):
    with pytest.raises(ValueError, match="bf16 must be the last stage"):
        parse_chain("bf16>cpu_int8")
    parse_chain("trim_vocab>bf16")
    _, _, bf16 = stage
    config = json.loads(Path(bf16.folder, "config.json").read_text())
    config["cpu_int8"] = {"file": "model.onnx"}
    (tmp_path / "onnx").mkdir()
    (tmp_path / "onnx" / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserInputError, match="already quantized or exported"):
        export_bf16(tmp_path / "onnx", tmp_path / "out")
