"""bitsandbytes 8-bit / 4-bit quantization of tiny saved models: heads stay float, save -> reload is exact."""

from __future__ import annotations

import json

import bitsandbytes as bnb
import numpy as np
import pytest
import torch
from datasets import ClassLabel, Dataset
from safetensors.torch import load_file
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    DistilBertConfig,
    LlamaConfig,
    LlamaForCausalLM,
    MPNetConfig,
)
from transformers.quantizers.quantizers_utils import should_convert_module

from hfkit import ClassifierConfig, ClassifierTrainer
from hfkit.compress.quantize import (
    QuantizeArguments,
    bnb_config,
    load_quantized,
    memory_footprint_mb,
    quantization_summary,
    save_quantized,
    skip_modules_for,
)
from hfkit.evaluation import evaluate_classifier, measure_latencies_together
from hfkit.modeling import count_parameters
from tests.conftest import tiny_bert_config, toy_dataset, toy_texts, write_tiny_model

# hidden 64 -> intermediate 128: output.dense rows span two 64-weight blocks, which is where a misplaced
# (transposed) absmax shows; initializer_range 0.1 gives logits that differ between inputs.
TINY = {"hidden": 64, "initializer_range": 0.1}
SETTINGS = {
    "8bit": QuantizeArguments(bits=8),
    "nf4-double": QuantizeArguments(bits=4, quant_type="nf4", double_quant=True),
    "nf4": QuantizeArguments(bits=4, quant_type="nf4", double_quant=False),
    "fp4": QuantizeArguments(bits=4, quant_type="fp4", double_quant=True),
}
QUANTIZED_LINEAR = {8: bnb.nn.Linear8bitLt, 4: bnb.nn.Linear4bit}
# bitsandbytes repacks 4-bit weights for its CPU kernel only on CPUs with AVX512-BF16.
CPU_REPACKS = bnb.functional.has_avx512bf16() and not torch.cuda.is_available()


def bert_folder(path, tokenizer):
    return write_tiny_model(path, tokenizer, **TINY)


def llama_folder(path):
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=128,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=32,
        initializer_range=0.1,
    )
    LlamaForCausalLM(config).save_pretrained(path)
    return path


def batch_of(tokenizer, n=16):
    return tokenizer(toy_texts(n, seed=3)[0], return_tensors="pt", padding=True)


@torch.inference_mode()
def logits(model, batch):
    return model(**{k: v.to(model.device) for k, v in batch.items()}).logits.float().cpu()


def raw_toy(n: int, seed: int) -> Dataset:
    texts, labels = toy_texts(n, seed=seed)
    return Dataset.from_dict({"text": texts, "labels": labels}).cast_column(
        "labels", ClassLabel(names=["bad", "good"])
    )


# --- arguments and skip names ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"bits": 3}, "bits=3"),
        ({"bits": 4, "quant_type": "int4"}, "quant_type='int4'"),
        ({"compute_dtype": "float64"}, "compute_dtype='float64'"),
        ({"skip_modules": "classifier"}, "give a list"),
    ],
)
def test_arguments_reject_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        QuantizeArguments(**kwargs)


def test_skip_modules_per_architecture(tiny_tokenizer, tiny_bert):
    small = dict(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, vocab_size=99
    )
    bert = tiny_bert_config(tiny_tokenizer, architectures=["BertForSequenceClassification"])
    assert skip_modules_for(bert) == ["bert.pooler.dense", "classifier"]
    assert skip_modules_for(tiny_bert) == skip_modules_for(bert)  # from a model or from its config
    assert skip_modules_for(MPNetConfig(**small), "sequence-classification") == [
        "classifier.dense",
        "classifier.out_proj",
    ]
    distil = DistilBertConfig(dim=32, n_layers=1, n_heads=2, hidden_dim=64, vocab_size=99)
    assert skip_modules_for(distil, "sequence-classification") == ["pre_classifier", "classifier"]
    assert skip_modules_for(LlamaConfig(**small), "causal-lm") == ["lm_head"]
    assert skip_modules_for(LlamaConfig(**small), "sequence-classification") == ["score"]
    # The trap: transformers matches skip names as a prefix/suffix at a module boundary, so "pooler"
    # leaves bert.pooler.dense quantized while the full name keeps it in float.
    assert should_convert_module("bert.pooler.dense", ["pooler"])
    assert not should_convert_module("bert.pooler.dense", ["bert.pooler.dense"])


