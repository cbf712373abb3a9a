"""The compression report: every compressed variant side by side (text, Markdown, JSON)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

import torch

from ..reports import CompressionRecord, Report, Table, describe_data, format_table, percent

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
        data=asdict(
            CompressionRecord(
                model=model,
                data=data,
                validation_examples=validation_examples,
                settings=dict(settings),
                models=[dict(r) for r in rows],
            )
        ),
    )


def compression_table(rows: Sequence[Mapping[str, Any]], caption: str = "") -> Table:
    """The compression rows as a report table (accuracy and F1 in percent)."""
    return Table(COMPRESSION_HEADER, [_compression_cells(r) for r in rows], caption)


def format_compression_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The compression rows as a text table for the terminal (without the chain column)."""
    header = COMPRESSION_HEADER[:1] + COMPRESSION_HEADER[2:]
    return format_table([(c := _compression_cells(r))[:1] + c[2:] for r in rows], header)
