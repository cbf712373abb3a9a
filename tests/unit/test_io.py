"""hfkit.io: one task kind for every name, one loader for dense, low-rank and bitsandbytes folders."""

from __future__ import annotations

import json

import pytest
import torch
from peft import TaskType
from transformers import AutoModelForSequenceClassification, BertForSequenceClassification

from hfkit.compress.lowrank import LowRankArguments, factorize_model, save_lowrank
from hfkit.compress.quantize import QuantizeArguments, load_quantized, save_quantized
from hfkit.errors import MissingInputError, UserInputError
from hfkit.io import LowRankLinear, TaskKind, load_model
from tests.conftest import write_tiny_model

IDS = {
    "input_ids": torch.tensor([[2, 5, 6, 7, 3], [2, 8, 9, 3, 0]]),
    "attention_mask": torch.tensor([[1] * 5, [1] * 4 + [0]]),
}


def logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(**IDS).logits


@pytest.mark.parametrize(
    "name, kind",
    [
        ("text-classification", TaskKind.TEXT_CLASSIFICATION),
        ("sequence-classification", TaskKind.TEXT_CLASSIFICATION),  # hfkit.compress.quantize's old name
        ("SEQ_CLS", TaskKind.TEXT_CLASSIFICATION),
        (TaskType.SEQ_CLS, TaskKind.TEXT_CLASSIFICATION),  # PEFT's enum
        ("causal-lm", TaskKind.TEXT_GENERATION),
        (TaskType.CAUSAL_LM, TaskKind.TEXT_GENERATION),
        ("fill-mask", TaskKind.FILL_MASK),
    ],
)
def test_task_kind_parses_every_name_of_a_task(name, kind):
    assert TaskKind.parse(name) is kind


def test_task_kind_facts_and_errors():
    kind = TaskKind.TEXT_CLASSIFICATION
    assert kind.pipeline_tag == "text-classification" and kind.peft_task_type == TaskType.SEQ_CLS.value
    assert kind.auto_class is AutoModelForSequenceClassification
    assert TaskKind.from_config({"architectures": ["LlamaForCausalLM"]}) is TaskKind.TEXT_GENERATION
    with pytest.raises(UserInputError, match="unknown task 'classify'; choose one of: text-classification"):
        TaskKind.parse("classify")
    with pytest.raises(UserInputError, match=r"cannot tell the task .*BertModel.*pass task="):
        TaskKind.from_config({"architectures": ["BertModel"]})


def test_load_model_dense_task_override_and_errors(tmp_path, tiny_tokenizer):
    folder = write_tiny_model(tmp_path / "run", tiny_tokenizer)
    model, tokenizer = load_model(folder)
    assert type(model) is BertForSequenceClassification and not model.training and len(tokenizer) == 47
    assert type(load_model(folder, task="fill-mask")[0]).__name__ == "BertForMaskedLM"
    with pytest.raises(UserInputError, match="unknown task 'classify'"):
        load_model(folder, task="classify")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "architectures": ["BertModel"]}))
    with pytest.raises(ValueError, match=r"cannot tell the task .*pass task="):
        load_model(folder)
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingInputError, match="config.json not found"):
        load_model(tmp_path / "empty")
    with pytest.raises(MissingInputError, match="does not exist"):
        load_model(tmp_path / "nowhere")


def test_load_model_does_not_run_code_shipped_in_the_folder(tmp_path, tiny_tokenizer):
    folder = write_tiny_model(tmp_path / "run", tiny_tokenizer)
    marker = tmp_path / "code_ran"
    (folder / "modeling_evil.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModelForSequenceClassification": "modeling_evil.Evil"}
    (folder / "config.json").write_text(json.dumps(config))
    model, _ = load_model(folder)
    assert type(model) is BertForSequenceClassification and not marker.exists()


def test_load_model_rebuilds_low_rank_and_quantized_folders(tmp_path, tiny_tokenizer):
    folder = write_tiny_model(tmp_path / "dense", tiny_tokenizer)
    model = BertForSequenceClassification.from_pretrained(folder)
    factorize_model(model, LowRankArguments(rank=4))
    save_lowrank(model, tiny_tokenizer, tmp_path / "lowrank")
    loaded, _ = load_model(tmp_path / "lowrank")
    assert isinstance(loaded.bert.encoder.layer[0].intermediate.dense, LowRankLinear)
    torch.testing.assert_close(logits(loaded), logits(model), rtol=0, atol=0)

    quantized = load_quantized(tmp_path / "lowrank", QuantizeArguments(bits=8))
    before = logits(quantized)
    save_quantized(quantized, tiny_tokenizer, tmp_path / "int8")
    reloaded, tokenizer = load_model(tmp_path / "int8")
    assert reloaded.is_loaded_in_8bit and len(tokenizer) == 47
    assert torch.equal(logits(reloaded), before)


def test_io_imports_nothing_above_it():
    """Data flows io -> data -> trainers / compress -> hub: io imports only errors and modeling (path resolution)."""
    import ast
    from pathlib import Path

    import hfkit.io

    tree = ast.parse(Path(hfkit.io.__file__).read_text())
    relative = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level}
    absolute = {a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
    assert relative == {"errors", "modeling"} and not any(name.startswith("hfkit") for name in absolute)
    modeling = ast.parse(Path(hfkit.io.__file__).with_name("modeling.py").read_text())
    assert {n.module for n in ast.walk(modeling) if isinstance(n, ast.ImportFrom) and n.level} <= {"errors"}
