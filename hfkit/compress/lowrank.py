"""Low-rank factorization: replace Linear layers by two thinner Linears from a truncated SVD.

A weight W (out x in) is written as U S V^T; keeping the r largest singular values gives W ~= (U_r S_r^1/2)
(S_r^1/2 V_r^T), i.e. a Linear in->r (no bias) followed by a Linear r->out (the original bias). That pays
when r * (in + out) < in * out. The ranks are recorded in ``config.lowrank_ranks``, so any
``save_pretrained`` of the model (``save_lowrank``, a Trainer checkpoint) can be rebuilt by ``load_lowrank``
(in hfkit.io, re-exported here) or ``hfkit.io.load_model``.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field

import torch
from torch import nn
from transformers import PreTrainedModel

# The loading half (the layer class, rebuilding the structure, load_lowrank) is in hfkit.io, which
# load_model uses without importing compress.
from ..io import (
    LOWRANK_FIELD,
    LowRankEmbedding,
    LowRankLinear,
    apply_lowrank_structure,
    load_lowrank,
    replace_module,
)
from ..modeling import count_parameters, find_layers

logger = logging.getLogger(__name__)

__all__ = [
    "LowRankArguments",
    "LowRankEmbedding",
    "LowRankLinear",
    "LowRankPlan",
    "apply_lowrank_structure",
    "choose_rank",
    "factorize_model",
    "load_lowrank",
    "plan_lowrank",
    "save_lowrank",
]

# config.json field listing the factorized layers: {qualified layer name: rank}.
CONFIG_FIELD = LOWRANK_FIELD


@dataclass
class LowRankArguments:
    """Which Linear layers to factorize and how far (a fixed rank or a fraction of spectral energy)."""

    rank: int | None = field(
        default=None,
        metadata={"help": "Keep this many singular values in every targeted layer (capped at min(in, out))."},
    )
    energy: float | None = field(
        default=None,
        metadata={
            "help": "Instead of a fixed rank: per layer, the smallest rank whose singular values keep this "
            "fraction (0 < energy <= 1) of the layer's spectral energy (sum of squared singular values)."
        },
    )
    target_modules: list[str] | None = field(
        default=None,
        metadata={
            "help": "Linear layers to factorize: a pattern matches a layer whose qualified name equals it, "
            "ends with '.<pattern>' (e.g. 'query', 'attention.output.dense') or fully matches it as a "
            "regular expression. Default: every Linear inside the transformer blocks (not the embeddings, "
            "pooler or task head)."
        },
    )
    embedding_rank: int | None = field(
        default=None,
        metadata={
            "help": "Also factorize the input embedding table (V x d -> V x r rows + an r -> d projection, "
            "ALBERT-style) at this rank. With rank and energy unset, only the embeddings are factorized. A "
            "small student keeps most of its parameters there; trim the vocabulary first ('trim_vocab>lowrank:"
            "embedding_rank=256'), so the SVD is of the rows the task uses."
        },
    )
    only_if_smaller: bool = field(
        default=True,
        metadata={
            "help": "Leave a layer dense when rank * (in + out) >= in * out (factorizing would not remove "
            "parameters). Set false to factorize anyway, e.g. to check the factorization at full rank."
        },
    )

    def __post_init__(self):
        # Neither is allowed here (a recipe may set the rank per stage later); plan_lowrank insists on one.
        if self.rank is not None and self.energy is not None:
            raise ValueError(
                f"give exactly one of rank (a fixed rank, e.g. 64) or energy (a fraction of spectral energy, "
                f"e.g. 0.9); got rank={self.rank}, energy={self.energy}."
            )
        if self.rank is not None and (isinstance(self.rank, bool) or self.rank < 1):
            raise ValueError(f"rank must be an integer >= 1, got {self.rank}.")
        if self.embedding_rank is not None and (
            isinstance(self.embedding_rank, bool) or self.embedding_rank < 1
        ):
            raise ValueError(f"embedding_rank must be an integer >= 1, got {self.embedding_rank}.")
        if self.energy is not None and not 0 < self.energy <= 1:
            raise ValueError(
                f"energy must be in (0, 1] (the fraction of spectral energy to keep), got {self.energy}."
            )
        if self.target_modules is not None:
            if not self.target_modules:
                raise ValueError("target_modules is empty: give layer name patterns, or leave it unset.")
            for pattern in self.target_modules:
                try:
                    re.compile(pattern)
                except re.error as e:
                    raise ValueError(f"target_modules pattern {pattern!r} is not a valid regex: {e}.") from e


@dataclass
class LowRankPlan:
    """What factorize_model would do: ranks of the layers to factorize, layers left dense, parameter counts."""

    ranks: dict[str, int]
    skipped: dict[str, int]  # layer -> the rank it would have had, where factorizing would not pay
    parameters_before: int
    parameters_after: int

    @property
    def ratio(self) -> float:
        """Parameters after / before."""
        return self.parameters_after / self.parameters_before


def choose_rank(weight: torch.Tensor, rank: int | None = None, energy: float | None = None) -> int:
    """Rank for one weight: `rank` capped at min(in, out), or the fewest singular values keeping `energy`."""
    full = min(weight.shape)
    if rank is not None:
        return min(rank, full)
    if energy is None:
        raise ValueError("choose_rank needs rank or energy.")
    # float64: the cumulative fraction must reach exactly 1.0 at full rank for energy=1.0 to mean "all".
    s2 = torch.linalg.svdvals(weight.detach().double()).square()
    kept = torch.cumsum(s2, 0) / s2.sum()
    return min(int(torch.searchsorted(kept, torch.tensor(energy, dtype=kept.dtype)).item()) + 1, full)


def _matches(name: str, pattern: str) -> bool:
    return name == pattern or name.endswith("." + pattern) or re.fullmatch(pattern, name) is not None


def _target_linears(model: nn.Module, target_modules: list[str] | None) -> dict[str, nn.Linear]:
    """The Linear layers to consider, by qualified name; layers already factorized are never targets."""
    inside_lowrank = {
        f"{name}.{child}"
        for name, m in model.named_modules()
        if isinstance(m, LowRankLinear)
        for child in ("down", "up")
    }
    linears = {
        name: m
        for name, m in model.named_modules()
        if isinstance(m, nn.Linear) and name not in inside_lowrank
    }
    if target_modules is None:
        blocks = find_layers(model)
        prefix = next(name for name, m in model.named_modules() if m is blocks) + "."
        chosen = {n: m for n, m in linears.items() if n.startswith(prefix)}
        if not chosen:
            raise ValueError(
                f"{type(model).__name__} has no nn.Linear inside its transformer blocks ({prefix[:-1]}): "
                "name the layers to factorize with target_modules."
            )
    else:
        unmatched = [p for p in target_modules if not any(_matches(n, p) for n in linears)]
        if unmatched:
            raise ValueError(
                f"target_modules {unmatched} match no nn.Linear layer of {type(model).__name__} (e.g. "
                f"{sorted(linears)[:3]}); patterns match a name exactly, as a '.'-suffix, or as a full regex."
            )
        chosen = {n: m for n, m in linears.items() if any(_matches(n, p) for p in target_modules)}
    for name, module in chosen.items():
        if not module.weight.dtype.is_floating_point:
            raise ValueError(
                f"layer {name} holds {module.weight.dtype} (quantized) weights: factorize the float model, "
                "then quantize."
            )
    return chosen


def _input_embedding(model: nn.Module) -> tuple[str, nn.Embedding]:
    """The qualified name and module of the model's input (word) embedding table."""
    table = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    if isinstance(table, LowRankEmbedding):
        raise ValueError("the input embeddings are already factorized: leave embedding_rank unset.")
    if not isinstance(table, nn.Embedding):
        raise ValueError(
            f"{type(model).__name__} has no nn.Embedding input table (get_input_embeddings() gave "
            f"{type(table).__name__}): leave embedding_rank unset."
        )
    if not table.weight.dtype.is_floating_point:
        raise ValueError(
            "the input embeddings hold quantized weights: factorize the float model, then quantize."
        )
    name = next(n for n, m in model.named_modules() if m is table)
    return name, table


