"""One inference loop for every teacher pass: a model over a tokenized dataset, in batches, longest rows first."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from datasets import Dataset
from tqdm.auto import tqdm

from ..data.sources import row_lengths


def forward_batches(
    model: torch.nn.Module,
    dataset: Dataset,
    columns: list[str],
    collate: Callable[[list[dict[str, Any]]], dict[str, torch.Tensor]],
    on_batch: Callable[[np.ndarray, torch.Tensor], None],
    batch_size: int = 64,
    desc: str = "teacher pass",
    autocast_dtype: torch.dtype | None = None,
    **forward_kwargs: Any,
) -> None:
    """Run `model` in eval mode without autograd over the dataset; call on_batch(row indices, logits) per batch.

    ``autocast_dtype`` (torch.bfloat16 / torch.float16) runs the forward under ``torch.autocast`` on the
    model's device: 2 to 3x faster on CPUs with AVX512-BF16 and on GPUs. The logits reach on_batch on the
    model's device, in the dtype the model returns.
    """
    # Longest rows first: batches of similar length waste little padding, and an out-of-memory error
    # shows on the first batch rather than at the end. A stable sort keeps ties in dataset order.
    order = np.argsort(-row_lengths(dataset), kind="stable")
    # Plain Python rows whatever format the caller set (e.g. "torch"): the collators pad lists.
    view = dataset.select_columns(columns).with_format(None)
    try:
        device = next(model.parameters()).device
    except StopIteration:
        device = torch.device("cpu")
    was_training = model.training
    model.eval()
    precision = torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None)
    try:
        with torch.inference_mode(), precision:
            # disable=None: a bar on a terminal, none in a log file (a redirected run is not filled with redraws).
            steps = range(0, len(dataset), batch_size)
            for start in tqdm(steps, desc=desc, unit="batch", disable=None):
                idx = order[start : start + batch_size]
                rows = view[idx.tolist()]
                batch = collate([{c: rows[c][i] for c in columns} for i in range(len(idx))])
                on_batch(idx, model(**{c: batch[c].to(device) for c in columns}, **forward_kwargs).logits)
    finally:
        model.train(was_training)
