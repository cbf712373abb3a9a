"""Measure trained classifiers side by side: quality, parameters, size on disk and CPU latency."""

from __future__ import annotations

import inspect
import os
import statistics
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from datasets import Dataset
from transformers import PreTrainedModel

from .data import tokenize_dataset
from .metrics import classification_metrics
from .modeling import count_parameters
from .report import format_table
from .teacher_cache import classifier_logits


@dataclass
class ModelMeasurement:
    """One row of a comparison report."""

    name: str
    parameters: int
    size_mb: float
    accuracy: float
    f1: float
    latency_ms: float
    speedup: float = 1.0


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


@torch.inference_mode()
def measure_latency_ms(
    model: PreTrainedModel,
    tokenizer,
    texts: list[str],
    batch_size: int = 32,
    repeats: int = 10,
    max_length: int = 128,
) -> float:
    """Median wall time (ms) of one forward pass over a batch of `batch_size` texts on the model's device."""
    model.eval()
    device = next(model.parameters()).device
    batch = tokenizer(
        texts[:batch_size], padding=True, truncation=True, max_length=max_length, return_tensors="pt"
    )
    accepted = set(inspect.signature(model.forward).parameters)
    batch = {k: v.to(device) for k, v in batch.items() if k in accepted}
    for _ in range(2):  # warm-up: first calls pay for allocation and kernel selection
        model(**batch)
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        model(**batch)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


@torch.inference_mode()
def measure_latencies_together(
    models: dict[str, tuple[PreTrainedModel, object]],
    texts: list[str],
    batch_size: int = 32,
    rounds: int = 15,
    max_length: int = 128,
) -> dict[str, float]:
    """Median ms per batch of each model, timed round-robin (one forward of each per round).

    Interleaving makes every model see the same machine state, so the ratios between them hold even on a
    busy machine, where timing one model after another would not.
    """
    batches = {}
    for name, (model, tokenizer) in models.items():
        model.eval()
        device = next(model.parameters()).device
        batch = tokenizer(
            texts[:batch_size], padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        )
        accepted = set(inspect.signature(model.forward).parameters)
        batches[name] = {k: v.to(device) for k, v in batch.items() if k in accepted}
        for _ in range(2):  # warm-up: allocation, kernel selection, bitsandbytes' CPU weight repacking
            model(**batches[name])
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(rounds):
        for name, (model, _) in models.items():
            device = next(model.parameters()).device
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            model(**batches[name])
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append((time.perf_counter() - start) * 1000)
    return {name: statistics.median(t) for name, t in times.items()}


def size_on_disk_mb(folder: str) -> float:
    """Total size of the weight files (safetensors/bin) in a saved model folder, in MB."""
    total = sum(
        os.path.getsize(os.path.join(folder, f))
        for f in os.listdir(folder)
        if f.endswith((".safetensors", ".bin")) and not f.startswith("distill_projections")
    )
    return total / 1e6


def measure_model(
    name: str,
    model: PreTrainedModel,
    tokenizer,
    folder: str,
    raw_eval: Dataset,
    text_column: str,
    text_pair_column: str | None = None,
    max_length: int | None = 128,
    latency_batch_size: int = 32,
) -> ModelMeasurement:
    """Measure one saved model: parameters, size of `folder`, accuracy/F1 on raw_eval, latency per batch."""
    metrics = evaluate_classifier(model, tokenizer, raw_eval, text_column, text_pair_column, max_length)
    texts = raw_eval[text_column][: max(latency_batch_size, 1)]
    return ModelMeasurement(
        name=name,
        parameters=count_parameters(model)[0],
        size_mb=size_on_disk_mb(folder),
        accuracy=metrics["accuracy"],
        f1=metrics.get("f1", metrics["f1_macro"]),
        latency_ms=measure_latency_ms(model, tokenizer, texts, batch_size=latency_batch_size),
    )


def comparison_report(rows: list[ModelMeasurement]) -> tuple[list[dict], str]:
    """Speed-ups relative to the first row (the reference), as dicts and as a printable table."""
    reference = rows[0].latency_ms
    for row in rows:
        row.speedup = reference / row.latency_ms
    table = format_table(
        [
            [
                r.name,
                r.parameters,
                f"{r.size_mb:.1f}",
                r.accuracy,
                r.f1,
                f"{r.latency_ms:.1f}",
                f"{r.speedup:.2f}x",
            ]
            for r in rows
        ],
        header=["model", "parameters", "size MB", "accuracy", "F1", "ms/batch", "speed-up"],
    )
    return [asdict(r) for r in rows], table
