"""Every report hfkit prints or writes: the records, the measurements behind them, and their rendering.

A `Report` holds a title (the model that was trained and the data it was scored on), tables and a JSON
payload; it renders as a text table for the terminal and as Markdown, and `save` writes both
`<name>.md` and `<name>.json` to the run's output_dir. Quality metrics are shown in percent everywhere;
the JSON keeps the raw fractions. Latencies are always measured together: every model of a report is
timed round-robin over several rounds (`torch.utils.benchmark.Timer`), and the median is reported, so
the ratios between models hold on a busy machine.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from datasets import Dataset
from torch.utils import benchmark
from transformers import PreTrainedModel

from .data import tokenize_dataset
from .metrics import classification_metrics
from .modeling import count_parameters
from .teacher_cache import classifier_logits

# Metrics that are fractions of examples: shown in percent. Others (loss, perplexity) are shown as numbers.
PERCENT_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc")

# ------------------------------------------------------------------------------------------ formatting


def percent(value: float | None) -> str:
    """A fraction as a percentage with two decimals ('88.70%'); '-' for a missing value."""
    return "-" if value is None else f"{100 * value:.2f}%"


def is_percent_metric(name: str) -> bool:
    """Whether a metric name (with or without an eval_ prefix or _macro suffix) is a fraction of examples."""
    base = name.removeprefix("eval_").removeprefix("test_")
    return any(base == m or base.startswith(m + "_") for m in PERCENT_METRICS)


def format_metric(name: str, value: Any) -> str:
    """A metric value as the reports show it: percent for fractions of examples, a plain number otherwise."""
    if isinstance(value, float) and is_percent_metric(name):
        return percent(value)
    return _cell(value)


def _cell(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "-" if value is None else str(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return str(value)
        if value == 0 or 1e-3 <= abs(value) < 1e4:
            return f"{value:.4f}".rstrip("0").rstrip(".")  # 0.3, 0.2871: four decimals at most
        return f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def format_table(rows: Sequence[Sequence[Any]], header: Sequence[str] | None = None) -> str:
    """Align rows of cells into a text table: the first column left-aligned, the others right-aligned."""
    cells = [[_cell(c) for c in row] for row in rows]
    if header is not None:
        cells.insert(0, [str(h) for h in header])
    if not cells:
        return ""
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    lines = []
    for n, row in enumerate(cells):
        lines.append(
            "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
        )
        if n == 0 and header is not None:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def markdown_table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    """The same cells as `format_table`, as a Markdown table (pipes inside cells escaped)."""
    lines = ["| " + " | ".join(str(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- records


@dataclass
class Table:
    """One table of a report: a header, rows of cells (already formatted or plain numbers), a caption."""

    header: list[str]
    rows: list[list[Any]]
    caption: str = ""


@dataclass
class Report:
    """A report: its title, its tables and notes, and the JSON payload written next to the Markdown."""

    name: str  # file stem in output_dir: <name>.json and <name>.md
    title: str
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    appendix: list[str] = field(
        default_factory=list
    )  # Markdown only (settings, charts): not for the terminal

    def text(self) -> str:
        """The report for the terminal: title, then each table under its caption, then the notes."""
        parts = [self.title]
        for table in self.tables:
            parts += (
                [""] + ([table.caption] if table.caption else []) + [format_table(table.rows, table.header)]
            )
        if self.notes:
            parts += [""] + self.notes
        return "\n".join(parts)

    def markdown(self) -> str:
        """The report as a Markdown document."""
        parts = [f"# {self.title}"]
        for table in self.tables:
            parts += (
                [""]
                + ([table.caption, ""] if table.caption else [])
                + [markdown_table(table.rows, table.header)]
            )
        if self.notes:
            parts += [""] + self.notes
        if self.appendix:
            parts += [""] + self.appendix
        return "\n".join(parts) + "\n"

    def save(self, output_dir: str) -> dict[str, str]:
        """Write `<name>.json` (the payload plus the title) and `<name>.md` to output_dir; return their paths."""
        os.makedirs(output_dir, exist_ok=True)
        paths = {ext: os.path.join(output_dir, f"{self.name}.{ext}") for ext in ("json", "md")}
        with open(paths["json"], "w") as f:
            json.dump({"title": self.title, **self.data}, f, indent=2, default=str)
        with open(paths["md"], "w") as f:
            f.write(self.markdown())
        return paths


def report_stem(file_name: str) -> str:
    """The file stem of a report file name ('eval_report.json' -> 'eval_report')."""
    return os.path.splitext(os.path.basename(file_name))[0]


def validation_source(data_args: Any) -> str | None:
    """Where a recipe's validation rows come from: the file, the Hub dataset, or the split of train_file."""
    if getattr(data_args, "validation_file", None):
        return data_args.validation_file
    train = getattr(data_args, "train_file", None) or getattr(data_args, "dataset_name", None)
    if train and getattr(data_args, "dataset_name", None) and not getattr(data_args, "train_file", None):
        return f"{train} (its validation split, or a held-out share of train)"
    return f"a held-out share of {train}" if train else None


