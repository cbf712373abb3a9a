"""Pruning: unstructured magnitude sparsity (torch.nn.utils.prune) and structured removal of FFN neurons and
attention heads that leaves a smaller model loadable with the standard transformers classes.

Unstructured pruning zeroes individual weights: the checkpoint keeps its shapes (and compresses well), but dense
kernels run no faster. Structured pruning removes whole FFN neurons / attention heads, rewrites the config so it
describes the new shapes, and builds a fresh model of the same class: smaller and faster, and
``AutoModel*.from_pretrained`` reloads it. Recover accuracy afterwards with ClassifierTrainer or DistillTrainer.
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from huggingface_hub.errors import StrictDataclassClassValidationError
from torch import nn
from torch.nn.utils import prune as torch_prune
from transformers import PreTrainedModel

from ..modeling import count_parameters, find_layers, layers_prefix
from ..reports import format_table, percent

logger = logging.getLogger(__name__)

__all__ = [
    "GQA_STRATEGIES",
    "IMPORTANCE_METHODS",
    "PRUNE_METHODS",
    "PRUNE_SCOPES",
    "PruneArguments",
    "SparsityReport",
    "ffn_importance",
    "head_importance",
    "magnitude_prune",
    "prunable_linears",
    "prune",
    "prune_attention_heads",
    "prune_ffn_neurons",
    "sparsity_report",
    "structured_prune",
]

PRUNE_METHODS = ("magnitude", "structured")
PRUNE_SCOPES = ("global", "layer")
IMPORTANCE_METHODS = ("magnitude", "taylor")
GQA_STRATEGIES = ("kv_groups", "query_heads")

_ALTERNATIVES = (
    "Prune FFN neurons instead (ffn_keep_fraction < 1) or drop whole layers with "
    "hfkit.student.student_from_teacher."
)


@dataclass
class PruneArguments:
    """How to prune: unstructured magnitude sparsity, or structured removal of FFN neurons / attention heads."""

    method: str = field(
        default="magnitude",
        metadata={
            "help": "'magnitude': zero the smallest weights (same shapes, sparse). 'structured': remove FFN "
            "neurons and/or attention heads (smaller, faster model; config rewritten)."
        },
    )
    sparsity: float = field(
        default=0.5,
        metadata={"help": "method=magnitude: fraction of the chosen weights set to zero, in [0, 1)."},
    )
    scope: str = field(
        default="global",
        metadata={
            "help": "method=magnitude: 'global' ranks all chosen weights together (layers end up with different "
            "sparsity), 'layer' prunes every layer to exactly `sparsity`."
        },
    )
    include_modules: list[str] | None = field(
        default=None,
        metadata={
            "help": "method=magnitude: regexes (re.search) of Linear module names to prune; default every Linear "
            "inside the transformer blocks (embeddings and task head excluded)."
        },
    )
    exclude_modules: list[str] | None = field(
        default=None,
        metadata={"help": "method=magnitude: regexes of Linear module names to leave alone (applied last)."},
    )
    ffn_keep_fraction: float = field(
        default=1.0,
        metadata={
            "help": "method=structured: fraction of FFN neurons kept in every layer, in (0, 1]; the same count in "
            "each layer, so config.intermediate_size describes them."
        },
    )
    heads_to_keep: int | None = field(
        default=None,
        metadata={
            "help": "method=structured: query heads kept per layer (None: keep all). Only for models whose "
            "config has head_dim (LLaMA-style); BERT-style encoders cannot drop heads."
        },
    )
    gqa_strategy: str = field(
        default="kv_groups",
        metadata={
            "help": "Grouped-query attention: 'kv_groups' removes whole key/value groups (heads_to_keep a multiple "
            "of heads per group), 'query_heads' removes query heads evenly in every group."
        },
    )
    importance: str = field(
        default="magnitude",
        metadata={
            "help": "method=structured: 'magnitude' (weight norms, no data) or 'taylor' (|activation x gradient| "
            "over num_batches labelled batches; Molchanov et al. 2017, Michel et al. 2019)."
        },
    )
    num_batches: int = field(default=8, metadata={"help": "importance=taylor: how many batches to score on."})

    def __post_init__(self):
        for name, allowed in (
            ("method", PRUNE_METHODS),
            ("scope", PRUNE_SCOPES),
            ("importance", IMPORTANCE_METHODS),
            ("gqa_strategy", GQA_STRATEGIES),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}={getattr(self, name)!r}: choose one of {', '.join(allowed)}.")
        _check_sparsity(self.sparsity)
        _check_keep_fraction(self.ffn_keep_fraction)
        if self.heads_to_keep is not None and self.heads_to_keep < 1:
            raise ValueError(
                f"heads_to_keep={self.heads_to_keep}: keep at least 1 head, or None to keep all."
            )
        if self.num_batches < 1:
            raise ValueError(f"num_batches={self.num_batches}: score on at least 1 batch.")
        if self.method == "structured" and self.ffn_keep_fraction == 1.0 and self.heads_to_keep is None:
            raise ValueError(
                "method='structured' with nothing to remove: set ffn_keep_fraction < 1 and/or heads_to_keep."
            )
        if self.method == "magnitude" and self.importance != "magnitude":
            raise ValueError(
                f"importance={self.importance!r} scores neurons and heads for method='structured'; "
                "method='magnitude' ranks single weights by |w|. Set method='structured' or importance='magnitude'."
            )


def _check_sparsity(sparsity: float) -> None:
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity={sparsity}: must be in [0, 1), the fraction of weights set to zero.")


def _check_keep_fraction(keep_fraction: float) -> None:
    if not 0.0 < keep_fraction <= 1.0:
        raise ValueError(
            f"ffn_keep_fraction={keep_fraction}: must be in (0, 1], the fraction of neurons kept."
        )


# --------------------------------------------------------------------------------------------------------------
# Unstructured magnitude pruning


@dataclass
class SparsityReport:
    """Fraction of exactly-zero weights per Linear layer and over all of them (biases not counted)."""

    per_layer: dict[str, float]
    zeros: int
    total: int

    @property
    def overall(self) -> float:
        """Zero weights / all weights of the reported layers."""
        return self.zeros / self.total if self.total else 0.0

    def format(self) -> str:
        """A plain-text table: one row per layer, then the overall sparsity."""
        rows = [[name, percent(value)] for name, value in self.per_layer.items()]
        rows.append(["overall", percent(self.overall)])
        return format_table(rows, header=["layer", "sparsity"])


def _compile(patterns: Sequence[str], what: str) -> list[re.Pattern]:
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern))
        except re.error as err:
            raise ValueError(f"{what}: {pattern!r} is not a valid regular expression ({err}).") from err
    return compiled


def prunable_linears(
    model: nn.Module, include: Sequence[str] | None = None, exclude: Sequence[str] | None = None
) -> dict[str, nn.Linear]:
    """Linear layers eligible for pruning by qualified name: default those inside the transformer blocks."""
    linears = {name: m for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    if include is None:
        # Embeddings are not Linear, and the task head / pooler / lm_head sit outside the blocks: pruning them
        # hurts most for the least saving, so by default they are left dense.
        prefix = layers_prefix(model) + "."
        selected = {name: m for name, m in linears.items() if name.startswith(prefix)}
    else:
        patterns = _compile(include, "include_modules")
        selected = {name: m for name, m in linears.items() if any(p.search(name) for p in patterns)}
    if exclude:
        patterns = _compile(exclude, "exclude_modules")
        selected = {name: m for name, m in selected.items() if not any(p.search(name) for p in patterns)}
    # A module reachable under two names (shared) is pruned once.
    seen: set[int] = set()
    unique = {}
    for name, module in selected.items():
        if id(module) not in seen:
            seen.add(id(module))
            unique[name] = module
    if not unique:
        examples = ", ".join(list(linears)[:4]) or "none"
        raise ValueError(
            f"no Linear layer of {type(model).__name__} matches include={include} exclude={exclude}; "
            f"its Linear layers are named like: {examples}."
        )
    for name, module in unique.items():
        if not module.weight.is_floating_point():
            raise ValueError(
                f"{name} has {module.weight.dtype} weights (a quantized layer): prune the float model first, "
                "then quantize it."
            )
    return unique


def sparsity_report(
    model: nn.Module, include: Sequence[str] | None = None, exclude: Sequence[str] | None = None
) -> SparsityReport:
    """Measure the fraction of zero weights in each eligible Linear layer and overall."""
    per_layer = {}
    zeros = total = 0
    for name, module in prunable_linears(model, include, exclude).items():
        weight = module.weight.detach()
        n_zero = int((weight == 0).sum())
        per_layer[name] = n_zero / weight.numel()
        zeros += n_zero
        total += weight.numel()
    return SparsityReport(per_layer=per_layer, zeros=zeros, total=total)


def magnitude_prune(
    model: nn.Module,
    sparsity: float,
    scope: str = "global",
    include: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
) -> SparsityReport:
    """Zero the smallest-|w| weights of the eligible Linear layers in place, permanently; returns the sparsity."""
    _check_sparsity(sparsity)
    if scope not in PRUNE_SCOPES:
        raise ValueError(f"scope={scope!r}: choose one of {', '.join(PRUNE_SCOPES)}.")
    modules = prunable_linears(model, include, exclude)
    if scope == "global":
        torch_prune.global_unstructured(
            [(m, "weight") for m in modules.values()],
            pruning_method=torch_prune.L1Unstructured,
            amount=sparsity,
        )
    else:
        for module in modules.values():
            torch_prune.l1_unstructured(module, "weight", amount=sparsity)
    # remove() folds the mask into a plain `weight` parameter (the same Parameter object, so tied weights stay
    # tied) and drops weight_orig / weight_mask and the forward hook: the state dict is a standard one again.
    for module in modules.values():
        torch_prune.remove(module, "weight")
    report = sparsity_report(model, include, exclude)
    logger.info("magnitude pruning (%s, target %.3f): achieved %.4f overall", scope, sparsity, report.overall)
    return report


# --------------------------------------------------------------------------------------------------------------
# Structured pruning: which modules of a block hold the FFN neurons and the attention heads


@dataclass(frozen=True)
class _BlockSpec:
    """Module names inside one transformer block, relative to the block."""

    family: str
    ffn_in: tuple[str, ...]  # Linear layers whose output rows are the FFN neurons
    ffn_out: str  # Linear layer whose input columns are the FFN neurons
    q: str
    k: str
    v: str
    o: str  # its input columns are the concatenated head outputs


_BLOCK_SPECS = (
    _BlockSpec(
        "BERT-style encoder (BERT, RoBERTa, MiniLM, ELECTRA)",
        ("intermediate.dense",),
        "output.dense",
        "attention.self.query",
        "attention.self.key",
        "attention.self.value",
        "attention.output.dense",
    ),
    _BlockSpec(
        "MPNet encoder",
        ("intermediate.dense",),
        "output.dense",
        "attention.attn.q",
        "attention.attn.k",
        "attention.attn.v",
        "attention.attn.o",
    ),
    _BlockSpec(
        "LLaMA-style decoder (LLaMA, SmolLM, Mistral, Qwen2)",
        ("mlp.gate_proj", "mlp.up_proj"),
        "mlp.down_proj",
        "self_attn.q_proj",
        "self_attn.k_proj",
        "self_attn.v_proj",
        "self_attn.o_proj",
    ),
)


def _block_spec(model: nn.Module) -> _BlockSpec:
    """The spec whose module names all exist as Linear layers in every transformer block of `model`."""
    blocks = [dict(layer.named_modules()) for layer in find_layers(model)]
    for spec in _BLOCK_SPECS:
        names = (*spec.ffn_in, spec.ffn_out, spec.q, spec.k, spec.v, spec.o)
        if all(isinstance(block.get(name), nn.Linear) for block in blocks for name in names):
            return spec
    raise ValueError(
        f"structured pruning does not know the block layout of {type(model).__name__}: supported are "
        f"{'; '.join(s.family for s in _BLOCK_SPECS)}. Use magnitude_prune (unstructured) or "
        "hfkit.student.student_from_teacher (drop layers) instead."
    )


def _head_layout(model: nn.Module, spec: _BlockSpec) -> tuple[int, int, int]:
    """(query heads, key/value heads, head size) read from the config and checked against the weights."""
    config = model.config
    n_q = config.num_attention_heads
    n_kv = getattr(config, "num_key_value_heads", None) or n_q
    q_rows = find_layers(model)[0].get_submodule(spec.q).weight.shape[0]
    if n_q % n_kv or q_rows % n_q:
        raise ValueError(
            f"{type(model).__name__}: {n_q} query heads, {n_kv} key/value heads and a {q_rows}-row query "
            "projection do not form a regular head layout; cannot tell which rows belong to which head."
        )
    return n_q, n_kv, q_rows // n_q


def _sub(layer: nn.Module, name: str) -> nn.Linear:
    return layer.get_submodule(name)


def _rows_norm(linear: nn.Linear) -> torch.Tensor:
    """L2 norm of each output row, bias included (a neuron with zero weights but a bias still adds a constant)."""
    weight = linear.weight.detach().float()
    if linear.bias is not None:
        weight = torch.cat([weight, linear.bias.detach().float()[:, None]], dim=1)
    return weight.norm(dim=1)


# --------------------------------------------------------------------------------------------------------------
# Importance scores


def _magnitude_ffn(model: nn.Module, spec: _BlockSpec) -> list[torch.Tensor]:
    # A neuron adds act(w_in . x + b) * w_out to the residual stream: its size scales with both norms (and, for
    # a gated MLP, with the gate's and the up projection's).
    scores = []
    for layer in find_layers(model):
        score = _sub(layer, spec.ffn_out).weight.detach().float().norm(dim=0)
        for name in spec.ffn_in:
            score = score * _rows_norm(_sub(layer, name))
        scores.append(score)
    return scores


def _magnitude_heads(model: nn.Module, spec: _BlockSpec) -> list[torch.Tensor]:
    # A head's output is softmax(q k^T) v W_o: the attention pattern is normalised, so its size is set by the
    # value rows (of its key/value group) and its output-projection columns, not by q or k.
    n_q, n_kv, head_dim = _head_layout(model, spec)
    scores = []
    for layer in find_layers(model):
        v = _rows_norm(_sub(layer, spec.v)).view(n_kv, head_dim).norm(dim=1)
        o = _sub(layer, spec.o).weight.detach().float().view(-1, n_q, head_dim).norm(dim=(0, 2))
        scores.append(o * v.repeat_interleave(n_q // n_kv))
    return scores


def _model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _taylor_scores(
    model: PreTrainedModel,
    spec: _BlockSpec,
    batches: Iterable[Mapping[str, torch.Tensor]] | None,
    num_batches: int,
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """First-order Taylor scores of every FFN neuron and attention head: sum over examples of |dL/d mask|.

    A mask m multiplying a neuron's activation a (or a head's output) has dL/dm = sum over tokens of a * dL/da
    (Molchanov et al. 2017; for heads, Michel et al. 2019): that is what is accumulated, per example, here.
    """
    if batches is None:
        raise ValueError(
            "importance='taylor' needs data: pass batches, e.g. a DataLoader of tokenized rows with 'labels' "
            "(the Trainer's collator works), or use importance='magnitude'."
        )
    if num_batches < 1:
        raise ValueError(f"num_batches={num_batches}: score on at least 1 batch.")
    n_q, _, head_dim = _head_layout(model, spec)
    layers = find_layers(model)
    ffn = [torch.zeros(_sub(layer, spec.ffn_out).in_features) for layer in layers]
    heads = [torch.zeros(n_q) for _ in layers]
    captured: list[tuple[str, int, torch.Tensor]] = []

    def capture(kind: str, index: int):
        def hook(module, args):
            captured.append((kind, index, args[0]))

        return hook

    handles = []
    for i, layer in enumerate(layers):
        handles.append(_sub(layer, spec.ffn_out).register_forward_pre_hook(capture("ffn", i)))
        handles.append(_sub(layer, spec.o).register_forward_pre_hook(capture("heads", i)))
    # Activation gradients only, not parameter gradients: making the embedding output require grad lets the
    # graph reach every block even when parameters are frozen, and torch.autograd.grad leaves every .grad alone.
    handles.append(
        model.get_input_embeddings().register_forward_hook(lambda m, i, out: out.requires_grad_(True))
    )
    was_training = model.training
    model.eval()  # no dropout: scores should not depend on a random mask
    device = _model_device(model)
    seen = 0
    try:
        with torch.enable_grad():
            for batch in batches:
                if seen == num_batches:
                    break
                if not isinstance(batch, Mapping) or not all(
                    isinstance(v, torch.Tensor) for v in batch.values()
                ):
                    raise ValueError(
                        "batches must yield dicts of tensors (a DataLoader with a collator, e.g. "
                        "DataLoader(ds, batch_size=8, collate_fn=DataCollatorWithPadding(tokenizer)))."
                    )
                if "labels" not in batch:
                    raise ValueError(
                        f"a batch has keys {sorted(batch)} but no 'labels': Taylor importance needs the loss."
                    )
                captured.clear()
                loss = model(**{k: v.to(device) for k, v in batch.items()}).loss
                if loss is None:
                    raise ValueError(f"{type(model).__name__} returned no loss for a batch with labels.")
                grads = torch.autograd.grad(loss, [t for _, _, t in captured], allow_unused=True)
                for (kind, i, act), grad in zip(captured, grads):
                    if grad is None:  # the activation did not reach the loss
                        continue
                    # Per example: sum over tokens (and head dims) before the absolute value, as for a mask.
                    contrib = (act.detach().float() * grad.float()).flatten(1, -2).sum(1)
                    if kind == "heads":
                        heads[i] += contrib.view(-1, n_q, head_dim).sum(-1).abs().sum(0).cpu()
                    else:
                        ffn[i] += contrib.abs().sum(0).cpu()
                seen += 1
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    if seen == 0:
        raise ValueError("batches is empty: Taylor importance needs at least one labelled batch.")
    return ffn, heads


def ffn_importance(
    model: PreTrainedModel,
    method: str = "magnitude",
    batches: Iterable[Mapping[str, torch.Tensor]] | None = None,
    num_batches: int = 8,
) -> list[torch.Tensor]:
    """Importance of every FFN neuron, one tensor of config.intermediate_size scores per layer (higher = keep)."""
    spec = _block_spec(model)
    if method == "magnitude":
        return _magnitude_ffn(model, spec)
    if method == "taylor":
        return _taylor_scores(model, spec, batches, num_batches)[0]
    raise ValueError(f"method={method!r}: choose one of {', '.join(IMPORTANCE_METHODS)}.")


def head_importance(
    model: PreTrainedModel,
    method: str = "magnitude",
    batches: Iterable[Mapping[str, torch.Tensor]] | None = None,
    num_batches: int = 8,
) -> list[torch.Tensor]:
    """Importance of every attention (query) head, one tensor of num_attention_heads scores per layer."""
    spec = _block_spec(model)
    if method == "magnitude":
        return _magnitude_heads(model, spec)
    if method == "taylor":
        return _taylor_scores(model, spec, batches, num_batches)[1]
    raise ValueError(f"method={method!r}: choose one of {', '.join(IMPORTANCE_METHODS)}.")


# --------------------------------------------------------------------------------------------------------------
# Structured pruning: choose what to keep, slice the weights, rebuild a standard model from the new config


def _check_scores(scores: Sequence[torch.Tensor], num_layers: int, size: int, what: str) -> None:
    if len(scores) != num_layers or any(s.shape != (size,) for s in scores):
        shapes = [tuple(s.shape) for s in scores]
        raise ValueError(
            f"{what} scores: expected {num_layers} tensors of shape ({size},), got {shapes}; "
            f"compute them with {what}_importance(model)."
        )


def _top(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k highest scores, in ascending index order (the kept units keep their order)."""
    return torch.topk(scores.float(), k).indices.sort().values


