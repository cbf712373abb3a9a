"""Low-rank factorization: exact at full rank, ranks by energy, parameter savings, skips, save/reload, errors."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from transformers import AutoModelForSequenceClassification, BertForSequenceClassification, LlamaConfig

from hfkit.compress.lowrank import (
    LowRankArguments,
    LowRankEmbedding,
    LowRankLinear,
    choose_rank,
    factorize_model,
    load_lowrank,
    plan_lowrank,
    save_lowrank,
)
from hfkit.modeling import count_parameters
from tests.conftest import tiny_bert_config

# 2 layers x (query, key, value, attention.output.dense, intermediate.dense, output.dense)
BLOCK_LINEARS = 12


@pytest.fixture
def bert(tiny_tokenizer) -> BertForSequenceClassification:
    torch.manual_seed(0)
    # hidden 32, intermediate 64: rank 8 saves on every layer (8 * 64 < 32 * 32, 8 * 96 < 32 * 64).
    return BertForSequenceClassification(tiny_bert_config(tiny_tokenizer)).eval()


@pytest.fixture
def batch(tiny_tokenizer):
    return tiny_tokenizer(["good w1 w2 w3", "bad w4 w5"], padding=True, return_tensors="pt")


def logits(model, batch) -> torch.Tensor:
    with torch.no_grad():
        return model(**batch).logits


def test_full_rank_factorization_reproduces_the_model(bert, batch):
    before = logits(bert, batch)
    ranks = factorize_model(bert, LowRankArguments(rank=10_000, only_if_smaller=False))
    assert len(ranks) == BLOCK_LINEARS
    assert ranks["bert.encoder.layer.0.attention.self.query"] == 32  # capped at min(in, out)
    assert ranks["bert.encoder.layer.0.intermediate.dense"] == 32
    query = bert.bert.encoder.layer[0].attention.self.query
    assert isinstance(query, LowRankLinear)
    assert query.down.weight.shape == (32, 32) and query.down.bias is None and query.up.bias is not None
    # Embeddings, pooler and head stay dense by default.
    assert type(bert.bert.pooler.dense) is nn.Linear and type(bert.classifier) is nn.Linear
    torch.testing.assert_close(logits(bert, batch), before, atol=1e-5, rtol=0)


def test_rank_by_energy():
    torch.manual_seed(0)
    weight = torch.randn(40, 24)
    assert choose_rank(weight, energy=1.0) == 24
    half = choose_rank(weight, energy=0.5)
    assert 1 <= half < 24
    # The chosen rank is the smallest keeping half the energy.
    s2 = torch.linalg.svdvals(weight.double()).square()
    assert s2[:half].sum() / s2.sum() >= 0.5 > s2[: half - 1].sum() / s2.sum()
    # A rank-3 matrix keeps all its energy in 3 singular values.
    low = torch.randn(40, 3) @ torch.randn(3, 24)
    assert choose_rank(low, energy=0.999999) == 3
    assert choose_rank(weight, rank=100) == 24 and choose_rank(weight, rank=5) == 5


def test_energy_plan_uses_smaller_ranks_than_full(bert):
    full = plan_lowrank(bert, LowRankArguments(energy=1.0, only_if_smaller=False))
    half = plan_lowrank(bert, LowRankArguments(energy=0.5))
    assert set(full.ranks.values()) == {32}
    assert half.ranks and all(r < 32 for r in half.ranks.values())
    assert half.parameters_after < half.parameters_before


def test_low_rank_shrinks_the_model_and_plan_predicts_the_count(bert, batch):
    before, _ = count_parameters(bert)
    args = LowRankArguments(rank=4)
    plan = plan_lowrank(bert, args)
    ranks = factorize_model(bert, args)
    after, _ = count_parameters(bert)
    assert ranks == plan.ranks and set(ranks.values()) == {4} and len(ranks) == BLOCK_LINEARS
    assert plan.parameters_before == before and plan.parameters_after == after
    # Each 32x32 layer: 1024 -> 256 weights; each 32x64 / 64x32 layer: 2048 -> 384.
    assert before - after == 2 * (4 * (1024 - 256) + 2 * (2048 - 384))
    assert bert.config.lowrank_ranks == ranks
    assert logits(bert, batch).shape == (2, 2)


def test_layers_where_factorizing_does_not_pay_are_skipped(bert):
    # rank 16: 16 * 64 = 1024 >= 32 * 32 (square layers: no saving), 16 * 96 < 2048 (MLP layers: saving).
    ranks = factorize_model(bert, LowRankArguments(rank=16))
    assert sorted(ranks) == sorted(
        f"bert.encoder.layer.{i}.{name}" for i in range(2) for name in ("intermediate.dense", "output.dense")
    )
    assert type(bert.bert.encoder.layer[0].attention.self.query) is nn.Linear
    plan = plan_lowrank(bert, LowRankArguments(rank=16))  # factorized layers are not targets again
    assert not plan.ranks and len(plan.skipped) == 8


def test_target_patterns_select_layers(bert):
    ranks = factorize_model(
        bert, LowRankArguments(rank=2, target_modules=["query", r"bert\.encoder\.layer\.1\.output\.dense"])
    )
    assert sorted(ranks) == [
        "bert.encoder.layer.0.attention.self.query",
        "bert.encoder.layer.1.attention.self.query",
        "bert.encoder.layer.1.output.dense",
    ]


def test_save_and_reload_gives_identical_logits(bert, batch, tiny_tokenizer, tmp_path):
    factorize_model(bert, LowRankArguments(energy=0.6))
    expected = logits(bert, batch)
    save_lowrank(bert, tiny_tokenizer, tmp_path)
    assert (tmp_path / "model.safetensors").is_file() and (tmp_path / "tokenizer.json").is_file()
    assert json.loads((tmp_path / "config.json").read_text())["lowrank_ranks"] == bert.config.lowrank_ranks

    loaded = load_lowrank(tmp_path).eval()
    assert type(loaded).__name__ == "BertForSequenceClassification"
    assert isinstance(loaded, BertForSequenceClassification)
    for name, rank in bert.config.lowrank_ranks.items():
        assert loaded.get_submodule(name).rank == rank
    assert torch.equal(logits(loaded, batch), expected)
    # Saving the reloaded model again keeps the plain architecture name and the ranks.
    save_lowrank(loaded, tiny_tokenizer, tmp_path / "again")
    again = json.loads((tmp_path / "again" / "config.json").read_text())
    assert again["architectures"] == ["BertForSequenceClassification"]
    assert torch.equal(
        logits(load_lowrank(tmp_path / "again", BertForSequenceClassification).eval(), batch), expected
    )


def test_embedding_factorization_full_rank_is_exact_and_low_rank_saves_and_reloads(
    bert, batch, tiny_tokenizer, tmp_path
):
    before = logits(bert, batch)
    table = bert.get_input_embeddings().weight.detach().clone()  # 47 x 32
    full = BertForSequenceClassification(bert.config).eval()
    full.load_state_dict(bert.state_dict())
    assert factorize_model(full, LowRankArguments(embedding_rank=32, only_if_smaller=False)) == {
        "bert.embeddings.word_embeddings": 32
    }
    assert isinstance(full.get_input_embeddings(), LowRankEmbedding)
    torch.testing.assert_close(full.get_input_embeddings().full_weight(), table, atol=1e-5, rtol=0)
    torch.testing.assert_close(logits(full, batch), before, atol=1e-5, rtol=0)

    # Rank 8 of a 47 x 32 table: 47 * 8 + 8 * 32 parameters instead of 47 * 32; the Linears stay dense.
    plan = plan_lowrank(bert, LowRankArguments(embedding_rank=8))
    ranks = factorize_model(bert, LowRankArguments(embedding_rank=8))
    assert ranks == {"bert.embeddings.word_embeddings": 8}
    assert (
        count_parameters(bert)[0]
        == plan.parameters_after
        == plan.parameters_before - 47 * 32 + 47 * 8 + 8 * 32
    )
    assert type(bert.bert.encoder.layer[0].attention.self.query) is nn.Linear
    # The factors are the truncated SVD: the best rank-8 approximation of the table.
    u, s_, vh = torch.linalg.svd(table, full_matrices=False)
    torch.testing.assert_close(
        bert.get_input_embeddings().full_weight(), (u[:, :8] * s_[:8]) @ vh[:8], atol=1e-5, rtol=0
    )
    expected = logits(bert, batch)
    assert not torch.allclose(expected, before, atol=1e-6)  # rank 8 is lossy
    save_lowrank(bert, tiny_tokenizer, tmp_path)
    loaded = load_lowrank(tmp_path).eval()
    assert (
        isinstance(loaded.get_input_embeddings(), LowRankEmbedding)
        and loaded.get_input_embeddings().rank == 8
    )
    assert torch.equal(logits(loaded, batch), expected)
    with pytest.raises(ValueError, match="already factorized"):
        factorize_model(loaded, LowRankArguments(embedding_rank=4))
    with pytest.raises(ValueError, match="embedding_rank must be an integer >= 1"):
        LowRankArguments(embedding_rank=0)


def test_reload_of_a_tied_causal_lm(tmp_path):
    from transformers import AutoModelForCausalLM, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=96, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=2, tie_word_embeddings=True,
    )  # fmt: skip
    model = LlamaForCausalLM(config).eval()
    ranks = factorize_model(model, LowRankArguments(rank=4, target_modules=["mlp.up_proj", "mlp.down_proj"]))
    assert len(ranks) == 4 and type(model.lm_head) is nn.Linear
    ids = torch.tensor([[1, 5, 9, 3]])
    with torch.no_grad():
        expected = model(ids).logits
    save_lowrank(model, None, tmp_path)
    loaded = load_lowrank(tmp_path, AutoModelForCausalLM).eval()
    assert loaded.lm_head.weight is loaded.model.embed_tokens.weight
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, expected)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"rank": 4, "energy": 0.5}, "exactly one of rank"),
        ({"energy": 0.0}, "energy must be in (0, 1]"),
        ({"energy": 1.5}, "energy must be in (0, 1]"),
        ({"rank": 0}, "rank must be an integer >= 1"),
        ({"rank": 4, "target_modules": []}, "target_modules is empty"),
        ({"rank": 4, "target_modules": ["(query"]}, "not a valid regex"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("]", r"\]")):
        LowRankArguments(**kwargs)


def test_rank_or_energy_is_required_to_factorize(bert):
    args = LowRankArguments()  # allowed: a recipe may give the rank per stage
    with pytest.raises(ValueError, match="exactly one of rank .* or embedding_rank"):
        factorize_model(bert, args)


def test_pattern_matching_nothing_is_an_error(bert):
    with pytest.raises(ValueError, match=r"target_modules \['querry'\] match no nn.Linear"):
        factorize_model(bert, LowRankArguments(rank=4, target_modules=["query", "querry"]))
    assert type(bert.bert.encoder.layer[0].attention.self.query) is nn.Linear  # nothing changed


def test_save_and_load_refuse_dense_models(bert, tiny_tokenizer, tmp_path):
    with pytest.raises(ValueError, match="no factorized layers"):
        save_lowrank(bert, tiny_tokenizer, tmp_path)
    bert.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="not a factorized model"):
        load_lowrank(tmp_path, AutoModelForSequenceClassification)


def test_fine_tuned_factorized_model_reloads_from_the_trainer_output(bert, batch, tiny_tokenizer, tmp_path):
    """The usual next step: fine-tune the factorized model to recover accuracy; Trainer's save must reload."""
    from hfkit import ClassifierConfig, ClassifierTrainer
    from tests.conftest import toy_dataset

    factorize_model(bert, LowRankArguments(rank=4))
    config = ClassifierConfig(
        output_dir=str(tmp_path), max_steps=3, learning_rate=1e-2, per_device_train_batch_size=8,
        eval_strategy="no", save_strategy="no", report_to="none", use_cpu=True, disable_tqdm=True,
    )  # fmt: skip
    trainer = ClassifierTrainer(
        model=bert,
        args=config,
        train_dataset=toy_dataset(tiny_tokenizer, 24),
        processing_class=tiny_tokenizer,
    )
    down = bert.bert.encoder.layer[0].attention.self.query.down.weight.detach().clone()
    trainer.train()
    assert not torch.equal(bert.bert.encoder.layer[0].attention.self.query.down.weight, down)  # factors train
    trainer.save_model()
    assert torch.equal(logits(load_lowrank(tmp_path).eval(), batch), logits(bert.eval(), batch))
