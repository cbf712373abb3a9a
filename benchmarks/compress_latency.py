"""CPU latency and memory of every model of a compression report, measured together in one run.

    python benchmarks/compress_latency.py --report outputs/compress/minilm_l3_sst2/compression_report.json

Every model is loaded first and timed round-robin (one forward of each per round, median over rounds),
so all of them see the same machine; ratios are against the report's student. Re-run it on an idle
machine to re-time a report whose recipe run shared the CPU with other jobs.
"""

import argparse
import json
import platform

import torch

from hfkit.compress.pipeline import load_classifier_folder
from hfkit.compress.quantize import memory_footprint_mb
from hfkit.data import load_data_file
from hfkit.evaluation import measure_latencies_together


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
    models = {r["name"]: load_classifier_folder(r["folder"]) for r in rows}
    ms = measure_latencies_together(models, texts, args.batch_size, args.rounds, args.max_length)
    base = ms["student"]
    print(f"CPU: {platform.processor() or platform.machine()}, torch threads: {torch.get_num_threads()}, "
          f"batch {args.batch_size} x <= {args.max_length} tokens, median of {args.rounds} interleaved rounds")  # fmt: skip
    print(f"{'model':<60} {'memory MB':>9} {'ms/batch':>9} {'vs student':>10}")
    for name, (model, _) in models.items():
        print(f"{name:<60} {memory_footprint_mb(model):>9.1f} {ms[name]:>9.1f} {base / ms[name]:>9.2f}x")


if __name__ == "__main__":
    main()
