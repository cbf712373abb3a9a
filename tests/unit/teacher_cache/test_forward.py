"""Tests for hfkit.teacher_cache.forward: the one inference loop both teacher caches run."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from datasets import Dataset

from hfkit.data.lm import LMDataCollator
from hfkit.teacher_cache import forward_batches


class RowSum(torch.nn.Module):
    """Logits (B, L, 1) = running sum of the token ids; records the kwargs and grad mode of each call."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))
        self.calls = []

    def forward(self, input_ids, attention_mask, **kwargs):
        self.calls.append((tuple(input_ids.shape), kwargs, torch.is_grad_enabled(), self.training))
        return SimpleNamespace(logits=(input_ids * attention_mask).cumsum(-1)[..., None] * self.scale)


def test_every_row_once_longest_first_in_eval_mode_without_grad():
    ds = Dataset.from_dict({"input_ids": [[1], [1, 2, 3], [4, 5], [6, 7, 8]], "label": [0, 1, 0, 1]})
    model = RowSum().train()
    seen = {}

    def keep(idx, logits):
        for j, row in enumerate(idx.tolist()):
            seen[row] = logits[j, len(ds[row]["input_ids"]) - 1, 0].item()

    collate = LMDataCollator(pad_token_id=0)
    ds = ds.map(lambda b: {"attention_mask": [[1] * len(x) for x in b["input_ids"]]}, batched=True)
    forward_batches(model, ds, ["input_ids", "attention_mask"], collate, keep, batch_size=2, use_cache=False)
    assert seen == {0: 1.0, 1: 6.0, 2: 9.0, 3: 21.0}
    # Longest first (stable: row 1 before row 3), so the second batch pads to 2, not 3.
    assert [c[0] for c in model.calls] == [(2, 3), (2, 2)]
    assert all(
        kw == {"use_cache": False} and not grad and not training for _, kw, grad, training in model.calls
    )
    assert model.training  # restored


def test_training_mode_restored_when_a_batch_fails():
    ds = Dataset.from_dict({"input_ids": [[1, 2]], "attention_mask": [[1, 1]]})
    model = RowSum().train()

    def fail(idx, logits):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        forward_batches(model, ds, ["input_ids", "attention_mask"], LMDataCollator(0), fail)
    assert model.training
