"""Hand-computed values and tensor shortcuts shared by the loss tests."""

from __future__ import annotations

import math

import torch

LN = math.log
# KL([0.8, 0.2] || [0.5, 0.5]) by hand.
KL_82_55 = 0.8 * LN(1.6) + 0.2 * LN(0.4)
# KL([0.5, 0.5] || [0.8, 0.2]) by hand (the "reverse" direction of the same pair).
KL_55_82 = 0.5 * LN(0.5 / 0.8) + 0.5 * LN(0.5 / 0.2)


def logits_of(*probs: float) -> list[float]:
    """Logits whose softmax is exactly `probs` (log-probabilities)."""
    return [math.log(p) for p in probs]


def t(data, **kw) -> torch.Tensor:
    """Float32 tensor shortcut."""
    return torch.tensor(data, dtype=torch.float32, **kw)


def approx(x: torch.Tensor, expected: float, tol: float = 1e-5) -> bool:
    """Scalar comparison with absolute + relative tolerance."""
    return math.isclose(x.item(), expected, rel_tol=tol, abs_tol=tol)
