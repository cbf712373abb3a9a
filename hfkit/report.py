"""Plain-text tables for the reports hfkit prints at the end of a run."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1e4 else f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def format_table(rows: Sequence[Sequence[Any]], header: Sequence[str] | None = None) -> str:
    """Align rows of cells into a text table; numbers right-aligned, floats to 4 decimals."""
    cells = [[_fmt(c) for c in row] for row in rows]
    if header is not None:
        cells.insert(0, list(header))
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    lines = []
    for n, row in enumerate(cells):
        lines.append(
            "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
        )
        if n == 0 and header is not None:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_confusion_matrix(matrix: Sequence[Sequence[int]], labels: Sequence[str]) -> str:
    """Confusion matrix as a table: rows are true labels, columns predicted labels."""
    rows = [[f"true {name}", *counts] for name, counts in zip(labels, matrix)]
    return format_table(rows, header=["", *[f"pred {name}" for name in labels]])


def format_classification_report(report: dict) -> str:
    """The text form of a ClassifierTrainer report: metrics, then the confusion matrix."""
    metrics = [[name, value] for name, value in report["metrics"].items()]
    params = report.get("parameters", {})
    lines = [
        f"Evaluation report: {report.get('model', '')} on {report['num_examples']:,} examples",
        format_table(metrics, header=["metric", "value"]),
        "",
        format_confusion_matrix(report["confusion_matrix"], report["labels"]),
    ]
    if params:
        lines += ["", f"parameters: {params['total']:,} total, {params['trainable']:,} trainable"]
    return "\n".join(lines)