def _ffn_keep(model: PreTrainedModel, spec: _BlockSpec, keep_fraction: float, scores) -> list[torch.Tensor]:
    _check_keep_fraction(keep_fraction)
    size = model.config.intermediate_size
    if not isinstance(size, int):
        raise ValueError(
            f"config.intermediate_size={size!r} is not one number; only a uniform FFN width can be pruned."
        )
    layers = find_layers(model)
    _check_scores(scores, len(layers), size, "ffn")
    # The same count in every layer: config.intermediate_size is one number for all blocks.
    k = max(1, round(keep_fraction * size))
    return [_top(s, k) for s in scores]


def _head_counts(n_q: int, n_kv: int, heads_to_keep: int, strategy: str) -> int:
    """Number of key/value heads after keeping `heads_to_keep` query heads with `strategy`, or 0 if impossible."""
    per_group = n_q // n_kv
    if strategy == "kv_groups":
        return heads_to_keep // per_group if heads_to_keep % per_group == 0 else 0
    return n_kv if heads_to_keep % n_kv == 0 else 0


def _pruned_head_config(config, heads_to_keep: int, n_kv_new: int):
    new = copy.deepcopy(config)
    new.num_attention_heads = heads_to_keep
    if hasattr(new, "num_key_value_heads"):
        new.num_key_value_heads = n_kv_new
    return new


