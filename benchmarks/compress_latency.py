"""CPU latency and memory of every model of a compression report, measured together in one run.

    python benchmarks/compress_latency.py --report outputs/compress/minilm_l3_sst2/compression_report.json

The recipe measures each variant right after building it, so its latencies depend on what else the machine
was doing then. Here every model is loaded first and timed round-robin (one forward of each per round,
median over rounds), so all of them see the same machine; ratios are against the report's student.
"""

import argparse
import json
import platform
import statistics
import time

import torch
from transformers import AutoConfig, AutoTokenizer

from hfkit.compress.pipeline import load_float_classifier
from hfkit.compress.quantize import load_quantized, memory_footprint_mb
from hfkit.data import load_data_file


def load(folder: str):
    """A report folder as users reload it: quantized folders with their saved settings."""
    if getattr(AutoConfig.from_pretrained(folder), "quantization_config", None):
        return load_quantized(folder, task="sequence-classification")
    return load_float_classifier(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--report", required=True, help="compression_report.json written by recipes/compress.py"
    )
    parser.add_argument("--data", default="../shared/data/sst2/train.tsv")
    parser.add_argument("--text_column", default="text_a")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--max_length", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()

    with open(args.report) as f:
        rows = json.load(f)["models"]
    texts = load_data_file(args.data)[args.text_column][: args.batch_size]
    models, batches = {}, {}
    for row in rows:
        model = load(row["folder"])
        tokenizer = AutoTokenizer.from_pretrained(row["folder"])
        batch = tokenizer(
            texts, padding=True, truncation=True, max_length=args.max_length, return_tensors="pt"
        )
        models[row["name"]], batches[row["name"]] = model, dict(batch)
    times = {name: [] for name in models}
    with torch.inference_mode():
        for name, model in models.items():  # warm-up: allocation, kernel selection, bnb's CPU repacking
            model(**batches[name])
            model(**batches[name])
        for _ in range(args.rounds):
            for name, model in models.items():
                start = time.perf_counter()
                model(**batches[name])
                times[name].append((time.perf_counter() - start) * 1000)
    ms = {name: statistics.median(t) for name, t in times.items()}
    base = ms["student"]
    print(f"CPU: {platform.processor() or platform.machine()}, torch threads: {torch.get_num_threads()}, "
          f"batch {args.batch_size} x <= {args.max_length} tokens, median of {args.rounds} interleaved rounds")  # fmt: skip
    print(f"{'model':<60} {'memory MB':>9} {'ms/batch':>9} {'vs student':>10}")
    for row in rows:
        name = row["name"]
        memory = memory_footprint_mb(models[name])
        print(f"{name:<60} {memory:>9.1f} {ms[name]:>9.1f} {base / ms[name]:>9.2f}x")


if __name__ == "__main__":
    main()