def test_skip_name_that_matches_nothing_is_rejected(tiny_tokenizer):
    config = tiny_bert_config(tiny_tokenizer, architectures=["BertForSequenceClassification"])
    with pytest.raises(ValueError, match=r"'pooler' matches no Linear.*bert\.pooler\.dense"):
        bnb_config(QuantizeArguments(skip_modules=["pooler"]), config)


def test_bnb_config_carries_settings(tiny_tokenizer):
    config = tiny_bert_config(tiny_tokenizer, architectures=["BertForSequenceClassification"])
    four = bnb_config(
        QuantizeArguments(bits=4, quant_type="fp4", double_quant=False, compute_dtype="bfloat16"), config
    )
    assert four.load_in_4bit and not four.load_in_8bit
    assert (four.bnb_4bit_quant_type, four.bnb_4bit_use_double_quant) == ("fp4", False)
    assert four.bnb_4bit_compute_dtype == torch.bfloat16
    assert four.llm_int8_skip_modules == ["bert.pooler.dense", "classifier"]
    eight = bnb_config(QuantizeArguments(bits=8, skip_modules=["bert.encoder.layer.0.output.dense"]), config)
    assert eight.load_in_8bit
    assert eight.llm_int8_skip_modules == [
        "bert.pooler.dense",
        "classifier",
        "bert.encoder.layer.0.output.dense",
    ]


# --- classifier: quantize -> float head -> smaller -> save -> reload exactly -------------------------------


@pytest.mark.parametrize("name", list(SETTINGS))
def test_classifier_save_reload_gives_identical_logits(tmp_path, tiny_tokenizer, name):
    args = SETTINGS[name]
    folder = bert_folder(tmp_path / "float", tiny_tokenizer)
    float_model = AutoModelForSequenceClassification.from_pretrained(folder)
    model = load_quantized(folder, args)

    assert type(model.classifier) is torch.nn.Linear and model.classifier.weight.dtype == torch.float32
    assert type(model.bert.pooler.dense) is torch.nn.Linear
    assert isinstance(model.bert.encoder.layer[0].output.dense, QUANTIZED_LINEAR[args.bits])
    summary = quantization_summary(model)
    assert summary["quantized_layers"] == 12 and summary["float_layers"] == [
        "bert.pooler.dense",
        "classifier",
    ]
    assert memory_footprint_mb(model) < memory_footprint_mb(float_model)

    save_quantized(model, tiny_tokenizer, tmp_path / "q0")  # before any forward
    batch = batch_of(tiny_tokenizer)
    before = logits(model, batch)  # on an AVX512-BF16 CPU this first 4-bit forward repacks the weights
    if args.bits == 4 and CPU_REPACKS:
        assert model.bert.encoder.layer[0].output.dense.weight.quant_state.packing_format_for_cpu
    save_quantized(model, tiny_tokenizer, tmp_path / "q")
    assert torch.equal(logits(model, batch), before)  # saving does not change the model in memory

    saved = json.loads((tmp_path / "q" / "config.json").read_text())["quantization_config"]
    assert saved["llm_int8_skip_modules"] == ["bert.pooler.dense", "classifier"]
    assert saved["load_in_8bit"] == (args.bits == 8)
    assert not list((tmp_path / "q").glob("*.bin"))
    # Saved after a forward pass = saved before it, tensor for tensor (double-quant scales included).
    first, second = (
        load_file(tmp_path / "q0" / "model.safetensors"),
        load_file(tmp_path / "q" / "model.safetensors"),
    )
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)

    reloaded = load_quantized(tmp_path / "q")
    assert torch.equal(logits(reloaded, batch), before)
    assert memory_footprint_mb(reloaded) == pytest.approx(memory_footprint_mb(model))
    # Same settings again: accepted, same model.
    assert torch.equal(logits(load_quantized(tmp_path / "q", args), batch), before)