def describe_data(path_or_name: str | None, examples: int) -> str:
    """'<file or dataset> (N examples)', the data part of a report's title."""
    return f"{path_or_name} ({examples:,} examples)" if path_or_name else f"{examples:,} examples"


# ---------------------------------------------------------------------------------- classification


def format_confusion_matrix(matrix: Sequence[Sequence[int]], labels: Sequence[str]) -> str:
    """Confusion matrix as a text table: rows are true labels, columns predicted labels."""
    table = confusion_table(matrix, labels)
    return format_table(table.rows, table.header)


def confusion_table(matrix: Sequence[Sequence[int]], labels: Sequence[str]) -> Table:
    """Confusion matrix as a report table: rows are true labels, columns predicted labels."""
    rows = [[f"true {name}", *counts] for name, counts in zip(labels, matrix)]
    return Table(["", *[f"pred {name}" for name in labels]], rows)


# Trainer metrics that describe the run, not the model, and the macro precision/recall (macro F1 stays):
# left out of the printed table, kept in the JSON.
_RUN_METRICS = (
    "runtime",
    "samples_per_second",
    "steps_per_second",
    "epoch",
    "precision_macro",
    "recall_macro",
)


def classification_report(
    metrics: Mapping[str, float],
    confusion_matrix: Sequence[Sequence[int]],
    labels: Sequence[str],
    num_examples: int,
    model: str,
    base_model: str | None = None,
    data: str | None = None,
    parameters: Mapping[str, int] | None = None,
    name: str = "eval_report",
    precision: str | None = None,
) -> Report:
    """The evaluation report of one trained classifier: metrics (percent), confusion matrix, parameters;
    `precision` (the dtype it was scored in) goes into the title."""
    metrics = {k.removeprefix("eval_"): v for k, v in metrics.items()}
    shown = [[k, format_metric(k, v)] for k, v in metrics.items() if k not in _RUN_METRICS]
    title = f"Evaluation report: {model}"
    if base_model and base_model != model:
        title += f" (fine-tuned from {base_model})"
    title += f" on {describe_data(data, num_examples)}"
    if precision:
        title += f", scored in {precision} as saved"
    appendix = []  # the run's log already says it: Markdown only
    if parameters:
        appendix.append(f"parameters: {parameters['total']:,} total, {parameters['trainable']:,} trainable")
    return Report(
        name=name,
        title=title,
        tables=[Table(["metric", "value"], shown), confusion_table(confusion_matrix, labels)],
        appendix=appendix,
        data={
            "model": base_model or model,  # the base model: what a model card names as base_model
            "trained_model": model,
            "data": data,
            "num_examples": num_examples,
            "labels": list(labels),
            "metrics": dict(metrics),
            "confusion_matrix": [list(map(int, row)) for row in confusion_matrix],
            "parameters": dict(parameters or {}),
            "precision": precision,
        },
    )


