"""benchmarks/run.py: the pure parts of the suite (targets, ratios, round-robin medians, the table)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "run.py"


@pytest.fixture(scope="module")
def run():
    spec = importlib.util.spec_from_file_location("benchmark_run", PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["benchmark_run"] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def test_ratio_is_value_over_baseline_and_targets_bound_it(run):
    faster = run.Row("int8 latency", baseline=10.0, value=4.0, unit="ms", target=run.Target("<=", 0.5))
    assert faster.ratio == pytest.approx(0.4)
    assert faster.met is True
    slower = run.Row("int8 latency", baseline=10.0, value=6.0, unit="ms", target=run.Target("<=", 0.5))
    assert slower.met is False
    throughput = run.Row("samples/s", baseline=2.0, value=5.0, unit="samples/s", target=run.Target(">=", 4.0))
    assert throughput.ratio == pytest.approx(2.5)
    assert throughput.met is False
    assert run.Row("samples/s", 2.0, 9.0, "samples/s", run.Target(">=", 4.0)).met is True


def test_a_value_target_ignores_the_baseline(run):
    mfu = run.Target(">=", 30.0, on="value", suffix="%")
    assert run.Row("MFU", baseline=50.0, value=31.0, unit="%", target=mfu).met is True
    assert run.Row("MFU", baseline=10.0, value=29.0, unit="%", target=mfu).met is False
    assert mfu.text() == ">= 30%"


def test_rows_without_target_value_or_baseline(run):
    assert run.Row("x", 1.0, 2.0, "ms").met is None
    assert run.Row("x", 0.0, 2.0, "ms").ratio is None
    row = run.skipped("bnb 8-bit", "GPU only", run.Target("<=", 0.5))
    assert row.ratio is None and row.met is None
    cells = run.cells(row)
    assert cells[6] == "-" and cells[-1] == "skipped: GPU only"


def test_cells_and_markdown_section(run):
    rows = [
        run.Row("fast", 10.0, 4.0, "ms", run.Target("<=", 0.5), note="n"),
        run.Row("slow", 2.0, 1.5, "samples/s", run.Target(">=", 1.5)),
    ]
    assert run.cells(rows[0]) == ["fast", "10.0", "4", "ms", "0.40x", "<= 0.5x", "yes", "n"]
    assert run.cells(rows[1])[4:7] == ["0.75x", ">= 1.5x", "NO"]
    section = run.markdown_section(rows, "some CPU", "python benchmarks/run.py --quick", "how", "c.png")
    assert section.startswith("## Benchmark suite (")
    assert "    python benchmarks/run.py --quick" in section
    assert "| fast | 10.0 | 4 | ms | 0.40x | <= 0.5x | yes | n |" in section
    assert "`c.png`" in section


def test_number_formatting(run):
    shown = [run.number(v) for v in (None, 1234.4, 56.78, 1.2345, 0.01234)]
    assert shown == ["-", "1,234", "56.8", "1.23", "0.0123"]


def test_alternate_rotates_the_order_drops_the_warm_up_and_takes_medians(run, capsys):
    calls = []
    values = {"a": iter([100.0, 1.0, 5.0, 3.0]), "b": iter([100.0, 2.0, 2.0, 9.0])}

    def variant(name):
        def measure():
            calls.append(name)
            return {"t": next(values[name])}

        return measure

    medians = run.alternate({"a": variant("a"), "b": variant("b")}, rounds=3, label="test")
    assert calls == ["a", "b", "b", "a", "a", "b", "b", "a"]  # warm-up, then each round starts one later
    assert medians == {"a": {"t": 3.0}, "b": {"t": 2.0}}  # the warm-up's 100s are gone
    assert "warm-up done" in capsys.readouterr().out


@pytest.mark.parametrize("amx", [True, False])
def test_fastest_runtime_rows_pick_the_fastest_that_ran_and_the_machines_targets(run, monkeypatch, amx):
    monkeypatch.setattr(run, "cpu_flags", lambda: {"avx2", "amx_int8"} if amx else {"avx2"})
    monkeypatch.setattr(run, "native_bf16", lambda on_cpu: amx)
    ms = {
        1: {"float32": 12.0, "cpu_int8": 4.0, "openvino": 6.0, "openvino_int8": 3.0, "bf16": 5.0},
        32: {"float32": 300.0, "cpu_int8": 200.0, "openvino": 250.0, "openvino_int8": 1.0, "bf16": 90.0},
    }
    weights = {"float32": 70.0, "cpu_int8": 18.0, "openvino": 70.0, "openvino_int8": 20.0, "bf16": 35.0}
    # openvino_int8 did not run here (skipped): never the pick, even with the best time on record.
    rows = run.fastest_runtime_rows(ms, weights, {"openvino_int8": "not installed"})
    assert [r.name for r in rows] == [
        "inference: ms at batch 1, fastest CPU runtime (cpu_int8) vs float32",
        f"inference: ms at batch 32, fastest CPU runtime ({'bf16' if amx else 'cpu_int8'}) vs float32",
        "inference: weights, smallest CPU runtime (cpu_int8) vs float32",
    ]
    assert rows[0].ratio == pytest.approx(4.0 / 12.0)
    assert rows[1].ratio == pytest.approx((90.0 if amx else 200.0) / 300.0)
    if amx:  # >= 3x at both batch sizes on an AMX CPU
        assert rows[0].target.threshold == rows[1].target.threshold == 0.33
        assert rows[0].met is False and rows[1].met is True  # 0.33x is not <= 0.33; 0.30x is
    else:  # >= 2x at batch 32 only elsewhere
        assert rows[0].target is None and rows[1].target.threshold == 0.5 and rows[1].met is False
    assert rows[2].target.threshold == 0.3 and rows[2].met is True
    none_ran = run.fastest_runtime_rows(
        ms, weights, {n: "x" for n in ("cpu_int8", "openvino", "openvino_int8", "bf16")}
    )
    assert len(none_ran) == 1 and none_ran[0].skipped


def test_default_chart_names_keep_each_machine_kinds_chart(run, monkeypatch):
    monkeypatch.setattr(run, "cpu_flags", lambda: {"avx2", "avx512f", "amx_int8"})
    assert run.default_chart_name("cpu", list(run.GROUPS)) == "run_cpu_amx.png"
    monkeypatch.setattr(run, "cpu_flags", lambda: {"avx2", "fma"})
    assert run.default_chart_name("cpu", ["inference"]) == "run_cpu_avx2_inference.png"
    assert run.default_chart_name("cuda", ["generate", "finetune"]) == "run_cuda_finetune_generate.png"
