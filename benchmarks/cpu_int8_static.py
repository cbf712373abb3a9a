"""ONNX Runtime int8: static (calibrated, QDQ) vs dynamic (hfkit's `cpu_int8`) vs the float graph, on a CPU.

    taskset -c 0 env OMP_NUM_THREADS=1 python benchmarks/cpu_int8_static.py --model outputs/classify/minilm_l3_sst2_ce

Does a calibrated static int8 graph beat the dynamic one `cpu_int8` ships? Static quantization fixes every
activation's int8 scale from calibration rows, so no per-batch min/max pass runs at inference; dynamic computes
it per batch. The three graphs of `--model` (a trained classifier folder): the float graph (exported and fused
by `hfkit.compress.cpu_int8`'s own steps), the `cpu_int8` stage's own graph (`export_cpu_int8`: what the stage
ships), and `quantize_static` of the float graph in QDQ format with the same op types, per-channel int8 weights, uint8
activations, the same float head, calibrated with MinMax on `--calibration_rows` seeded TRAINING rows (never the
validation text). Accuracy: the 1,000 validation sentences. Latency: ONNX Runtime sessions with one thread
alternated round-robin over `--rounds` rounds (one warm-up round dropped), median ms per batch, ratio to the
float graph in the same run.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time

import numpy as np
import onnxruntime as ort
import torch
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from transformers import AutoTokenizer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from hfkit.compress.cpu_int8 import (  # noqa: E402  (the stage's steps)
    ORT_DISABLED_OPTIMIZERS,
    _export,
    _float_head_nodes,
    _fuse,
    export_cpu_int8,
)
from hfkit.compress.quantize import skip_modules_for  # noqa: E402
from hfkit.data import load_data_file  # noqa: E402
from hfkit.io import ONNX_FILE, TaskKind, load_weights  # noqa: E402
from hfkit.trainers.base_config import cpu_flags  # noqa: E402

DATA = os.path.join(REPO, "..", "shared", "data", "sst2", "sentence_split")


class _Rows(CalibrationDataReader):
    """Calibration feeds: one training row each, at its natural length."""

    def __init__(self, tokenizer, texts: list[str], names: list[str], max_length: int):
        self.feeds = iter(
            [
                {
                    n: tokenizer([t], truncation=True, max_length=max_length, return_tensors="np")[n]
                    for n in names
                }
                for t in texts
            ]
        )

    def get_next(self):
        return next(self.feeds, None)


def build(
    folder: str, work: str, calibration: list[str], max_length: int
) -> tuple[dict[str, str], list[str]]:
    """{name: .onnx path} of the float, dynamic and static graphs, and the graph's input names."""
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = load_weights(folder, TaskKind.TEXT_CLASSIFICATION, attn_implementation="eager")
    skip = skip_modules_for(model)
    raw = os.path.join(work, "float_raw.onnx")
    names = _export(model, tokenizer, raw)
    fused = _fuse(raw, os.path.join(work, "float.onnx"))
    head = _float_head_nodes(fused, skip)
    paths = {
        "float": fused,
        # What the cpu_int8 stage ships, made by the stage itself (not a copy of its settings).
        "dynamic": os.path.join(
            export_cpu_int8(folder, os.path.join(work, "cpu_int8"), tokenizer=tokenizer), ONNX_FILE
        ),
        "static": os.path.join(work, "static.onnx"),
    }
    quantize_static(
        fused, paths["static"], _Rows(tokenizer, calibration, names, max_length), quant_format=QuantFormat.QDQ,
        op_types_to_quantize=["MatMul", "Gather"], per_channel=True, activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=head,
    )  # fmt: skip
    return paths, names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="a trained sequence-classifier folder")
    parser.add_argument("--calibration_rows", type=int, default=300)
    parser.add_argument("--max_length", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    train = load_data_file(os.path.join(DATA, "train.tsv"))["text_a"]
    validation = load_data_file(os.path.join(DATA, "validation.tsv"))
    calibration = random.Random(0).sample(list(train), args.calibration_rows)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    with tempfile.TemporaryDirectory() as work:
        paths, names = build(args.model, work, calibration, args.max_length)
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = torch.get_num_threads(), 1
        # Every graph without the session-time rewrites the stage disables (as OnnxClassifier loads them).
        sessions = {
            k: ort.InferenceSession(
                p,
                options,
                providers=["CPUExecutionProvider"],
                disabled_optimizers=list(ORT_DISABLED_OPTIMIZERS),
            )
            for k, p in paths.items()
        }
        sizes = {k: os.path.getsize(p) / 1e6 for k, p in paths.items()}

        def feed(texts: list[str]) -> dict[str, np.ndarray]:
            encoded = tokenizer(
                texts, padding=True, truncation=True, max_length=args.max_length, return_tensors="np"
            )
            return {n: encoded[n] for n in names}

        texts, labels = list(validation["text_a"]), np.array(validation["label"])
        accuracy = {}
        for k, s in sessions.items():
            predicted = np.concatenate(
                [s.run(None, feed(texts[i : i + 128]))[0].argmax(-1) for i in range(0, len(texts), 128)]
            )
            accuracy[k] = 100 * float((predicted == labels).mean())
        ms = {}
        for bs in (1, 32):
            batches = [feed(texts[i : i + bs]) for i in range(0, 8 * 32 if bs == 32 else 64, bs)]
            times: dict[str, list[float]] = {k: [] for k in sessions}
            order = list(sessions)
            for r in range(args.rounds + 1):
                for k in order[r % len(order) :] + order[: r % len(order)]:  # rotate who goes first
                    start = time.perf_counter()
                    for b in batches:
                        sessions[k].run(None, b)
                    if r:  # round 0 warms up
                        times[k].append((time.perf_counter() - start) / len(batches) * 1000)
            ms[bs] = {k: statistics.median(v) for k, v in times.items()}
    print(f"# ONNX Runtime {ort.__version__} int8, static vs dynamic; CPU flags "
          f"{' '.join(sorted(f for f in cpu_flags() if f.startswith(('avx', 'amx', 'fma'))))}; "
          f"{torch.get_num_threads()} threads")  # fmt: skip
    print(f"command: python benchmarks/cpu_int8_static.py {' '.join(sys.argv[1:])}\n")
    print(
        "| graph | accuracy (1,000 validation sentences) | ms at batch 1 | ratio | ms at batch 32 | ratio | file MB |"
    )
    print("|---|---|---|---|---|---|---|")
    for k in sessions:
        print(f"| {k} | {accuracy[k]:.1f}% | {ms[1][k]:.2f} | {ms[1][k] / ms[1]['float']:.2f}x | {ms[32][k]:.1f} | "
              f"{ms[32][k] / ms[32]['float']:.2f}x | {sizes[k]:.1f} |")  # fmt: skip


if __name__ == "__main__":
    main()