def _config_accepts(config) -> bool:
    """Whether the config class's own validators accept these values (LLaMA requires hidden % heads == 0)."""
    try:
        config.validate()
    except StrictDataclassClassValidationError:
        return False
    return True


def _require_head_dim(model: PreTrainedModel) -> None:
    """Raise unless the config has a head_dim, i.e. the head count can shrink while the head size stays."""
    if getattr(model.config, "head_dim", None) is None:
        # BERT, RoBERTa, MPNet, MiniLM: attention_head_size = hidden_size / num_attention_heads in the modeling
        # code and no head_dim field (transformers 5), so fewer heads would mean wider heads, not fewer weights.
        raise ValueError(
            f"{type(model).__name__} cannot drop attention heads and still load with its standard class: its "
            "config has no head_dim, the head size is hidden_size / num_attention_heads. " + _ALTERNATIVES
        )


def _check_head_count(model: PreTrainedModel, spec: _BlockSpec, heads_to_keep: int, strategy: str) -> int:
    """Raise unless `heads_to_keep` query heads per layer can be kept; return the new key/value head count."""
    config = model.config
    name = type(model).__name__
    _require_head_dim(model)
    if strategy not in GQA_STRATEGIES:
        raise ValueError(f"gqa_strategy={strategy!r}: choose one of {', '.join(GQA_STRATEGIES)}.")
    n_q, n_kv, head_dim = _head_layout(model, spec)
    if head_dim != config.head_dim:
        raise ValueError(
            f"{name}: query rows per head ({head_dim}) differ from config.head_dim={config.head_dim}."
        )
    valid = [
        k
        for k in range(1, n_q + 1)
        if (kv := _head_counts(n_q, n_kv, k, strategy))
        and _config_accepts(_pruned_head_config(config, k, kv))
    ]
    if heads_to_keep not in valid:
        raise ValueError(
            f"heads_to_keep={heads_to_keep} is not possible for {name} ({n_q} query heads, {n_kv} key/value "
            f"heads, hidden_size {config.hidden_size}) with gqa_strategy={strategy!r}: valid counts are {valid}"
            + (
                f" (the other strategy allows {_other_valid(config, n_q, n_kv, strategy)})."
                if n_kv < n_q
                else "."
            )
        )
    return _head_counts(n_q, n_kv, heads_to_keep, strategy)


