"""Tests for hfkit.compress.prune on tiny random BERT classifiers and LLaMA decoders (seconds on CPU)."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    BertForSequenceClassification,
    DataCollatorWithPadding,
    HfArgumentParser,
    LlamaConfig,
    LlamaForCausalLM,
)

from hfkit.compress.prune import (
    PruneArguments,
    ffn_importance,
    head_importance,
    magnitude_prune,
    prunable_linears,
    prune,
    prune_attention_heads,
    prune_ffn_neurons,
    sparsity_report,
    structured_prune,
)
from hfkit.modeling import count_parameters
from tests.conftest import tiny_bert_config, toy_dataset

HIDDEN, FFN, LAYERS = 32, 64, 2


@pytest.fixture
def bert(tiny_tokenizer) -> BertForSequenceClassification:
    torch.manual_seed(0)
    return BertForSequenceClassification(
        tiny_bert_config(tiny_tokenizer, layers=LAYERS, hidden=HIDDEN)
    ).eval()


@pytest.fixture
def llama() -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=100,
        hidden_size=HIDDEN,
        intermediate_size=FFN,
        num_hidden_layers=LAYERS,
        num_attention_heads=4,
        num_key_value_heads=2,  # 2 query heads per key/value group
        max_position_embeddings=64,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(config).eval()


def _ids(vocab: int = 47) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(5, vocab, (2, 9), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 6:] = 0
    return {"input_ids": input_ids, "attention_mask": attention_mask}


@torch.no_grad()
def _logits(model, vocab: int = 47) -> torch.Tensor:
    return model(**_ids(vocab)).logits


def _bert_batches(tokenizer, n: int = 16, batch_size: int = 8) -> DataLoader:
    data = toy_dataset(tokenizer, n)
    return DataLoader(data, batch_size=batch_size, collate_fn=DataCollatorWithPadding(tokenizer))


def _llama_batches(n_batches: int = 2) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(2)
    batches = []
    for _ in range(n_batches):
        ids = torch.randint(0, 100, (4, 10), generator=generator)
        batches.append({"input_ids": ids, "labels": ids.clone()})
    return batches


# ---------------------------------------------------------------------------------------------------- magnitude


def test_default_eligible_layers_are_the_encoder_linears(bert):
    names = list(prunable_linears(bert))
    assert len(names) == 6 * LAYERS  # query, key, value, attention output, intermediate, output
    assert all(name.startswith("bert.encoder.layer.") for name in names)
    chosen = prunable_linears(bert, include=[r"attention"], exclude=[r"output"])
    assert sorted(chosen) == sorted(
        f"bert.encoder.layer.{i}.attention.self.{p}" for i in range(LAYERS) for p in ("query", "key", "value")
    )
    with pytest.raises(ValueError, match="no Linear layer of BertForSequenceClassification matches"):
        prunable_linears(bert, include=[r"does_not_exist"])


def test_layer_scope_prunes_every_layer_to_the_target(bert):
    untouched = {k: v.clone() for k, v in bert.state_dict().items() if "encoder" not in k}
    report = magnitude_prune(bert, 0.3, scope="layer")
    for name, module in prunable_linears(bert).items():
        n = module.weight.numel()
        assert report.per_layer[name] == pytest.approx(round(0.3 * n) / n)
    assert report.overall == pytest.approx(0.3, abs=1e-3)
    # Embeddings, pooler and classifier were left alone.
    after = bert.state_dict()
    assert {"bert.embeddings.word_embeddings.weight", "bert.pooler.dense.weight", "classifier.weight"} <= set(
        untouched
    )
    assert all(torch.equal(after[k], v) for k, v in untouched.items())


def test_global_scope_hits_the_target_overall_but_not_per_layer(bert):
    # Make one layer's weights 10x larger: ranked globally, it loses (almost) nothing, the others lose more.
    big = "bert.encoder.layer.0.intermediate.dense"
    with torch.no_grad():
        bert.get_submodule(big).weight.mul_(10)
    report = magnitude_prune(bert, 0.4, scope="global")
    assert report.overall == pytest.approx(round(0.4 * report.total) / report.total)
    assert report.per_layer[big] < 0.05
    assert all(value > 0.4 for name, value in report.per_layer.items() if name != big)


def test_magnitude_pruning_is_permanent_and_reloads_with_the_standard_class(bert, tmp_path):
    magnitude_prune(bert, 0.5)
    keys = list(bert.state_dict())
    assert not [k for k in keys if k.endswith(("weight_orig", "weight_mask"))]
    assert all(not module._forward_pre_hooks for module in prunable_linears(bert).values())
    before = _logits(bert)
    bert.save_pretrained(tmp_path)
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(_logits(reloaded), before, rtol=0, atol=0)
    assert sparsity_report(reloaded).overall == pytest.approx(0.5, abs=1e-3)


# ---------------------------------------------------------------------------------------------------- arguments


def test_prune_arguments_validate_and_parse():
    parsed = HfArgumentParser(PruneArguments).parse_dict(
        {"method": "structured", "ffn_keep_fraction": 0.5, "importance": "taylor", "num_batches": 2}
    )[0]
    assert (parsed.method, parsed.ffn_keep_fraction, parsed.importance) == ("structured", 0.5, "taylor")
    with pytest.raises(ValueError, match="method='pruned'.*magnitude, structured"):
        PruneArguments(method="pruned")
    with pytest.raises(ValueError, match=r"sparsity=1.0: must be in \[0, 1\)"):
        PruneArguments(sparsity=1.0)
    with pytest.raises(ValueError, match="nothing to remove"):
        PruneArguments(method="structured")
    with pytest.raises(ValueError, match="Set method='structured'"):
        PruneArguments(importance="taylor")
    with pytest.raises(ValueError, match=r"ffn_keep_fraction=0.0: must be in \(0, 1\]"):
        PruneArguments(method="structured", ffn_keep_fraction=0.0)


# ---------------------------------------------------------------------------------------------------- FFN neurons


def test_ffn_pruning_shrinks_bert_and_reloads(bert, tmp_path):
    total_before, _ = count_parameters(bert)
    original = _logits(bert)
    pruned = prune_ffn_neurons(bert, 0.5)
    assert pruned is not bert
    assert pruned.config.intermediate_size == FFN // 2
    assert bert.config.intermediate_size == FFN  # the input model is untouched
    torch.testing.assert_close(_logits(bert), original, rtol=0, atol=0)
    layer = pruned.bert.encoder.layer[0]
    assert layer.intermediate.dense.weight.shape == (FFN // 2, HIDDEN)
    assert layer.output.dense.weight.shape == (HIDDEN, FFN // 2)
    removed = LAYERS * (2 * HIDDEN * FFN // 2 + FFN // 2)  # two weight matrices and one bias per layer
    assert count_parameters(pruned)[0] == total_before - removed
    pruned.save_pretrained(tmp_path)
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(_logits(reloaded), _logits(pruned), rtol=0, atol=0)


def test_keep_fraction_one_changes_nothing(bert):
    pruned = prune_ffn_neurons(bert, 1.0)
    assert pruned.config.intermediate_size == FFN
    torch.testing.assert_close(_logits(pruned), _logits(bert), rtol=0, atol=0)


def test_removing_zero_contribution_neurons_leaves_logits_unchanged(bert):
    dead = torch.randperm(FFN, generator=torch.Generator().manual_seed(3))[: FFN // 4]
    with torch.no_grad():
        for layer in bert.bert.encoder.layer:
            layer.output.dense.weight[:, dead] = 0  # these neurons no longer reach the residual stream
    before = _logits(bert)
    pruned = prune_ffn_neurons(bert, 0.75)
    kept = torch.tensor(sorted(set(range(FFN)) - set(dead.tolist())))
    torch.testing.assert_close(
        pruned.bert.encoder.layer[1].intermediate.dense.weight,
        bert.bert.encoder.layer[1].intermediate.dense.weight[kept],
    )
    torch.testing.assert_close(_logits(pruned), before, rtol=0, atol=1e-5)


def test_llama_ffn_pruning_reloads(llama, tmp_path):
    pruned = prune_ffn_neurons(llama, 0.25)
    mlp = pruned.model.layers[0].mlp
    assert pruned.config.intermediate_size == FFN // 4
    assert mlp.gate_proj.weight.shape == mlp.up_proj.weight.shape == (FFN // 4, HIDDEN)
    assert mlp.down_proj.weight.shape == (HIDDEN, FFN // 4)
    pruned.save_pretrained(tmp_path)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(_logits(reloaded, 100), _logits(pruned, 100), rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------------- heads


def _zero_heads(model: LlamaForCausalLM, heads_per_layer: list[list[int]]) -> None:
    head_dim = model.config.head_dim
    with torch.no_grad():
        for layer, heads in zip(model.model.layers, heads_per_layer):
            for h in heads:
                layer.self_attn.o_proj.weight[:, h * head_dim : (h + 1) * head_dim] = 0


def test_llama_kv_group_removal_keeps_logits_and_reloads(llama, tmp_path):
    _zero_heads(llama, [[2, 3], [0, 1]])  # group 1 in layer 0, group 0 in layer 1
    before = _logits(llama, 100)
    pruned = prune_attention_heads(llama, 2, gqa_strategy="kv_groups")
    config = pruned.config
    assert (config.num_attention_heads, config.num_key_value_heads, config.head_dim) == (2, 1, 8)
    attn = pruned.model.layers[0].self_attn
    assert attn.q_proj.weight.shape == (16, HIDDEN)
    assert attn.k_proj.weight.shape == attn.v_proj.weight.shape == (8, HIDDEN)
    assert attn.o_proj.weight.shape == (HIDDEN, 16)
    # Layer 0 kept group 0, layer 1 kept group 1: their key rows are the original ones.
    torch.testing.assert_close(attn.k_proj.weight, llama.model.layers[0].self_attn.k_proj.weight[:8])
    torch.testing.assert_close(
        pruned.model.layers[1].self_attn.k_proj.weight, llama.model.layers[1].self_attn.k_proj.weight[8:]
    )
    assert count_parameters(pruned)[0] < count_parameters(llama)[0]
    torch.testing.assert_close(_logits(pruned, 100), before, rtol=0, atol=1e-5)
    pruned.save_pretrained(tmp_path)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert reloaded.config.num_key_value_heads == 1
    torch.testing.assert_close(_logits(reloaded, 100), _logits(pruned, 100), rtol=0, atol=0)


def test_llama_query_head_removal_keeps_every_kv_group(llama):
    _zero_heads(llama, [[1, 2], [0, 3]])  # one query head in each group, in each layer
    before = _logits(llama, 100)
    pruned = prune_attention_heads(llama, 2, gqa_strategy="query_heads")
    assert (pruned.config.num_attention_heads, pruned.config.num_key_value_heads) == (2, 2)
    attn = pruned.model.layers[0].self_attn
    assert attn.q_proj.weight.shape == (16, HIDDEN)
    assert attn.k_proj.weight.shape == (16, HIDDEN)  # key/value heads all kept
    torch.testing.assert_close(_logits(pruned, 100), before, rtol=0, atol=1e-5)


def test_impossible_head_counts_are_explained(llama):
    with pytest.raises(
        ValueError, match=r"heads_to_keep=3 .*valid counts are \[2, 4\].*other strategy allows \[2, 4\]"
    ):
        prune_attention_heads(llama, 3)
    # Checked before any scoring: the Taylor pass would otherwise complain about the missing batches first.
    with pytest.raises(ValueError, match="heads_to_keep=3 is not possible"):
        structured_prune(llama, heads_to_keep=3, importance="taylor")
    mha = LlamaForCausalLM(LlamaConfig(**{**llama.config.to_dict(), "num_key_value_heads": 4}))
    # hidden_size 32 must stay a multiple of the head count (LlamaConfig's own check), so 3 is refused.
    with pytest.raises(ValueError, match=r"valid counts are \[1, 2, 4\]"):
        prune_attention_heads(mha, 3)


def test_bert_head_removal_is_refused_with_alternatives(bert):
    with pytest.raises(ValueError, match="cannot drop attention heads.*hfkit.student.student_from_teacher"):
        prune_attention_heads(bert, 1)
    with pytest.raises(ValueError, match="config has no head_dim"):
        structured_prune(bert, ffn_keep_fraction=0.5, heads_to_keep=1)


def test_structured_prune_removes_heads_and_neurons_in_one_pass(llama):
    pruned = structured_prune(llama, ffn_keep_fraction=0.5, heads_to_keep=2)
    assert (pruned.config.intermediate_size, pruned.config.num_attention_heads) == (FFN // 2, 2)
    assert _logits(pruned, 100).shape == (2, 9, 100)


# ---------------------------------------------------------------------------------------------------- importance


def test_taylor_ranks_a_dead_neuron_lowest(bert, tiny_tokenizer):
    dead = 5
    with torch.no_grad():
        layer = bert.bert.encoder.layer[0]
        layer.intermediate.dense.weight[dead] = 0
        layer.intermediate.dense.bias[dead] = 0
        layer.output.dense.weight[:, dead] = 0
    bert.train()
    scores = ffn_importance(bert, "taylor", _bert_batches(tiny_tokenizer), num_batches=2)
    assert [s.shape for s in scores] == [(FFN,)] * LAYERS
    assert scores[0][dead] == 0
    assert int(scores[0].argmin()) == dead
    assert (torch.cat([scores[0][:dead], scores[0][dead + 1 :]]) > 0).all()
    # Scoring leaves no parameter gradients behind and restores the training mode.
    assert all(p.grad is None for p in bert.parameters())
    assert bert.training


def test_taylor_head_scores_are_zero_for_dead_heads(llama):
    _zero_heads(llama, [[3], [0]])
    scores = head_importance(llama, "taylor", _llama_batches())
    assert scores[0][3] == 0 and scores[1][0] == 0
    assert (scores[0][:3] > 0).all() and (scores[1][1:] > 0).all()
    magnitude = head_importance(llama)
    assert magnitude[0][3] == 0 and int(magnitude[1].argmin()) == 0


def test_taylor_needs_labelled_batches(bert, tiny_tokenizer):
    with pytest.raises(ValueError, match="no 'labels'"):
        ffn_importance(bert, "taylor", [{"input_ids": torch.tensor([[2, 5, 3]])}])
    with pytest.raises(ValueError, match="batches is empty"):
        ffn_importance(bert, "taylor", [])
    with pytest.raises(ValueError, match="needs data"):
        ffn_importance(bert, "taylor")


def test_prune_dispatches_structured_taylor(bert, tiny_tokenizer):
    args = PruneArguments(method="structured", ffn_keep_fraction=0.5, importance="taylor", num_batches=1)
    pruned = prune(bert, args, _bert_batches(tiny_tokenizer))
    assert pruned.config.intermediate_size == FFN // 2
    assert _logits(pruned).shape == (2, 2)
    same = prune(bert, PruneArguments(sparsity=0.25, scope="layer"))
    assert same is bert
    assert sparsity_report(bert).overall == pytest.approx(0.25, abs=1e-3)
