"""How hfkit's reports look and what their files hold: rendering, and the records written and read back.

A `Report` holds a title (the model that was trained and the data it was scored on), tables and a JSON
payload; it renders as a text table for the terminal and as Markdown, and `save` writes both
`<name>.md` and `<name>.json` to the run's output_dir. Quality metrics are shown in percent everywhere;
the JSON keeps the raw fractions. The records that other code reads back (`EvalRecord` of eval_report.json,
`DistillRecord` of distill_report.json: the model card) are typed here, shared by writer and reader.
Measuring lives in `hfkit.evaluation`; each recipe builds its own report beside its code.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

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


def read_record(cls, path: str | Path):
    """A record dataclass from its JSON file (keys the record does not know, e.g. the title, left out); None
    when the file is missing. Invalid JSON is a ValueError naming the file."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); fix or delete it.") from err
    if not isinstance(raw, dict):
        raise ValueError(f"{path} holds {type(raw).__name__}, not a JSON object; fix or delete it.")
    known = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in raw.items() if k in known})


@dataclass
class EvalRecord:
    """eval_report.json: one trained classifier scored on held-out rows. Written by `classification_report`
    (ClassifierTrainer, the recipes), read back by the model card and `format_classification_report`."""

    FILE: ClassVar[str] = "eval_report.json"

    model: str | None = None  # the base model: what a model card names as base_model
    trained_model: str | None = None
    data: str | None = None
    num_examples: int | None = None
    labels: list[str] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    confusion_matrix: list[list[int]] = field(default_factory=list)
    parameters: dict[str, int] = field(default_factory=dict)
    precision: str | None = None

    @classmethod
    def read(cls, folder: str | Path) -> EvalRecord | None:
        return read_record(cls, Path(folder) / cls.FILE)


@dataclass
class CompressionRecord:
    """compression_report.json: every compressed variant of a student, one row each (dicts of the stage's
    measurements: name, chain, folder, parameters, accuracy, ...). Written by `hfkit.compress.report`, read
    back by the model card of each stage."""

    FILE: ClassVar[str] = "compression_report.json"

    model: str | None = None
    data: str | None = None
    validation_examples: int | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    models: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def read(cls, folder: str | Path) -> CompressionRecord | None:
        return read_record(cls, Path(folder) / cls.FILE)


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
        data=asdict(
            EvalRecord(
                model=base_model or model,
                trained_model=model,
                data=data,
                num_examples=num_examples,
                labels=list(labels),
                metrics=dict(metrics),
                confusion_matrix=[list(map(int, row)) for row in confusion_matrix],
                parameters=dict(parameters or {}),
                precision=precision,
            )
        ),
    )


def format_classification_report(report: EvalRecord | dict) -> str:
    """The text form of a saved eval_report.json (as written by `classification_report`)."""
    if isinstance(report, dict):
        known = {f.name for f in fields(EvalRecord)}
        report = EvalRecord(**{k: v for k, v in report.items() if k in known})
    return classification_report(
        report.metrics, report.confusion_matrix, report.labels, report.num_examples or 0,
        report.trained_model or report.model or "", report.model, report.data, report.parameters,
        precision=report.precision,
    ).text()  # fmt: skip


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


@dataclass
class DistillRecord:
    """distill_report.json: teacher(s) and student measured side by side. Written by the distill recipe's
    report, read back by the model card."""

    FILE: ClassVar[str] = "distill_report.json"

    student: str | None = None
    teacher: str | list[str] | None = None  # a list for several teachers
    data: str | None = None
    validation_examples: int | None = None
    temperature: float | None = None
    alpha: float | None = None
    latency: dict[str, Any] = field(default_factory=dict)
    models: list[ModelMeasurement] = field(default_factory=list)

    def __post_init__(self):
        known = {f.name for f in fields(ModelMeasurement)}
        rows = []
        for m in self.models:
            if not isinstance(m, ModelMeasurement):
                try:
                    m = ModelMeasurement(**{k: v for k, v in m.items() if k in known})
                except TypeError as err:  # a row without one of the measured values
                    raise ValueError(f"a {self.FILE} row lacks a measurement ({err}): {m}") from err
            rows.append(m)
        self.models = rows

    @classmethod
    def read(cls, folder: str | Path) -> DistillRecord | None:
        return read_record(cls, Path(folder) / cls.FILE)

    def row(self, name: str) -> ModelMeasurement | None:
        """The measured model of that name ('student', 'teacher', 'teacher0', ...)."""
        return next((m for m in self.models if m.name == name), None)


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


def comparison_report(rows: list[ModelMeasurement]) -> tuple[list[dict], str]:
    """Rows with speed-ups relative to the first (the reference), as dicts and as a printable table."""
    for row in rows:
        row.speedup = rows[0].latency_ms / row.latency_ms
    table = comparison_table(rows)
    return [asdict(r) for r in rows], format_table(table.rows, table.header)