def format_classification_report(report: dict) -> str:
    """The text form of a saved eval_report.json (as written by `classification_report`)."""
    return classification_report(
        report["metrics"], report["confusion_matrix"], report["labels"], report["num_examples"],
        report.get("trained_model") or report.get("model", ""), report.get("model"), report.get("data"),
        report.get("parameters"),
    ).text()  # fmt: skip


# ------------------------------------------------------------------------------ measuring classifiers


def predict_logits(model: PreTrainedModel, tokenizer, dataset: Dataset, batch_size: int = 128) -> np.ndarray:
    """Logits of `model` over a tokenized dataset, in row order, batches padded dynamically."""
    return classifier_logits(model, dataset, tokenizer, batch_size, desc="predicting").numpy()


def evaluate_classifier(
    model: PreTrainedModel,
    tokenizer,
    raw: Dataset,
    text_column: str,
    text_pair_column: str | None = None,
    max_length: int | None = 128,
    batch_size: int = 128,
) -> dict[str, float]:
    """Classification metrics of `model` on raw text, tokenized with the model's own tokenizer."""
    data = tokenize_dataset(raw, tokenizer, text_column, text_pair_column, max_length)
    logits = predict_logits(model, tokenizer, data, batch_size)
    return classification_metrics(logits, np.asarray(data["labels"]))


def _forward_batch(model: PreTrainedModel, tokenizer, texts: list[str], batch_size: int, max_length: int):
    """One padded batch of `texts`, on the model's device, holding only the inputs its forward accepts."""
    # A model without torch parameters (hfkit.io.OnnxClassifier) runs on the CPU.
    device = next(model.parameters(), torch.zeros(0)).device
    batch = tokenizer(
        texts[:batch_size], padding=True, truncation=True, max_length=max_length, return_tensors="pt"
    )
    accepted = set(inspect.signature(model.forward).parameters)
    return {k: v.to(device) for k, v in batch.items() if k in accepted}


@torch.inference_mode()
def measure_latencies_together(
    models: Mapping[str, tuple[PreTrainedModel, object]],
    texts: list[str],
    batch_size: int = 32,
    rounds: int = 15,
    max_length: int = 128,
) -> dict[str, float]:
    """Median ms per batch of each model, timed round-robin: one timed forward of each model per round.

    Interleaving makes every model see the same machine state, so the ratios between them hold on a busy
    machine, where timing one model after another would not. Each round's measurement is a
    `torch.utils.benchmark.Timer` (CUDA-synchronised, on the process's thread count), whose own warm-up
    passes also put every model on an equal footing (caches, bitsandbytes' CPU weight repacking).
    """
    timers = {}
    for name, (model, tokenizer) in models.items():
        model.eval()
        timers[name] = benchmark.Timer(
            stmt="model(**batch)",
            globals={
                "model": model,
                "batch": _forward_batch(model, tokenizer, texts, batch_size, max_length),
            },
            num_threads=torch.get_num_threads(),
            label=name,
        )
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(rounds):
        for name, timer in timers.items():
            times[name].append(timer.timeit(number=1).median * 1000)
    return {name: statistics.median(t) for name, t in times.items()}


def size_on_disk_mb(folder: str) -> float:
    """Total size of the weight files (safetensors/bin, or an ONNX graph) in a saved model folder, in MB."""
    # Trainer's training_args.bin (its settings, torch-serialized) ends in .bin too but holds no weights.
    total = sum(
        os.path.getsize(os.path.join(folder, f))
        for f in os.listdir(folder)
        if f.endswith((".safetensors", ".bin", ".onnx"))
        and not f.startswith("distill_projections")
        and f != "training_args.bin"
    )
    return total / 1e6


@dataclass
class ModelMeasurement:
    """One row of a side-by-side report."""

    name: str
    parameters: int
    size_mb: float
    accuracy: float
    f1: float
    latency_ms: float
    speedup: float = 1.0