def test_extra_skip_module_stays_float(tmp_path, tiny_tokenizer):
    folder = bert_folder(tmp_path, tiny_tokenizer)
    model = load_quantized(
        folder, QuantizeArguments(bits=4, skip_modules=["bert.encoder.layer.0.output.dense"])
    )
    assert type(model.bert.encoder.layer[0].output.dense) is torch.nn.Linear
    assert isinstance(model.bert.encoder.layer[1].output.dense, bnb.nn.Linear4bit)


def test_restores_cpu_repacked_layers_of_a_model_loaded_elsewhere(tmp_path, tiny_tokenizer):
    # A model quantized with plain from_pretrained: no remembered state, so the exact scales the CPU kernel
    # used are saved instead.
    folder = bert_folder(tmp_path / "float", tiny_tokenizer)
    args = SETTINGS["nf4-double"]
    model = AutoModelForSequenceClassification.from_pretrained(
        folder, quantization_config=bnb_config(args, AutoConfig.from_pretrained(folder))
    ).eval()
    batch = batch_of(tiny_tokenizer)
    before = logits(model, batch)
    save_quantized(model, tiny_tokenizer, tmp_path / "q")
    assert torch.equal(logits(model, batch), before)
    assert torch.equal(logits(load_quantized(tmp_path / "q"), batch), before)


@pytest.mark.skipif(not CPU_REPACKS, reason="bitsandbytes repacks 4-bit weights only on AVX512-BF16 CPUs")
def test_plain_save_pretrained_after_cpu_forward_is_lossy(tmp_path, tiny_tokenizer):
    """The cause of the NF4 reload mismatch, upstream (bitsandbytes 0.50.2). If this starts failing,
    bitsandbytes saves repacked layers faithfully and save_quantized's restore step can go."""
    folder = bert_folder(tmp_path / "float", tiny_tokenizer)
    model = load_quantized(folder, SETTINGS["nf4"])
    batch = batch_of(tiny_tokenizer)
    before = logits(model, batch)
    model.save_pretrained(tmp_path / "plain")
    reloaded = load_quantized(tmp_path / "plain")
    assert not torch.allclose(logits(reloaded, batch), before, atol=1e-4)


# --- metrics of a trained classifier survive quantization --------------------------------------------------


@pytest.fixture(scope="module")
def trained_folder(tmp_path_factory, tiny_tokenizer):
    """A tiny BERT trained on the toy task (accuracy ~1), saved as a recipe would."""
    out = tmp_path_factory.mktemp("trained")
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(
        tiny_bert_config(tiny_tokenizer, hidden=64, id2label={0: "bad", 1: "good"})
    )
    args = ClassifierConfig(
        output_dir=str(out / "run"),
        use_cpu=True,
        report_to="none",
        disable_tqdm=True,
        learning_rate=1e-3,
        per_device_train_batch_size=16,
        max_steps=60,
        eval_strategy="no",
        save_strategy="no",
        logging_steps=100,
        seed=0,
    )
    ClassifierTrainer(
        model=model,
        args=args,
        train_dataset=toy_dataset(tiny_tokenizer, 400, seed=1),
        processing_class=tiny_tokenizer,
    ).train()
    model.save_pretrained(out / "model")
    tiny_tokenizer.save_pretrained(out / "model")
    return out / "model"


@pytest.mark.parametrize("name", ["8bit", "nf4-double"])
def test_quantized_classifier_keeps_float_metrics(trained_folder, tiny_tokenizer, name):
    raw = raw_toy(64, seed=9)
    float_model = AutoModelForSequenceClassification.from_pretrained(trained_folder).eval()
    model = load_quantized(trained_folder, SETTINGS[name])
    float_metrics = evaluate_classifier(float_model, tiny_tokenizer, raw, "text", batch_size=16)
    metrics = evaluate_classifier(model, tiny_tokenizer, raw, "text", batch_size=16)
    assert float_metrics["accuracy"] > 0.9  # the trained model learned the task
    assert metrics["accuracy"] >= float_metrics["accuracy"] - 0.05
    batch = tiny_tokenizer(list(raw["text"]), return_tensors="pt", padding=True)
    float_logits, quant_logits = logits(float_model, batch), logits(model, batch)
    assert (float_logits.argmax(-1) == quant_logits.argmax(-1)).float().mean() >= 0.95
    assert (
        np.corrcoef(float_logits[:, 1] - float_logits[:, 0], quant_logits[:, 1] - quant_logits[:, 0])[0, 1]
        > 0.95
    )
    assert measure_latencies_together({"q": (model, tiny_tokenizer)}, list(raw["text"]), 8, rounds=2)["q"] > 0


