"""LoRA / QLoRA via PEFT: trainable parts, merged export equal to the adapter model, QLoRA merge path, errors."""

from __future__ import annotations

import pytest
import torch
from peft import PeftModel
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    BertForSequenceClassification,
    LlamaConfig,
    LlamaForCausalLM,
)

from hfkit import ClassifierConfig, ClassifierTrainer
from hfkit.compress.lora import (
    LoraArguments,
    apply_lora,
    load_quantized_classifier,
    lora_quantization_config,
    merge_adapter_into_base,
    merge_and_unload_to,
)
from hfkit.modeling import ModelArguments, count_parameters
from tests.conftest import tiny_bert_config, toy_dataset, write_tiny_model

LABELS = ["neg", "pos"]

# PEFT calls a transformers method that transformers v5 deprecated; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")


@pytest.fixture
def bert(tiny_tokenizer) -> BertForSequenceClassification:
    torch.manual_seed(0)
    return BertForSequenceClassification(tiny_bert_config(tiny_tokenizer))


@pytest.fixture
def batch(tiny_tokenizer):
    return tiny_tokenizer(["good w1 w2 w3", "bad w4 w5", "w7 good"], padding=True, return_tensors="pt")


def logits(model, batch) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(**batch).logits


def perturb_adapters(model: PeftModel, seed: int = 0) -> None:
    """LoRA B starts at zero (adapter = identity): give it values so merging has something to merge."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.1)


def test_only_adapters_and_head_train(bert):
    total_before, _ = count_parameters(bert)
    model = apply_lora(bert, LoraArguments(use_lora=True, lora_r=2), "SEQ_CLS")
    total, trainable = count_parameters(model)
    # all-linear: per layer 4 square 32x32 layers (2 * 64 each) + 32->64 and 64->32 (2 * 96 each); the pooler
    # (2 * 64); the head (32 * 2 + 2) trained in full. The classifier itself gets no adapter.
    assert trainable == 2 * (4 * 128 + 2 * 192) + 128 + 66
    assert trainable / total < 0.1
    assert total == total_before + trainable  # adapters plus the trainable copy of the head
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert "base_model.model.classifier.modules_to_save.default.weight" in names
    assert "base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.default.weight" in names
    assert not any("base_layer" in n or "embeddings" in n for n in names)


def test_named_target_modules(bert):
    model = apply_lora(bert, LoraArguments(use_lora=True, lora_r=2, lora_target_modules=["query", "value"]))
    assert model.peft_config["default"].target_modules == {"query", "value"}
    _, trainable = count_parameters(model)
    assert trainable == 2 * 2 * 128 + 66


def test_trained_adapter_merges_to_a_plain_model_with_equal_logits(bert, tiny_tokenizer, batch, tmp_path):
    base = logits(bert, batch)
    model = apply_lora(bert, LoraArguments(use_lora=True, lora_r=4, lora_dropout=0.0))
    config = ClassifierConfig(
        output_dir=str(tmp_path / "run"), max_steps=5, learning_rate=1e-2, per_device_train_batch_size=8,
        eval_strategy="no", save_strategy="no", report_to="none", use_cpu=True, disable_tqdm=True,
    )  # fmt: skip
    trainer = ClassifierTrainer(
        model=model,
        args=config,
        train_dataset=toy_dataset(tiny_tokenizer, 40),
        processing_class=tiny_tokenizer,
    )
    trainer.train()
    assert trainer.param_counts["trainable"] / trainer.param_counts["total"] < 0.2
    lora_b = model.base_model.model.bert.encoder.layer[0].attention.self.query.lora_B["default"].weight
    assert lora_b.abs().sum() > 0  # training moved the adapter off its zero start
    adapted = logits(model, batch)
    assert not torch.allclose(adapted, base, atol=1e-3)

    merged = merge_and_unload_to(model, tiny_tokenizer, tmp_path / "merged")
    assert type(merged) is BertForSequenceClassification
    torch.testing.assert_close(logits(merged, batch), adapted, atol=1e-5, rtol=0)
    files = {p.name for p in (tmp_path / "merged").iterdir()}
    assert "model.safetensors" in files and "tokenizer.json" in files
    assert not any(name.startswith("adapter") for name in files)
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "merged")
    torch.testing.assert_close(logits(reloaded, batch), adapted, atol=1e-5, rtol=0)


def test_causal_lm_adapter_merges_and_reloads(tmp_path):
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=2, tie_word_embeddings=True,
    )  # fmt: skip
    model = apply_lora(LlamaForCausalLM(config), LoraArguments(use_lora=True, lora_r=2), "CAUSAL_LM")
    assert "lm_head" not in model.peft_config["default"].target_modules
    perturb_adapters(model)
    ids = {"input_ids": torch.tensor([[1, 7, 3, 9, 4]])}
    expected = logits(model, ids)
    merge_and_unload_to(model, None, tmp_path)
    torch.testing.assert_close(
        logits(AutoModelForCausalLM.from_pretrained(tmp_path), ids), expected, atol=1e-5, rtol=0
    )


@pytest.mark.parametrize("bits", [8, 4])
def test_qlora_base_is_quantized_and_head_trains(bits, tiny_tokenizer, batch, tmp_path):
    folder = write_tiny_model(tmp_path / "base", tiny_tokenizer)
    args = LoraArguments(use_lora=True, lora_r=4, qlora_bits=bits)
    base = load_quantized_classifier(ModelArguments(str(folder)), LABELS, args)
    model = apply_lora(base, args)
    layer = model.base_model.model.bert.encoder.layer[0].attention.self.query.base_layer
    assert type(layer).__name__ == ("Linear8bitLt" if bits == 8 else "Linear4bit")
    head = model.base_model.model.classifier.modules_to_save["default"]
    assert type(head) is torch.nn.Linear and head.weight.requires_grad
    model.train()
    loss = model(**batch, labels=torch.tensor([1, 0, 1])).loss
    loss.backward()
    assert torch.isfinite(loss) and head.weight.grad is not None
    assert (
        model.base_model.model.bert.encoder.layer[0].attention.self.query.lora_A["default"].weight.grad
        is not None
    )


def test_qlora_merges_through_a_float_base(tiny_tokenizer, batch, tmp_path):
    folder = write_tiny_model(tmp_path / "base", tiny_tokenizer)
    args = LoraArguments(use_lora=True, lora_r=4, qlora_bits=8)
    model = apply_lora(load_quantized_classifier(ModelArguments(str(folder)), LABELS, args), args)
    perturb_adapters(model)
    with pytest.raises(ValueError, match=r"quantized \(QLoRA\) base.*merge_adapter_into_base"):
        merge_and_unload_to(model, tiny_tokenizer, tmp_path / "nope")
    assert not (tmp_path / "nope").exists()

    model.save_pretrained(tmp_path / "adapter")
    merged = merge_adapter_into_base(str(folder), tmp_path / "adapter", tmp_path / "merged")
    # Reference: the same adapter on the float base, unmerged.
    float_base = AutoModelForSequenceClassification.from_pretrained(folder)
    reference = logits(PeftModel.from_pretrained(float_base, tmp_path / "adapter"), batch)
    assert not torch.allclose(
        reference, logits(AutoModelForSequenceClassification.from_pretrained(folder), batch)
    )
    torch.testing.assert_close(logits(merged, batch), reference, atol=1e-5, rtol=0)
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "merged")
    assert (
        reloaded.config.id2label == {0: "neg", 1: "pos"}
        and (tmp_path / "merged" / "tokenizer.json").is_file()
    )
    torch.testing.assert_close(logits(reloaded, batch), reference, atol=1e-5, rtol=0)


def test_quantization_config_keeps_heads_in_float():
    assert lora_quantization_config(LoraArguments(use_lora=True)) is None
    eight = lora_quantization_config(
        LoraArguments(use_lora=True, qlora_bits=8, lora_modules_to_save=["pooler"])
    )
    assert eight.load_in_8bit and {"classifier", "score", "lm_head", "pooler"} <= set(
        eight.llm_int8_skip_modules
    )
    four = lora_quantization_config(LoraArguments(use_lora=True, qlora_bits=4), torch.bfloat16)
    assert (
        four.load_in_4bit
        and four.bnb_4bit_quant_type == "nf4"
        and four.bnb_4bit_compute_dtype == torch.bfloat16
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"lora_r": 0}, "lora_r must be >= 1"),
        ({"lora_alpha": 0}, "lora_alpha must be > 0"),
        ({"lora_dropout": 1.0}, r"lora_dropout must be in \[0, 1\)"),
        ({"use_lora": True, "qlora_bits": 3}, "qlora_bits must be 4 or 8"),
        ({"qlora_bits": 4}, "use_lora is false"),
        ({"use_lora": True, "lora_target_modules": []}, "lora_target_modules is empty"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LoraArguments(**kwargs)


def test_misuse_errors(bert, tmp_path):
    with pytest.raises(ValueError, match="loaded in float"):
        apply_lora(bert, LoraArguments(use_lora=True, qlora_bits=4))
    with pytest.raises(ValueError, match="not a PEFT TaskType"):
        apply_lora(bert, LoraArguments(use_lora=True), "CLASSIFY")
    model = apply_lora(bert, LoraArguments(use_lora=True))
    with pytest.raises(ValueError, match="already has PEFT adapters"):
        apply_lora(model, LoraArguments(use_lora=True))
    with pytest.raises(TypeError, match="expected a PeftModel"):
        merge_and_unload_to(model.get_base_model(), None, tmp_path)
    with pytest.raises(FileNotFoundError, match="no adapter_config.json"):
        merge_adapter_into_base("base", tmp_path, tmp_path / "out")