def measure_classifiers(
    models: Mapping[str, tuple[PreTrainedModel, object, str]],
    raw_eval: Dataset,
    text_column: str,
    text_pair_column: str | None = None,
    max_length: int | None = 128,
    latency_batch_size: int = 32,
    rounds: int = 15,
    known_metrics: Mapping[str, Mapping[str, float] | None] | None = None,
) -> list[ModelMeasurement]:
    """Measure saved classifiers side by side: parameters, size of their folder, accuracy/F1, latency.

    `models` maps a name to (model, tokenizer, folder). A model whose metrics on raw_eval are already known
    (`known_metrics[name]`, e.g. the trainer's last evaluation) is not scored again. Latencies are timed
    together, round-robin; the speed-up is relative to the first model.
    """
    known_metrics = known_metrics or {}
    rows = []
    for name, (model, tokenizer, folder) in models.items():
        metrics = known_metrics.get(name) or evaluate_classifier(
            model, tokenizer, raw_eval, text_column, text_pair_column, max_length
        )
        metrics = {k.removeprefix("eval_"): v for k, v in metrics.items()}
        rows.append(
            ModelMeasurement(
                name=name,
                parameters=count_parameters(model)[0],
                size_mb=size_on_disk_mb(folder) if os.path.isdir(folder) else float("nan"),
                accuracy=metrics["accuracy"],
                f1=metrics.get("f1", metrics.get("f1_macro", float("nan"))),
                latency_ms=float("nan"),
            )
        )
    texts = list(raw_eval[text_column][: max(latency_batch_size, 1)])
    ms = measure_latencies_together(
        {n: (m, t) for n, (m, t, _) in models.items()}, texts, latency_batch_size, rounds, max_length or 128
    )
    for row in rows:
        row.latency_ms = ms[row.name]
        row.speedup = rows[0].latency_ms / row.latency_ms
    return rows


COMPARISON_HEADER = ["model", "parameters", "size MB", "accuracy", "F1", "ms/batch", "speed-up"]


def comparison_table(rows: Sequence[ModelMeasurement], caption: str = "") -> Table:
    """Measured models as a report table: accuracy and F1 in percent, latency and speed-up."""
    return Table(
        COMPARISON_HEADER,
        [
            [
                r.name,
                r.parameters,
                f"{r.size_mb:.1f}",
                percent(r.accuracy),
                percent(r.f1),
                f"{r.latency_ms:.1f}",
                f"{r.speedup:.2f}x",
            ]
            for r in rows
        ],  # fmt: skip
        caption,
    )


def distill_report(
    rows: Sequence[ModelMeasurement],
    student: str,
    teacher: str | list[str],
    data: str | None,
    num_examples: int,
    temperature: float | None = None,
    alpha: float | None = None,
    latency_batch_size: int = 32,
    rounds: int = 15,
) -> Report:
    """Teacher(s) vs student: parameters, size, accuracy/F1 on the validation data, latency timed together."""
    caption = (
        f"Latency: median ms per batch of {latency_batch_size} over {rounds} rounds, both models timed "
        f"round-robin on {_device_name(rows)}; speed-up relative to the teacher."
    )
    return Report(
        name="distill_report",
        title=f"Distilled student {student} vs {_teachers_text(teacher)} on {describe_data(data, num_examples)}",
        tables=[comparison_table(rows, caption)],
        data={
            "student": student,
            "teacher": teacher,  # read by hfkit.hub.card for the model card; a list for several teachers
            "data": data,
            "validation_examples": num_examples,
            "temperature": temperature,
            "alpha": alpha,
            "latency": {"batch_size": latency_batch_size, "rounds": rounds, "statistic": "median"},
            "models": [asdict(r) for r in rows],
        },
    )


def _teachers_text(teacher: str | list[str]) -> str:
    if isinstance(teacher, str):
        return f"teacher {teacher}"
    return "teachers " + " + ".join(teacher)