def plan_lowrank(model: nn.Module, args: LowRankArguments) -> LowRankPlan:
    """Ranks that factorize_model(model, args) would choose, and the parameter counts before/after; no change."""
    if args.rank is None and args.energy is None and args.embedding_rank is None:
        raise ValueError(
            "give exactly one of rank (a fixed rank, e.g. 64) or energy (a fraction of spectral energy, e.g. 0.9), "
            "or embedding_rank to factorize the embedding table only; all are unset."
        )
    ranks, skipped = {}, {}
    removed = 0
    if args.embedding_rank is not None:
        name, table = _input_embedding(model)
        vocab, dim = table.weight.shape
        r = min(args.embedding_rank, vocab, dim)
        saves = vocab * dim - r * (vocab + dim)
        if saves <= 0 and args.only_if_smaller:
            skipped[name] = r
        else:
            ranks[name] = r
            removed += saves
    linears = {} if args.rank is None and args.energy is None else _target_linears(model, args.target_modules)
    for name, module in linears.items():
        out_f, in_f = module.weight.shape
        r = choose_rank(module.weight, args.rank, args.energy)
        saves = in_f * out_f - r * (in_f + out_f)
        if saves <= 0 and args.only_if_smaller:
            skipped[name] = r
            continue
        ranks[name] = r
        removed += saves
    before, _ = count_parameters(model)
    return LowRankPlan(
        ranks=ranks, skipped=skipped, parameters_before=before, parameters_after=before - removed
    )


