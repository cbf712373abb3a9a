"""Scoring and timing classifiers: predictions, metrics on raw text, latency timed round-robin, size on disk.

What the reports show is measured here (`hfkit.reports` renders it). Latencies are always measured together:
every model of a report is timed round-robin over several rounds (`torch.utils.benchmark.Timer`), and the
median is reported, so the ratios between models hold on a busy machine.
"""

from __future__ import annotations

import inspect
import os
import statistics
from collections.abc import Mapping

import numpy as np
import torch
from datasets import Dataset
from torch.utils import benchmark
from transformers import PreTrainedModel

from .data import tokenize_dataset
from .metrics import classification_metrics
from .modeling import count_parameters
from .reports import ModelMeasurement
from .teacher_cache import classifier_logits


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