def _heads_keep(
    model: PreTrainedModel, spec: _BlockSpec, heads_to_keep: int, scores, strategy: str
) -> tuple[list[torch.Tensor], list[torch.Tensor], int]:
    """Per layer: kept query heads and kept key/value heads, plus the new key/value head count."""
    n_kv_new = _check_head_count(model, spec, heads_to_keep, strategy)
    n_q, n_kv, _ = _head_layout(model, spec)
    _check_scores(scores, len(find_layers(model)), n_q, "head")
    per_group = n_q // n_kv
    q_keep, kv_keep = [], []
    for s in scores:
        grouped = s.float().view(n_kv, per_group)
        if strategy == "kv_groups":
            groups = _top(grouped.sum(1), n_kv_new)  # a group is worth what its query heads are worth
            q = (groups[:, None] * per_group + torch.arange(per_group)).flatten()
            kv = groups
        else:
            k = heads_to_keep // n_kv
            q = torch.cat([g * per_group + _top(grouped[g], k) for g in range(n_kv)])
            kv = torch.arange(n_kv)
        q_keep.append(q)
        kv_keep.append(kv)
    return q_keep, kv_keep, n_kv_new


def _other_valid(config, n_q: int, n_kv: int, strategy: str) -> list[int]:
    other = GQA_STRATEGIES[1 - GQA_STRATEGIES.index(strategy)]
    return [
        k
        for k in range(1, n_q + 1)
        if (kv := _head_counts(n_q, n_kv, k, other)) and _config_accepts(_pruned_head_config(config, k, kv))
    ]