# --- causal LM ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["8bit", "nf4-double"])
def test_causal_lm_keeps_lm_head_float_and_reloads_exactly(tmp_path, name):
    folder = llama_folder(tmp_path / "float")
    float_model = LlamaForCausalLM.from_pretrained(folder)
    model = load_quantized(folder, SETTINGS[name])  # task read from config.architectures
    assert isinstance(model, LlamaForCausalLM)
    assert type(model.lm_head) is torch.nn.Linear and model.lm_head.weight.dtype == torch.float32
    assert isinstance(model.model.layers[0].mlp.down_proj, QUANTIZED_LINEAR[SETTINGS[name].bits])
    assert memory_footprint_mb(model) < memory_footprint_mb(float_model)

    batch = {"input_ids": torch.randint(0, 128, (2, 12), generator=torch.Generator().manual_seed(0))}
    before = logits(model, batch)
    assert before.shape == (2, 12, 128)
    # Close to the float model's logits (a random LM's argmax is too flat to compare).
    assert torch.corrcoef(torch.stack([before.flatten(), logits(float_model, batch).flatten()]))[0, 1] > 0.9
    save_quantized(model, None, tmp_path / "q")
    assert torch.equal(logits(load_quantized(tmp_path / "q"), batch), before)


# --- errors ------------------------------------------------------------------------------------------------


def test_missing_folder_or_config(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_quantized(tmp_path / "nope", QuantizeArguments())
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        load_quantized(tmp_path, QuantizeArguments())


def test_requantizing_with_other_settings_is_refused(tmp_path, tiny_tokenizer):
    folder = bert_folder(tmp_path / "float", tiny_tokenizer)
    save_quantized(load_quantized(folder, QuantizeArguments(bits=8)), tiny_tokenizer, tmp_path / "q8")
    with pytest.raises(ValueError, match=r"already quantized with \{'bits': 8.*cannot be quantized again"):
        load_quantized(tmp_path / "q8", QuantizeArguments(bits=4))


def test_float_folder_needs_arguments_and_float_model_cannot_be_saved_as_quantized(tmp_path, tiny_tokenizer):
    folder = bert_folder(tmp_path, tiny_tokenizer)
    with pytest.raises(ValueError, match="holds a float model; pass QuantizeArguments"):
        load_quantized(folder)
    with pytest.raises(ValueError, match="not quantized with bitsandbytes"):
        save_quantized(
            AutoModelForSequenceClassification.from_pretrained(folder), tiny_tokenizer, tmp_path / "q"
        )


def test_task_must_be_known_or_inferable(tmp_path, tiny_tokenizer):
    folder = bert_folder(tmp_path, tiny_tokenizer)
    with pytest.raises(ValueError, match="unknown task 'ner'"):
        load_quantized(folder, QuantizeArguments(), task="ner")
    config = tiny_bert_config(tiny_tokenizer, architectures=["BertModel"])
    with pytest.raises(ValueError, match="cannot tell the task.*BertModel.*pass task="):
        skip_modules_for(config)


@pytest.mark.parametrize("name", ["8bit", "nf4"])
def test_count_parameters_counts_quantized_weights_at_their_real_size(tmp_path, tiny_tokenizer, name):
    folder = bert_folder(tmp_path / "float", tiny_tokenizer)
    float_total = count_parameters(AutoModelForSequenceClassification.from_pretrained(folder))[0]
    # 4-bit storage packs two weights a byte; the count is still the float model's.
    assert count_parameters(load_quantized(folder, SETTINGS[name]))[0] == float_total
