"""Unit tests for hfkit.student: layer-subset students built from tiny random teachers."""

from __future__ import annotations

import pytest
import torch
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    BertForSequenceClassification,
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from hfkit.modeling import count_parameters, find_layers
from hfkit.student import describe_sizes, student_from_teacher
from tests.conftest import tiny_bert_config


@pytest.fixture
def bert() -> BertForSequenceClassification:
    torch.manual_seed(0)
    config = tiny_bert_config(vocab_size=100, hidden=32, layers=4, num_labels=3)
    return BertForSequenceClassification(config).eval()


@pytest.fixture
def llama() -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=100,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=True,  # as in SmolLM2
    )
    return LlamaForCausalLM(config).eval()


def _inputs() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(5, 100, (2, 9), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 6:] = 0
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def _layer_params(model: torch.nn.Module, index: int) -> dict[str, torch.Tensor]:
    return dict(find_layers(model)[index].named_parameters())


@pytest.mark.parametrize("model_name", ["bert", "llama"])
def test_kept_layers_are_copies_of_the_teacher_layers(model_name, request):
    teacher = request.getfixturevalue(model_name)
    keep = [1, 3]
    student = student_from_teacher(teacher, keep)

    assert type(student) is type(teacher)
    assert student.config.num_hidden_layers == 2
    assert len(find_layers(student)) == 2
    assert teacher.config.num_hidden_layers == 4  # the teacher is left alone
    for k, t in enumerate(keep):
        student_params, teacher_params = _layer_params(student, k), _layer_params(teacher, t)
        assert student_params.keys() == teacher_params.keys()
        for name, value in student_params.items():
            torch.testing.assert_close(value, teacher_params[name], rtol=0, atol=0)
            assert value.data_ptr() != teacher_params[name].data_ptr()  # a copy, not shared storage
    # Everything outside the layer list (embeddings, head) is the teacher's.
    torch.testing.assert_close(student.get_input_embeddings().weight, teacher.get_input_embeddings().weight)
    # A layer that was dropped differs from what the student has in its place.
    assert not torch.equal(
        next(iter(_layer_params(student, 1).values())), next(iter(_layer_params(teacher, 1).values()))
    )


def test_llama_student_keeps_tied_embeddings_and_layer_indices(llama):
    student = student_from_teacher(llama, [0, 3])
    assert student.lm_head.weight.data_ptr() == student.model.embed_tokens.weight.data_ptr()
    # layer_idx indexes the KV cache: it must be the student's position, not the teacher's.
    assert [layer.self_attn.layer_idx for layer in student.model.layers] == [0, 1]
    out = student.generate(_inputs()["input_ids"][:1], max_new_tokens=3, do_sample=False)
    assert out.shape == (1, 12)


@pytest.mark.parametrize("model_name", ["bert", "llama"])
def test_student_with_all_layers_matches_teacher(model_name, request):
    teacher = request.getfixturevalue(model_name)
    student = student_from_teacher(teacher, range(4))
    with torch.no_grad():
        expected = teacher(**_inputs()).logits
        actual = student(**_inputs()).logits
    torch.testing.assert_close(actual, expected, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("model_name", "auto_class"),
    [("bert", AutoModelForSequenceClassification), ("llama", AutoModelForCausalLM)],
)
def test_save_and_reload_round_trip(model_name, auto_class, request, tmp_path):
    student = student_from_teacher(request.getfixturevalue(model_name), [0, 2])
    student.save_pretrained(tmp_path)
    reloaded = auto_class.from_pretrained(tmp_path).eval()
    assert reloaded.config.num_hidden_layers == 2
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**_inputs()).logits, student(**_inputs()).logits)


def test_per_layer_config_lists_are_sliced():
    config = Qwen2Config(
        vocab_size=100,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        use_sliding_window=True,
        sliding_window=4,
        max_window_layers=2,
    )
    teacher = Qwen2ForCausalLM(config).eval()
    assert teacher.config.layer_types == [
        "full_attention",
        "full_attention",
        "sliding_attention",
        "sliding_attention",
    ]
    student = student_from_teacher(teacher, [1, 2])
    assert student.config.layer_types == ["full_attention", "sliding_attention"]
    assert teacher.config.layer_types[2] == "sliding_attention"
    with torch.no_grad():
        full = student_from_teacher(teacher, [0, 1, 2, 3])
        torch.testing.assert_close(full(**_inputs()).logits, teacher(**_inputs()).logits)


@pytest.mark.parametrize(
    ("keep", "message"),
    [
        ([], "empty"),
        ([0, 0], "duplicates"),
        ([2, 1], "sorted ascending"),
        ([0, 4], "out of range"),
        ([-1, 2], "out of range"),
        ([0.5], "integers"),
    ],
)
def test_invalid_keep_layers(bert, keep, message):
    with pytest.raises(ValueError, match=message):
        student_from_teacher(bert, keep)


def test_describe_sizes(bert):
    student = student_from_teacher(bert, [0])
    text = describe_sizes(bert, student)
    teacher_total, student_total = count_parameters(bert)[0], count_parameters(student)[0]
    assert f"{teacher_total:,}" in text and f"{student_total:,}" in text
    assert f"{student_total / teacher_total:.1%}" in text