def _unit_rows(index: torch.Tensor, size: int) -> torch.Tensor:
    """Row indices of the kept units when each unit spans `size` consecutive rows (a head spans head_dim)."""
    return (index[:, None] * size + torch.arange(size)).flatten()


def _rebuild(
    model: PreTrainedModel,
    spec: _BlockSpec,
    ffn_keep: list[torch.Tensor] | None,
    heads: tuple[list[torch.Tensor], list[torch.Tensor], int] | None,
) -> PreTrainedModel:
    """A fresh model of the same class, built from the rewritten config and loaded with the sliced weights."""
    config = copy.deepcopy(model.config)
    state = model.state_dict()
    prefix = layers_prefix(model)
    _, _, head_dim = _head_layout(model, spec)

    def take(name: str, index: torch.Tensor, dim: int) -> None:
        key = f"{name}.weight"
        state[key] = state[key].index_select(dim, index.to(state[key].device))
        if dim == 0 and f"{name}.bias" in state:
            state[f"{name}.bias"] = state[f"{name}.bias"].index_select(0, index.to(state[key].device))

    for i in range(config.num_hidden_layers):
        block = f"{prefix}.{i}."
        if ffn_keep is not None:
            for name in spec.ffn_in:
                take(block + name, ffn_keep[i], 0)
            take(block + spec.ffn_out, ffn_keep[i], 1)
        if heads is not None:
            q_rows = _unit_rows(heads[0][i], head_dim)
            kv_rows = _unit_rows(heads[1][i], head_dim)
            take(block + spec.q, q_rows, 0)
            take(block + spec.k, kv_rows, 0)
            take(block + spec.v, kv_rows, 0)
            take(block + spec.o, q_rows, 1)
    if ffn_keep is not None:
        config.intermediate_size = len(ffn_keep[0])
    if heads is not None:
        config = _pruned_head_config(config, len(heads[0][0]), heads[2])

    # A fresh model rather than swapping Linear layers in place: attributes derived from the config
    # (num_key_value_groups, all_head_size, ...) are then right, the input model is left untouched, and a
    # strict load proves the class builds exactly these shapes from the config, i.e. that it will reload.
    pruned = type(model)._from_config(config, dtype=model.dtype)
    try:
        pruned.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(
            f"{type(model).__name__} built from the pruned config does not have the pruned shapes, so it would "
            f"not reload with its standard class. {_ALTERNATIVES}"
        ) from err
    if getattr(model, "generation_config", None) is not None and pruned.can_generate():
        pruned.generation_config = copy.deepcopy(model.generation_config)
    device = _model_device(model)
    if device.type != "meta":
        pruned.to(device)
    pruned.train(model.training)
    before, _ = count_parameters(model)
    after, _ = count_parameters(pruned)
    logger.info(
        "structured pruning: %s -> %s parameters (%.1f%%)", f"{before:,}", f"{after:,}", 100 * after / before
    )
    return pruned


