"""Compression pipeline for sequence classifiers: chains of prune -> recover -> low-rank -> trim_vocab -> quantize.

Quantization is the last stage: ``int8``/``nf4`` (bitsandbytes, for GPUs) or a CPU runtime: ``cpu_int8`` (an ONNX
Runtime int8 graph, embeddings included; hfkit.compress.cpu_int8), ``bf16`` (a bfloat16 torch folder;
hfkit.compress.bf16), ``openvino`` / ``openvino_int8`` (an OpenVINO IR, float32 or NNCF int8 calibrated on training
rows; hfkit.compress.openvino).

A chain is written as stages joined by ``>``, each stage optionally followed by ``:key=value,...``
overrides of its arguments, e.g. ``prune:ffn_keep_fraction=0.5>recover>lowrank:energy=0.9>int8``.
Chains that share a prefix share its work: ``prune>recover`` runs once for both
``prune>recover>int8`` and ``prune>recover>lowrank``. Every stage is saved in its own folder under
the output directory (safetensors), reloaded the way a user would reload it, and measured: parameters,
size on disk, memory, CPU latency per batch, accuracy and F1 on the validation split. A stage after
``trim_vocab`` works with (and saves) the trimmed tokenizer, so every stage uses its parent folder's tokenizer;
``trim_vocab:trim_min_frequency=8>recover`` retrains the trimmed model on the data re-tokenized with it (words
whose tokens were dropped are split into kept pieces, and recovery teaches the model those splits).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import yaml
from datasets import Dataset
from torch.nn.utils import prune as torch_prune
from transformers import PreTrainedModel

from ..errors import UserInputError
from ..evaluation import evaluate_classifier, measure_latencies_together, size_on_disk_mb
from ..io import TaskKind, load_model
from ..reports import markdown_table
from .bf16 import export_bf16
from .cpu_int8 import CpuInt8Arguments, export_cpu_int8
from .lowrank import LowRankArguments, factorize_model, save_lowrank
from .openvino import OpenVinoArguments, Row, export_openvino
from .prune import PruneArguments, prunable_linears, prune
from .quantize import (
    QuantizeArguments,
    load_quantized,
    memory_footprint_mb,
    save_quantized,
)
from .report import compression_report, compression_table, format_compression_table
from .trim_vocab import CORPUS_SPLITS, ORACLE_CORPUS, TrimVocabArguments, oov_rates, trim_vocabulary

logger = logging.getLogger(__name__)

# Stage name -> its position in a chain: stages run in this order, quantization last. recover may also follow
# lowrank or trim_vocab (after trim_vocab it trains on the data re-tokenized with the trimmed tokenizer).
# lowrank and trim_vocab come in either order: 'trim_vocab>lowrank:embedding_rank=256' factorizes the trimmed table.
STAGE_ORDER = {
    "prune": 0, "recover": 1, "lowrank": 2, "trim_vocab": 2,
    "int8": 4, "nf4": 4, "cpu_int8": 4, "bf16": 4, "openvino": 4, "openvino_int8": 4,
}  # fmt: skip
_QUANT_STAGES = {"int8": 8, "nf4": 4}  # bitsandbytes bits
_OPENVINO_STAGES = {"openvino": False, "openvino_int8": True}  # stage -> int8
# Nothing is trained, pruned or factorized after these.
_FINAL_STAGES = {*_QUANT_STAGES, "cpu_int8", "bf16", *_OPENVINO_STAGES}
# The chain name that stands for every CPU runtime, measured on this machine (see expand_chains, recommend_cpu).
AUTO_CPU = "auto-cpu"


@dataclass
class CompressArguments:
    """What to compress, which chains of stages to run, and where to write the report."""

    model_name_or_path: str = field(
        metadata={"help": "The trained classifier to compress (a saved folder), e.g. the distilled student."}
    )
    teacher_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Optional teacher: measured as a reference row, and the `recover` stage distils from it "
            "(cached logits) instead of fine-tuning on the labels alone."
        },
    )
    chains: list[str] = field(
        default_factory=lambda: ["int8", "nf4"],
        metadata={
            "help": "Chains to run, each 'stage>stage>...' with stages prune, recover, lowrank, trim_vocab, "
            "then one of int8, nf4 (bitsandbytes), cpu_int8 (ONNX Runtime int8 for CPUs), bf16 (bfloat16 torch), "
            "openvino or openvino_int8 (OpenVINO IR, float32 or NNCF int8), each optionally "
            "with overrides, e.g. 'prune:ffn_keep_fraction=0.5>recover>int8', 'lowrank:rank=64' or "
            "'trim_vocab>cpu_int8'."
        },
    )
    latency_batch_size: int = field(
        default=32, metadata={"help": "Batch size of the CPU latency measurement."}
    )
    latency_repeats: int = field(
        default=15,
        metadata={"help": "Rounds of timing: one forward of every model per round, median kept."},
    )
    auto_cpu_max_loss_points: float = field(
        default=0.3,
        metadata={
            "help": f"With the chain '{AUTO_CPU}': the recommended runtime is the fastest whose validation accuracy "
            "is at most this many points below the float32 student's."
        },
    )
    calibration_batches: int = field(
        default=8,
        metadata={"help": "Training batches used to score importance when prune uses importance: taylor."},
    )

    def __post_init__(self):
        if not self.chains:
            raise ValueError("chains is empty: give at least one chain, e.g. ['int8'].")
        for chain in self.chains:
            if chain != AUTO_CPU:
                parse_chain(chain)  # fail at parse time, before any model is loaded
        if self.auto_cpu_max_loss_points < 0:
            raise ValueError(
                f"auto_cpu_max_loss_points={self.auto_cpu_max_loss_points}: give a loss >= 0, e.g. 0.3 points."
            )


def auto_cpu_chains(native_bf16: bool) -> list[str]:
    """The CPU runtimes 'auto-cpu' measures next to the float32 student (bf16 only where the CPU has bf16 units)."""
    # Without AVX512-BF16/AMX torch emulates bf16: slower than float32 and never the one to recommend.
    return (["bf16"] if native_bf16 else []) + ["cpu_int8", "openvino", "openvino_int8"]


def expand_chains(chains: list[str], native_bf16: bool) -> list[str]:
    """The chains with 'auto-cpu' replaced by the CPU runtimes for this machine (each chain once, in order)."""
    out: list[str] = []
    for chain in chains:
        for c in auto_cpu_chains(native_bf16) if chain == AUTO_CPU else [chain]:
            if c not in out:
                out.append(c)
    return out


@dataclass
class Stage:
    """One step of a chain: its name and the argument overrides written after ':'."""

    name: str
    overrides: dict[str, Any]

    @property
    def label(self) -> str:
        if not self.overrides:
            return self.name
        return self.name + ":" + ",".join(f"{k}={v}" for k, v in self.overrides.items())


def parse_chain(spec: str) -> list[Stage]:
    """Parse 'prune:ffn_keep_fraction=0.5>recover>int8' into stages, checking names and their order."""
    stages = []
    for part in spec.split(">"):
        name, _, options = part.strip().partition(":")
        name = name.strip()
        if name not in STAGE_ORDER:
            raise ValueError(
                f"chain {spec!r}: unknown stage {name!r}. Stages are {list(STAGE_ORDER)}, joined by '>', "
                "e.g. 'prune>recover>lowrank>int8'."
            )
        overrides = {}
        for item in filter(None, (s.strip() for s in options.split(","))):
            key, eq, value = item.partition("=")
            if not eq or not key.strip():
                raise ValueError(f"chain {spec!r}: cannot parse {item!r}; write overrides as key=value.")
            overrides[key.strip()] = yaml.safe_load(value.strip())
        stages.append(Stage(name, overrides))
    for before, after in zip(stages, stages[1:]):
        if before.name in _FINAL_STAGES:
            raise ValueError(
                f"chain {spec!r}: {before.name} must be the last stage (a quantized model is not trained, "
                "pruned, factorized or quantized further)."
            )
        if STAGE_ORDER[after.name] < STAGE_ORDER[before.name] and after.name != "recover":
            raise ValueError(
                f"chain {spec!r}: {after.name} cannot follow {before.name}; the order is prune > recover > "
                "lowrank and trim_vocab (either order) > int8/nf4/cpu_int8/bf16/openvino/openvino_int8 (recover may also "
                "follow lowrank or "
                "trim_vocab)."
            )
    return stages


def stage_args(base: Any, stage: Stage) -> Any:
    """A copy of the stage's argument dataclass with the chain's overrides applied (validated again)."""
    names = {f.name for f in dataclasses.fields(base)}
    unknown = sorted(set(stage.overrides) - names)
    if unknown:
        raise ValueError(
            f"stage {stage.label!r}: {type(base).__name__} has no field(s) {unknown}; "
            f"fields are {sorted(names)}."
        )
    overrides = dict(stage.overrides)
    # rank and energy are alternatives: a stage that names one replaces the other given in the config.
    for one, other in (("rank", "energy"), ("energy", "rank")):
        if one in overrides and other in names and other not in overrides:
            overrides[other] = None
    return dataclasses.replace(base, **overrides)


def _slug(stages: list[Stage]) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", "-".join(s.label for s in stages))


def load_classifier_folder(folder: str) -> tuple[PreTrainedModel, object]:
    """(model, tokenizer) of any folder the pipeline writes: dense, low-rank, bitsandbytes or CPU int8, in eval mode."""
    model, tokenizer = load_model(folder, task=TaskKind.TEXT_CLASSIFICATION)
    return model.eval(), tokenizer


def sparsity_masks(model: PreTrainedModel) -> dict[str, torch.Tensor]:
    """Zero patterns of the prunable Linear weights that are at least 1% sparse (to keep during recovery)."""
    masks = {}
    for name, linear in prunable_linears(model).items():
        mask = linear.weight != 0
        if mask.float().mean() < 0.99:
            masks[name] = mask
    return masks


def hold_masks(model: PreTrainedModel, masks: dict[str, torch.Tensor]) -> None:
    """Keep pruned weights at zero while training (torch.nn.utils.prune re-applies the mask every forward)."""
    modules = dict(model.named_modules())
    for name, mask in masks.items():
        torch_prune.custom_from_mask(modules[name], "weight", mask)


def release_masks(model: PreTrainedModel, masks: dict[str, torch.Tensor]) -> None:
    """Make held masks permanent, so the state dict has plain `weight` tensors again."""
    modules = dict(model.named_modules())
    for name in masks:
        torch_prune.remove(modules[name], "weight")


@dataclass
class VariantResult:
    """One measured model of the report."""

    name: str
    chain: str
    folder: str
    parameters: int
    nonzero_parameters: int
    size_mb: float
    memory_mb: float
    accuracy: float
    f1: float
    latency_ms: float
    extra: dict[str, Any] = field(default_factory=dict)


def _nonzero(model: torch.nn.Module) -> int:
    return sum(int(torch.count_nonzero(p)) for p in model.parameters() if p.dtype.is_floating_point)


def measure_variant(
    name: str,
    chain: str,
    model: PreTrainedModel,
    tokenizer,
    folder: str,
    raw_eval: Dataset,
    text_column: str,
    text_pair_column: str | None,
    max_length: int | None,
    args: CompressArguments,
    parameters: int | None = None,
) -> VariantResult:
    """Accuracy/F1 on raw_eval, parameters, size of `folder` and memory of one model (latency: see time_all)."""
    metrics = evaluate_classifier(model, tokenizer, raw_eval, text_column, text_pair_column, max_length)
    # num_parameters counts a 4-bit weight as the float weights it packs (two per stored byte).
    total = model.num_parameters()
    return VariantResult(
        name=name,
        chain=chain,
        folder=folder,
        parameters=parameters if parameters is not None else total,
        nonzero_parameters=_nonzero(model) if parameters is None else parameters,
        size_mb=size_on_disk_mb(folder),
        memory_mb=memory_footprint_mb(model),
        accuracy=metrics["accuracy"],
        f1=metrics.get("f1", metrics.get("f1_macro", float("nan"))),
        latency_ms=float("nan"),  # filled by time_all, with every model timed in the same rounds
    )


def time_all(
    results: list[VariantResult], texts: list[str], args: CompressArguments, max_length: int = 128
) -> None:
    """Reload every measured model and time them together, round-robin, filling in latency_ms."""
    models = {r.name: load_classifier_folder(r.folder) for r in results}
    ms = measure_latencies_together(models, texts, args.latency_batch_size, args.latency_repeats, max_length)
    for r in results:
        r.latency_ms = ms[r.name]


# (model, output folder, the model's tokenizer) -> the recovered model. The tokenizer is the trimmed one after
# a trim_vocab stage: the training data must be tokenized with it.
RecoverFn = Callable[[PreTrainedModel, str, Any], PreTrainedModel]
# split name ('train' or 'validation') -> the texts of that split, for vocabulary trimming.
CorpusFn = Callable[[str], list[str]]
# () -> the training rows (a text, or a pair's two texts): what openvino_int8 calibrates on, never validation.
TrainRowsFn = Callable[[], list[Row]]


def _trim(model: PreTrainedModel, tokenizer, args: TrimVocabArguments, corpus: CorpusFn):
    """Trim the vocabulary to the configured corpus; extra report fields say how often validation falls back."""
    texts = [t for split in CORPUS_SPLITS[args.trim_corpus] for t in corpus(split)]
    if args.trim_corpus == ORACLE_CORPUS:
        logger.warning(
            "trim_vocab: trim_corpus=%s keeps the validation text's tokens, so validation scores this model on "
            "text its vocabulary was built from (an oracle for analysis, not a model to ship).",
            ORACLE_CORPUS,
        )
    model, trimmed, result = trim_vocabulary(
        model, tokenizer, texts, args.trim_min_frequency, args.trim_keep_characters
    )
    # Measured with the parent's tokenizer: which validation tokens the kept vocabulary does not hold.
    extra = {
        "vocab_size": result.vocab_size,
        "original_vocab_size": result.original_vocab_size,
        "vocabulary_read_validation": args.trim_corpus == ORACLE_CORPUS,
    }
    extra.update(oov_rates(tokenizer, result.kept_ids, corpus("validation")))
    logger.info(
        "trim_vocab: %d -> %d tokens; validation rows with a token outside: %.2f%%, tokens: %.3f%%",
        result.original_vocab_size, result.vocab_size, 100 * extra["oov_row_fraction"],
        100 * extra["oov_token_fraction"],
    )  # fmt: skip
    return model, trimmed, extra


def run_chains(
    args: CompressArguments,
    tokenizer,
    output_dir: str,
    measure: Callable[[str, str, PreTrainedModel, str, int | None, Any], VariantResult],
    prune_args: PruneArguments,
    lowrank_args: LowRankArguments,
    quantize_args: QuantizeArguments,
    recover: RecoverFn | None = None,
    calibration: Callable[[], list[dict[str, torch.Tensor]]] | None = None,
    root_parameters: int | None = None,
    trim_args: TrimVocabArguments | None = None,
    corpus: CorpusFn | None = None,
    cpu_int8_args: CpuInt8Arguments | None = None,
    openvino_args: OpenVinoArguments | None = None,
    train_rows: TrainRowsFn | None = None,
) -> list[VariantResult]:
    """Run every chain from the input model, sharing common prefixes; save, reload and measure each stage.

    `measure(name, chain, model, folder, parameters, tokenizer)` measures one reloaded stage with its own
    tokenizer; `parameters` is the float parent's count for quantized stages (bitsandbytes packs 4-bit
    weights; an ONNX Runtime graph has no torch parameters) and None otherwise. `corpus(split)` gives the texts a trim_vocab stage keeps the tokens of; `train_rows()` the training rows
    openvino_int8 calibrates on.
    """
    # prefix -> (folder, parameter count of the model saved there, its tokenizer)
    done: dict[str, tuple[str, int | None, Any]] = {"": (args.model_name_or_path, root_parameters, tokenizer)}
    results: list[VariantResult] = []
    for spec in args.chains:
        stages = parse_chain(spec)
        for i in range(len(stages)):
            prefix = _slug(stages[: i + 1])
            if prefix in done:
                continue
            parent_folder, parent_params, tokenizer = done[_slug(stages[:i]) if i else ""]
            stage = stages[i]
            extra: dict[str, Any] = {}
            folder = os.path.join(output_dir, prefix)
            logger.info("stage %s: %s -> %s", stage.label, parent_folder, folder)
            chain = ">".join(s.label for s in stages[: i + 1])
            if stage.name in _QUANT_STAGES:
                q = stage_args(quantize_args, stage)
                q = dataclasses.replace(q, bits=_QUANT_STAGES[stage.name])
                model = load_quantized(parent_folder, q, task=TaskKind.TEXT_CLASSIFICATION)
                save_quantized(model, tokenizer, folder)
                model, _ = load_classifier_folder(folder)  # measure what users reload
                results.append(measure(prefix, chain, model, folder, parent_params, tokenizer))
            elif stage.name == "cpu_int8":
                export_cpu_int8(
                    parent_folder, folder, stage_args(cpu_int8_args or CpuInt8Arguments(), stage), tokenizer
                )
                model, _ = load_classifier_folder(
                    folder
                )  # measured as reloaded, like the bitsandbytes stages
                results.append(measure(prefix, chain, model, folder, parent_params, tokenizer))
            elif stage.name == "bf16":
                if stage.overrides:
                    raise ValueError(f"stage {stage.label!r}: bf16 takes no settings.")
                export_bf16(parent_folder, folder, tokenizer)
                model, _ = load_classifier_folder(folder)  # reloaded in bfloat16 from its config
                results.append(measure(prefix, chain, model, folder, None, tokenizer))
            elif stage.name in _OPENVINO_STAGES:
                int8 = _OPENVINO_STAGES[stage.name]
                if int8 and train_rows is None:
                    raise UserInputError(
                        "an 'openvino_int8' stage needs training rows to calibrate on (use recipes/compress.py, "
                        "or pass train_rows= to run_chains)."
                    )
                ov_args = stage_args(openvino_args or OpenVinoArguments(), stage)
                rows = train_rows() if int8 else None
                export_openvino(parent_folder, folder, ov_args, tokenizer, int8=int8, calibration_rows=rows)
                model, _ = load_classifier_folder(folder)
                results.append(measure(prefix, chain, model, folder, parent_params, tokenizer))
                # What OpenVINO chose on this CPU: bf16 where it has AMX / AVX512-BF16, f32 elsewhere.
                extra["openvino_precision"] = model.compiled.get_property(
                    "INFERENCE_PRECISION_HINT"
                ).to_string()
                if int8:
                    extra["calibration_rows"] = min(ov_args.openvino_calibration_rows, len(rows))
            else:
                model, _ = load_classifier_folder(parent_folder)
                if stage.name == "prune":
                    p = stage_args(prune_args, stage)
                    batches = calibration() if p.method == "structured" and p.importance == "taylor" else None
                    model = prune(model, p, batches)
                    model.save_pretrained(folder)
                elif stage.name == "lowrank":
                    ranks = factorize_model(model, stage_args(lowrank_args, stage))
                    if not ranks:
                        raise ValueError(
                            f"stage {stage.label!r} factorized no layer (no rank removes parameters): "
                            "lower rank/energy or set only_if_smaller: false."
                        )
                    save_lowrank(model, None, folder)
                elif stage.name == "trim_vocab":
                    if corpus is None:
                        raise UserInputError(
                            "a 'trim_vocab' stage needs the training text to keep the tokens of "
                            "(use recipes/compress.py, or pass corpus= to run_chains)."
                        )
                    t = stage_args(trim_args or TrimVocabArguments(), stage)
                    model, tokenizer, extra = _trim(model, tokenizer, t, corpus)
                    model.save_pretrained(folder)
                else:  # recover
                    if recover is None:
                        raise ValueError(
                            "a 'recover' stage needs training arguments and data (use recipes/compress.py)."
                        )
                    if stage.overrides:
                        raise ValueError(
                            f"stage {stage.label!r}: recover takes its settings from the training arguments "
                            "(num_train_epochs, learning_rate, ...), not from the chain."
                        )
                    masks = sparsity_masks(model)
                    hold_masks(model, masks)
                    model = recover(model, folder, tokenizer)
                    release_masks(model, masks)
                    model.save_pretrained(folder)  # over the trainer's save: plain weights, masks applied
                tokenizer.save_pretrained(folder)
                model, tokenizer = load_classifier_folder(folder)
                results.append(measure(prefix, chain, model, folder, None, tokenizer))
            results[-1].extra.update(extra)
            params = results[-1].parameters
            done[prefix] = (folder, params, tokenizer)
            del model
    return results


def report_rows(results: list[VariantResult], reference: str = "student") -> list[dict[str, Any]]:
    """Results as dicts with speed-up and accuracy change relative to the `reference` row."""
    ref = next((r for r in results if r.name == reference), results[0])
    rows = []
    for r in results:
        row = dataclasses.asdict(r)
        row["speedup"] = ref.latency_ms / r.latency_ms
        row["accuracy_delta_points"] = 100 * (r.accuracy - ref.accuracy)
        row["size_ratio"] = r.size_mb / ref.size_mb if ref.size_mb else float("nan")
        rows.append(row)
    return rows


def recommend_cpu(
    rows: list[dict[str, Any]], candidates: list[str], max_loss_points: float, reference: str = "student"
) -> dict[str, Any]:
    """The fastest row among the reference (float32) and the candidates whose accuracy is within the loss."""
    ref = next(r for r in rows if r["name"] == reference)
    eligible = [
        r
        for r in rows
        if r["name"] in (reference, *candidates)
        and 100 * (ref["accuracy"] - r["accuracy"]) <= max_loss_points
    ]
    return min(eligible, key=lambda r: r["latency_ms"])  # the reference itself always qualifies


def cpu_recommendation_markdown(
    rows: list[dict[str, Any]],
    candidates: list[str],
    max_loss_points: float,
    batch_size: int,
    reference: str = "student",
) -> str:
    """The CPU runtimes side by side and the recommended one, as Markdown."""
    best = recommend_cpu(rows, candidates, max_loss_points, reference)
    ref = next(r for r in rows if r["name"] == reference)
    table = []
    for r in [ref] + [r for r in rows if r["name"] in candidates]:
        loss = 100 * (ref["accuracy"] - r["accuracy"])
        table.append([
            "float32 (torch)" if r is ref else r["name"], f"{100 * r['accuracy']:.2f}",
            f"{100 * (r['accuracy'] - ref['accuracy']):+.2f}",
            f"{r['latency_ms']:.1f}", f"{ref['latency_ms'] / r['latency_ms']:.2f}x",
            "yes" if loss <= max_loss_points else "no", "**recommended**" if r is best else "",
        ])  # fmt: skip
    header = [
        "runtime",
        "accuracy %",
        "Δ points",
        f"ms / batch of {batch_size}",
        "speed-up",
        "within loss",
        "",
    ]
    name = "float32 (torch)" if best is ref else best["name"]
    return (
        f"Recommended CPU runtime on this machine: **{name}**, the fastest at batch {batch_size} whose validation "
        f"accuracy is within {max_loss_points:g} points of float32 ({best['latency_ms']:.1f} ms per batch, "
        f"{100 * (best['accuracy'] - ref['accuracy']):+.2f} points).\n\n"
        + markdown_table(table, header)
        + "\n"
    )


def format_report(rows: list[dict[str, Any]]) -> str:
    """The report rows as a plain-text table for the terminal (hfkit.reports renders every report)."""
    return format_compression_table(rows)


def markdown_report(rows: list[dict[str, Any]]) -> str:
    """The report rows as a Markdown table."""
    table = compression_table(rows)
    return markdown_table(table.rows, table.header)


def plot_report(rows: list[dict[str, Any]], path: str) -> None:
    """A PNG with accuracy against size on disk and the CPU latency of every model."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers
    import matplotlib.pyplot as plt

    names = [r["name"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    for r in rows:
        left.scatter(r["size_mb"], 100 * r["accuracy"], s=40)
        left.annotate(r["name"], (r["size_mb"], 100 * r["accuracy"]), fontsize=7, xytext=(4, 2),
                      textcoords="offset points")  # fmt: skip
    left.set_xlabel("size on disk (MB)")
    left.set_ylabel("validation accuracy (%)")
    left.set_title("accuracy vs size")
    left.grid(alpha=0.3)
    right.barh(names, [r["latency_ms"] for r in rows], color="tab:orange")
    right.invert_yaxis()
    right.set_xlabel("CPU ms per batch")
    right.set_title("latency")
    right.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(
    rows: list[dict[str, Any]],
    output_dir: str,
    settings: dict[str, Any],
    validation_examples: int,
    model: str = "",
    data: str | None = None,
) -> dict[str, str]:
    """Write compression_report.{json,md,png} to output_dir; return their paths."""
    os.makedirs(output_dir, exist_ok=True)
    png = os.path.join(output_dir, "compression_report.png")
    plot_report(rows, png)
    latency = settings.get("CompressArguments", {})
    report = compression_report(
        rows, model or settings.get("CompressArguments", {}).get("model_name_or_path", ""), data,
        validation_examples, settings, latency.get("latency_batch_size", 0), latency.get("latency_repeats", 0), png,
    )  # fmt: skip
    return {**report.save(output_dir), "png": png}


def settings_dict(*dataclass_objects: Any) -> dict[str, Any]:
    """The pipeline's argument dataclasses as a JSON-friendly dict (no tokens: hub_token is dropped)."""
    out = {}
    for obj in dataclass_objects:
        values = {}
        for f in dataclasses.fields(obj):
            if "token" in f.name:
                continue
            value = getattr(obj, f.name)
            values[f.name] = (
                value if isinstance(value, (int, float, str, bool, list, type(None))) else str(value)
            )
        out[type(obj).__name__] = values
    return out