def _device_name(rows: Sequence[ModelMeasurement]) -> str:
    return "GPU" if torch.cuda.is_available() else "CPU"


def comparison_report(rows: list[ModelMeasurement]) -> tuple[list[dict], str]:
    """Rows with speed-ups relative to the first (the reference), as dicts and as a printable table."""
    for row in rows:
        row.speedup = rows[0].latency_ms / row.latency_ms
    table = comparison_table(rows)
    return [asdict(r) for r in rows], format_table(table.rows, table.header)


# ------------------------------------------------------------------------------- compare (McNemar)


def compare_report(
    rows: Sequence[Mapping[str, Any]],
    data: str | None,
    num_examples: int,
    groups: Sequence[Mapping[str, Any]] = (),
) -> Report:
    """Saved classifiers on the same rows: accuracy, macro F1 and McNemar's test of each against the first (or,
    with groups, against the first group's model of the same seed); then each group's mean over its seeds and
    the paired tests of `hfkit.metrics.paired_comparison` against the first group."""
    baseline = rows[0]["name"] if not groups else f"group {groups[0]['group']}"
    table = Table(
        [
            "model",
            "accuracy",
            "macro F1",
            f"only {rows[0]['name'] if not groups else 'same seed of the baseline'} right",
            "only this right",
            "p (McNemar)",
        ],
        [
            [
                r["name"],
                percent(r["accuracy"]),
                percent(r["f1"]),
                r.get("baseline_only", "-"),
                r.get("model_only", "-"),
                f"{r['p_value']:.2g}" if "p_value" in r else "-",
            ]
            for r in rows
        ],
    )
    tables = [table]
    if groups:
        group_rows = []
        for g in groups:
            accuracies = 100 * np.asarray(g["accuracies"], dtype=float)
            std = f"{accuracies.std(ddof=1):.2f}" if len(accuracies) > 1 else "-"
            cells = [g["group"], len(accuracies), f"{accuracies.mean():.2f}", std, "-", "-", "-", "-"]
            if "tests" in g:
                t = g["tests"]
                boot, t_p = t["bootstrap"], t["t_test"]["p_value"]
                cells[4:] = [
                    f"{100 * t['difference']:+.2f}",
                    "; ".join(f"{m['b_only']}/{m['a_only']} p {m['p_value']:.2g}" for m in t["mcnemar"]),
                    "-" if math.isnan(t_p) else f"{t_p:.2g}",
                    f"[{100 * boot['ci_low']:+.2f}, {100 * boot['ci_high']:+.2f}] p {boot['p_value']:.2g}",
                ]
            group_rows.append(cells)
        tables.append(
            Table(
                [
                    "group",
                    "seeds",
                    "mean accuracy (%)",
                    "std",
                    "vs first group (points)",
                    "McNemar per seed",
                    "paired t p",
                    "bootstrap 95% CI, p",
                ],
                group_rows,
                caption="Groups (seeds paired by position): McNemar per seed (rows only this group's model / only "
                "the baseline's gets right, exact p), paired t over the seeds' accuracies, paired bootstrap over "
                "rows of the seed-averaged correctness.",
            )  # fmt: skip
        )
    return Report(
        name="compare_report",
        title=f"Comparison on {describe_data(data, num_examples)}; baseline: {baseline}",
        tables=tables,
        data={
            "data": data,
            "validation_rows": num_examples,
            "models": [dict(r) for r in rows],
            **({"groups": [dict(g) for g in groups]} if groups else {}),
        },
    )


# ------------------------------------------------------------------------------------------ causal LM