def prune_ffn_neurons(
    model: PreTrainedModel, keep_fraction: float, scores: Sequence[torch.Tensor] | None = None
) -> PreTrainedModel:
    """New model keeping the top keep_fraction of FFN neurons in every layer (scores default: magnitude)."""
    spec = _block_spec(model)
    scores = _magnitude_ffn(model, spec) if scores is None else scores
    return _rebuild(model, spec, _ffn_keep(model, spec, keep_fraction, scores), None)


def prune_attention_heads(
    model: PreTrainedModel,
    heads_to_keep: int,
    scores: Sequence[torch.Tensor] | None = None,
    gqa_strategy: str = "kv_groups",
) -> PreTrainedModel:
    """New model keeping heads_to_keep query heads per layer (LLaMA-style; BERT-style raises a ValueError)."""
    spec = _block_spec(model)
    _check_head_count(model, spec, heads_to_keep, gqa_strategy)
    scores = _magnitude_heads(model, spec) if scores is None else scores
    return _rebuild(model, spec, None, _heads_keep(model, spec, heads_to_keep, scores, gqa_strategy))


def structured_prune(
    model: PreTrainedModel,
    ffn_keep_fraction: float = 1.0,
    heads_to_keep: int | None = None,
    importance: str = "magnitude",
    batches: Iterable[Mapping[str, torch.Tensor]] | None = None,
    num_batches: int = 8,
    gqa_strategy: str = "kv_groups",
) -> PreTrainedModel:
    """New, smaller model with FFN neurons and/or heads removed, all scored on the original model in one pass."""
    spec = _block_spec(model)
    # Check every argument before scoring: a Taylor pass can take a while.
    _check_keep_fraction(ffn_keep_fraction)
    if heads_to_keep is not None:
        _check_head_count(model, spec, heads_to_keep, gqa_strategy)
    if importance == "magnitude":
        ffn_scores, head_scores = _magnitude_ffn(model, spec), _magnitude_heads(model, spec)
    elif importance == "taylor":
        ffn_scores, head_scores = _taylor_scores(model, spec, batches, num_batches)
    else:
        raise ValueError(f"importance={importance!r}: choose one of {', '.join(IMPORTANCE_METHODS)}.")
    ffn_keep = _ffn_keep(model, spec, ffn_keep_fraction, ffn_scores) if ffn_keep_fraction < 1.0 else None
    heads = (
        _heads_keep(model, spec, heads_to_keep, head_scores, gqa_strategy)
        if heads_to_keep is not None and heads_to_keep != model.config.num_attention_heads
        else None
    )
    if ffn_keep is None and heads is None:
        logger.info("structured pruning: nothing to remove (ffn_keep_fraction=1, all heads kept)")
    return _rebuild(model, spec, ffn_keep, heads)


def prune(
    model: PreTrainedModel, args: PruneArguments, batches: Iterable[Mapping[str, torch.Tensor]] | None = None
) -> PreTrainedModel:
    """Apply PruneArguments: magnitude prunes `model` in place and returns it; structured returns a new model."""
    if args.method == "magnitude":
        report = magnitude_prune(model, args.sparsity, args.scope, args.include_modules, args.exclude_modules)
        logger.info("sparsity per layer:\n%s", report.format())
        return model
    return structured_prune(
        model,
        ffn_keep_fraction=args.ffn_keep_fraction,
        heads_to_keep=args.heads_to_keep,
        importance=args.importance,
        batches=batches,
        num_batches=args.num_batches,
        gqa_strategy=args.gqa_strategy,
    )
