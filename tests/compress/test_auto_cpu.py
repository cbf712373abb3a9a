"""The 'auto-cpu' chain: which runtimes it measures, and the recommendation (fastest within the accuracy loss)."""

from __future__ import annotations

import pytest

from hfkit.compress.pipeline import (
    AUTO_CPU,
    CompressArguments,
    auto_cpu_chains,
    cpu_recommendation_markdown,
    expand_chains,
    recommend_cpu,
)


def _row(name: str, accuracy: float, latency_ms: float) -> dict:
    return {"name": name, "accuracy": accuracy, "latency_ms": latency_ms}


ROWS = [
    _row("teacher", 0.95, 900.0),  # not a CPU runtime: never recommended, however fast or accurate
    _row("student", 0.900, 100.0),
    _row("cpu_int8", 0.896, 40.0),  # -0.4 points: over the default 0.3
    _row("openvino", 0.900, 70.0),
    _row("openvino_int8", 0.898, 45.0),  # -0.2 points: the fastest within 0.3
    _row("int8", 0.900, 10.0),  # bitsandbytes, not an 'auto-cpu' candidate
]
CANDIDATES = ["cpu_int8", "openvino", "openvino_int8"]


def test_bf16_is_measured_only_where_the_cpu_has_bf16_units():
    assert auto_cpu_chains(native_bf16=False) == ["cpu_int8", "openvino", "openvino_int8"]
    assert auto_cpu_chains(native_bf16=True) == ["bf16", "cpu_int8", "openvino", "openvino_int8"]
    # Expanded in place, each chain once; the other chains stay.
    assert expand_chains(["int8", AUTO_CPU, "cpu_int8"], native_bf16=False) == [
        "int8",
        "cpu_int8",
        "openvino",
        "openvino_int8",
    ]
    CompressArguments(model_name_or_path="m", chains=[AUTO_CPU])  # accepted before expansion


def test_recommends_the_fastest_runtime_within_the_loss():
    assert recommend_cpu(ROWS, CANDIDATES, 0.3)["name"] == "openvino_int8"
    assert recommend_cpu(ROWS, CANDIDATES, 0.5)["name"] == "cpu_int8"  # -0.4 now allowed, and faster
    assert recommend_cpu(ROWS, CANDIDATES, 0.0)["name"] == "openvino"  # no loss at all: same accuracy, faster
    slow = [_row("student", 0.9, 10.0), _row("cpu_int8", 0.9, 20.0)]
    assert recommend_cpu(slow, CANDIDATES, 0.3)["name"] == "student"  # float32 wins when nothing is faster


def test_markdown_names_the_choice_and_lists_every_candidate():
    text = cpu_recommendation_markdown(ROWS, CANDIDATES, 0.3, 32)
    assert "**openvino_int8**" in text and "within 0.3 points" in text and "batch 32" in text
    lines = [line for line in text.splitlines() if line.startswith("| ")][1:]  # the rows under the header
    assert [line.split(" | ")[0][2:] for line in lines] == ["float32 (torch)", *CANDIDATES]
    assert "| -0.40 |" in lines[1] and "| no |" in lines[1] and "2.50x" in lines[1]
    assert lines[3].endswith("**recommended** |")


def test_negative_loss_is_refused():
    with pytest.raises(ValueError, match="auto_cpu_max_loss_points"):
        CompressArguments(model_name_or_path="m", chains=[AUTO_CPU], auto_cpu_max_loss_points=-1)