def clm_report(
    model: str,
    base_model: str,
    data: str | None,
    eval_examples: int,
    eval_tokens: int | None,
    before: Mapping[str, float],
    after: Mapping[str, float],
    teacher: Mapping[str, float] | None = None,
    details: Mapping[str, Any] | None = None,
) -> Report:
    """Held-out loss and perplexity of a causal LM before and after training (and of its teacher)."""
    rows = [
        ["model before training", before["loss"], before["perplexity"]],
        ["model after training", after["loss"], after["perplexity"]],
    ]
    if teacher:
        rows.insert(0, ["teacher", teacher["loss"], teacher["perplexity"]])
    tables = [Table(["", "loss", "perplexity"], rows)]
    samples = (details or {}).get("samples")
    if samples:
        tables.append(
            Table(
                ["student's samples", "teacher NLL / token", "student NLL / token", "tokens"],
                [[when, s["teacher_nll"], s["student_nll"], s["tokens"]] for when, s in samples.items()],
                "The student continues held-out prompts (sampled, seeded; the same prompts before and after): how "
                "likely the teacher finds those tokens, the quantity on-policy distillation lowers.",
            )
        )
    tokens = f", {eval_tokens:,} tokens" if eval_tokens else ""
    return Report(
        name="clm_report",
        title=f"Held-out perplexity of {model} (from {base_model}) on {describe_data(data, eval_examples)}{tokens}",
        tables=tables,
        data={
            "model": base_model,
            "trained_model": model,
            "data": data,
            **dict(details or {}),
            "eval_examples": eval_examples,
            "eval_tokens": eval_tokens,
            "eval_loss": {"before": before["loss"], "after": after["loss"]},
            "perplexity": {
                "teacher": teacher["perplexity"] if teacher else None,
                "before": before["perplexity"],
                "after": after["perplexity"],
            },
        },
    )


# ------------------------------------------------------------------------------------- compression


COMPRESSION_HEADER = [
    "model", "chain", "parameters", "non-zero", "disk MB", "memory MB", "accuracy", "vs student (points)",
    "F1", "ms/batch", "speed-up",
]  # fmt: skip


def _compression_cells(r: Mapping[str, Any]) -> list[str]:
    return [
        r["name"],
        r["chain"] or "-",
        f"{r['parameters']:,}",
        f"{r['nonzero_parameters']:,}",
        f"{r['size_mb']:.1f}",
        f"{r['memory_mb']:.1f}",
        percent(r["accuracy"]),
        f"{r['accuracy_delta_points']:+.2f}",
        percent(r["f1"]),
        f"{r['latency_ms']:.1f}",
        f"{r['speedup']:.2f}x",
    ]


def compression_report(
    rows: Sequence[Mapping[str, Any]],
    model: str,
    data: str | None,
    validation_examples: int,
    settings: Mapping[str, Any],
    latency_batch_size: int,
    rounds: int,
    chart: str | None = None,
) -> Report:
    """Every compressed variant side by side; the text form leaves out the chain (the name says it)."""
    caption = (
        f"Latency: median ms per batch of {latency_batch_size} over {rounds} rounds, every model timed "
        f"round-robin on {'GPU' if torch.cuda.is_available() else 'CPU'}; speed-up and accuracy change "
        "relative to the student."
    )
    appendix = [f"![chart]({os.path.basename(chart)})", ""] if chart else []
    appendix += ["## Settings", "", "```json", json.dumps(settings, indent=2, default=str), "```"]
    return Report(
        name="compression_report",
        title=f"Compression report: {model} on {describe_data(data, validation_examples)}",
        tables=[compression_table(rows, caption)],
        appendix=appendix,
        data={
            "model": model,
            "data": data,
            "validation_examples": validation_examples,
            "settings": dict(settings),
            "models": [dict(r) for r in rows],
        },
    )


def compression_table(rows: Sequence[Mapping[str, Any]], caption: str = "") -> Table:
    """The compression rows as a report table (accuracy and F1 in percent)."""
    return Table(COMPRESSION_HEADER, [_compression_cells(r) for r in rows], caption)


def format_compression_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The compression rows as a text table for the terminal (without the chain column)."""
    header = COMPRESSION_HEADER[:1] + COMPRESSION_HEADER[2:]
    return format_table([(c := _compression_cells(r))[:1] + c[2:] for r in rows], header)
