"""benchmarks/assisted_decoding.py: the speed-up bound it prints to explain a ratio."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "assisted_decoding.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("assisted_decoding_bench", PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["assisted_decoding_bench"] = module
    spec.loader.exec_module(module)
    return module


def test_expected_speedup_is_leviathans_bound(bench):
    # A draft never accepted: each step yields the model's one token and costs k drafted tokens on top.
    assert bench.expected_speedup(0.0, 0.5, 4) == pytest.approx(1 / 3)
    # Always accepted: k + 1 tokens a step.
    assert bench.expected_speedup(1.0, 0.1, 4) == pytest.approx(5 / 1.4)
    # a = 0.8, c = 0.05, k = 3 (the paper's worked range): (1 - 0.8^4) / 0.2 / 1.15
    assert bench.expected_speedup(0.8, 0.05, 3) == pytest.approx((1 - 0.8**4) / 0.2 / 1.15)
    # A free draft only helps; a draft as slow as the model with a = 0.5 does not.
    assert bench.expected_speedup(0.5, 0.0, 2) > 1 > bench.expected_speedup(0.5, 1.0, 2)