def _record_ranks(model: nn.Module, ranks: dict[str, int]) -> None:
    config = getattr(model, "config", None)
    if config is not None:
        # Stored in config.json by every save_pretrained, so load_lowrank can rebuild Trainer checkpoints too.
        setattr(config, CONFIG_FIELD, {**(getattr(config, CONFIG_FIELD, None) or {}), **ranks})


@torch.no_grad()
def factorize_model(model: nn.Module, args: LowRankArguments) -> dict[str, int]:
    """Replace the targeted Linear layers in place by truncated-SVD LowRankLinear pairs; return layer -> rank."""
    plan = plan_lowrank(model, args)
    for name, rank in plan.ranks.items():
        old = model.get_submodule(name)
        if isinstance(old, nn.Embedding):
            replace_module(model, name, _factorized_embedding(old, rank))
            continue
        weight = old.weight
        left, right = _svd_factors(weight, rank)  # weight ~= left @ right
        new = LowRankLinear(
            old.in_features, old.out_features, rank, old.bias is not None, weight.device, weight.dtype
        )
        new.down.weight.copy_(right)
        new.up.weight.copy_(left)
        if old.bias is not None:
            new.up.bias.copy_(old.bias)
        new.train(old.training)
        new.requires_grad_(weight.requires_grad)
        replace_module(model, name, new)
    _record_ranks(model, plan.ranks)
    logger.info(
        "factorized %d layers (%d left dense: no saving at their rank): %s -> %s parameters (%.1f%%)",
        len(plan.ranks),
        len(plan.skipped),
        f"{plan.parameters_before:,}",
        f"{plan.parameters_after:,}",
        100 * plan.ratio,
    )
    return plan.ranks


def _svd_factors(weight: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(U_r S_r^1/2, S_r^1/2 V_r^T): the truncated SVD of `weight` as two factors whose product approximates it."""
    # SVD in float32 at least (bf16/fp16 SVD is unsupported or inaccurate); copy_ casts back.
    u, s, vh = torch.linalg.svd(weight.float(), full_matrices=False)
    # Split S evenly between the two factors: both end up on the same scale, which keeps later
    # fine-tuning of the factorized model well conditioned.
    root = s[:rank].sqrt()
    return u[:, :rank] * root[None, :], root[:, None] * vh[:rank]


def _factorized_embedding(old: nn.Embedding, rank: int) -> LowRankEmbedding:
    """A LowRankEmbedding from the truncated SVD of a table: rows U_r S_r^1/2, projection S_r^1/2 V_r^T."""
    weight = old.weight
    rows, projection = _svd_factors(weight, rank)
    new = LowRankEmbedding(
        old.num_embeddings, old.embedding_dim, rank, old.padding_idx, weight.device, weight.dtype
    )
    new.embed.weight.copy_(rows)
    new.up.weight.copy_(projection.T)
    new.requires_grad_(weight.requires_grad)
    return new


def save_lowrank(model: PreTrainedModel, tokenizer, folder: str | os.PathLike) -> None:
    """Save a factorized model (safetensors + config.json with its ranks) and its tokenizer to `folder`."""
    ranks = getattr(model.config, CONFIG_FIELD, None)
    if not ranks:
        raise ValueError(
            "the model has no factorized layers (config.lowrank_ranks is empty): run factorize_model first, "
            "or save a dense model with save_pretrained."
        )
    model.save_pretrained(folder)  # safetensors is save_pretrained's only format in transformers v5
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
